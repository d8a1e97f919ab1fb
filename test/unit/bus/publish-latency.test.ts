/**
 * Publish latency: each confirm lands in the Prometheus buckets in seconds and in the last minute's
 * window in ms; a clock set back makes 0, not a negative latency; the family passes as a histogram.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { registerHistogramFamily } from '../../../src/bucket-histogram.ts';
import { PUBLISH_LATENCY_BUCKETS_SECONDS, PublishLatency } from '../../../src/bus/publish-latency.ts';
import { parseExposition } from '../../support/prometheus-text.ts';

const T0 = 1_765_000_000_000;

test('the buckets resolve 0.5 ms … 10 s, with the 5 ms and 10 ms goals as bounds', () => {
  assert.equal(PUBLISH_LATENCY_BUCKETS_SECONDS[0], 0.0005);
  assert.equal(PUBLISH_LATENCY_BUCKETS_SECONDS.at(-1), 10);
  assert.ok(PUBLISH_LATENCY_BUCKETS_SECONDS.includes(0.005));
  assert.ok(PUBLISH_LATENCY_BUCKETS_SECONDS.includes(0.01));
  const ascending = PUBLISH_LATENCY_BUCKETS_SECONDS.every(
    (bound, i) => i === 0 || bound > (PUBLISH_LATENCY_BUCKETS_SECONDS[i - 1] as number),
  );
  assert.ok(ascending);
});

test('each confirm is counted once in the histogram (seconds) and in the window (ms)', async () => {
  const latency = new PublishLatency();
  latency.observe(T0, T0); // 0 ms
  latency.observe(T0, T0 + 4); // 4 ms
  latency.observe(T0, T0 + 20); // 20 ms
  latency.observe(T0 + 50, T0 + 20); // a clock set back: 0, not −30 ms
  latency.observe(Number.NaN, T0 + 20); // no readable emit time: not observed

  const registry = new Registry();
  registerHistogramFamily(registry, {
    name: 'telemetry_publish_latency_seconds',
    help: 'test',
    labelNames: [],
    series: () => [{ labels: {}, histogram: latency.histogram }],
  });
  const exposition = parseExposition(await registry.metrics());
  const bucket = (le: string) => exposition.value('telemetry_publish_latency_seconds_bucket', { le });
  assert.equal(bucket('0.0005'), 2);
  assert.equal(bucket('0.003'), 2);
  assert.equal(bucket('0.005'), 3);
  assert.equal(bucket('0.025'), 4);
  assert.equal(bucket('+Inf'), 4);
  assert.equal(exposition.value('telemetry_publish_latency_seconds_count'), 4);
  assert.ok(Math.abs((exposition.value('telemetry_publish_latency_seconds_sum') ?? 0) - 0.024) < 1e-12);

  const recent = latency.recent(T0 + 20);
  assert.equal(recent.count, 4);
  assert.equal(recent.p50_ms, 0);
  assert.ok(recent.p99_ms !== null && Math.abs(recent.p99_ms - 20) < 0.2);
  assert.equal(latency.recent(T0 + 61_000).count, 0, 'a minute later the window is empty');
  assert.equal(latency.histogram.count, 4, 'the histogram keeps everything');
});
