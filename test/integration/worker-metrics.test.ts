/**
 * The consumer runtime's metrics, served as `telemetry-bus worker` serves them (a plain `node:http`
 * endpoint), after real deliveries from the broker: applied, duplicates, poison, retries by the delay of
 * their step, dead letters after the ladder, batches, applied events' age; the endpoint's token, its
 * 404 and `/livez`; and `promtool check metrics` on what it serves. Then the CLI itself, with WORKER_METRICS_PORT.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import type { Consumer, Delivery } from '../../src/consumers/consumer.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import { startMetricsServer } from '../../src/prometheus/metrics-server.ts';
import { createPrometheusRegistry } from '../../src/prometheus/prometheus-registry.ts';
import { createBusEnvironment, createTestDatabase } from '../helper.ts';
import { consumerHarness, TEST_RETRY_DELAYS_MS } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { type Exposition, parseExposition, promtoolCheckMetrics } from '../support/prometheus-text.ts';
import { waitUntil } from '../support/wait-until.ts';

const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));
const TOKEN = 'worker-scrape-token-0123';

/** Model ids this sink refuses: until their first retry (then accepts), or always. */
const failOnce = new Set<string>();
const failAlways = new Set<string>();

function sink(): Consumer {
  return {
    name: 'test-sink',
    queue: QUEUES.audit,
    async apply(deliveries: Delivery[], client: pg.PoolClient) {
      for (const delivery of deliveries) {
        const modelId = String(((delivery.event?.data ?? {}) as { model_id?: unknown }).model_id ?? '');
        if (failAlways.has(modelId)) throw new Error(`sink refuses ${modelId}`);
        // Refused until it comes back from the ladder (the batch and its split both see the first copy).
        const retried = delivery.properties.headers[FAILURE_HEADERS.attempts] !== undefined;
        if (failOnce.has(modelId) && !retried) throw new Error(`sink refuses ${modelId} once`);
        await client.query('SELECT 1');
      }
    },
  };
}

const registry = createPrometheusRegistry();
const harness = await consumerHarness({ after }, () => [sink()], { metrics: registry, batchWaitMs: 50 });
const server = await startMetricsServer({ registry, host: '127.0.0.1', port: 0, scrapeToken: TOKEN });
after(() => server.close());

async function scrape(): Promise<Exposition> {
  const response = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(await response.text());
}

function queried(modelId: string) {
  return exampleEvent('model.queried', {
    event_id: randomUUID(),
    correlation_id: randomUUID(),
    data: { ...exampleEvent('model.queried').data, model_id: modelId },
  });
}

const consumer = { consumer: 'test-sink' };
const value = (exposition: Exposition, name: string, labels: Record<string, string> = {}) =>
  exposition.value(name, { ...consumer, ...labels }) ?? 0;

describe('the worker metrics endpoint', () => {
  test('before any traffic, every series of the consumer exists, at 0', async () => {
    const now = await scrape();
    for (const name of [
      'telemetry_consumer_messages_applied_total',
      'telemetry_consumer_duplicates_skipped_total',
      'telemetry_consumer_poison_messages_total',
      'telemetry_consumer_dead_lettered_total',
      'telemetry_consumer_database_pauses_total',
      'telemetry_consumer_paused',
      'telemetry_consumer_inflight_messages',
      'telemetry_consumer_batch_duration_seconds_count',
      'telemetry_consumer_batch_messages_count',
      'telemetry_consumer_event_age_seconds_count',
    ]) {
      assert.equal(now.value(name, consumer), 0, name);
    }
    for (const delayMs of TEST_RETRY_DELAYS_MS) {
      assert.equal(
        now.value('telemetry_consumer_retries_total', { ...consumer, delay_seconds: String(delayMs / 1000) }),
        0,
      );
    }
    assert.equal(now.value('telemetry_consumer_prefetch_messages', consumer), 500);
  });

  test('applied, duplicates, poison, retries by delay, dead letters after the ladder, batches', async () => {
    const before = await scrape();
    const events = Array.from({ length: 100 }, (_, index) => queried(`ok/${index}`));
    await harness.publish(events);
    await harness.publish(events.slice(0, 40)); // 40 duplicates
    await harness.publishRaw(EXCHANGES.models, 'model.queried', Buffer.from('{not json'));
    const retried = queried(`once/${randomUUID()}`);
    failOnce.add(retried.data.model_id);
    const doomed = queried(`always/${randomUUID()}`);
    failAlways.add(doomed.data.model_id);
    await harness.publish([retried, doomed]);

    const delta = (now: Exposition, name: string, labels: Record<string, string> = {}) =>
      value(now, name, labels) - value(before, name, labels);
    const step = (ms: number) => ({ delay_seconds: String(ms / 1000) });
    const [first, second, third] = TEST_RETRY_DELAYS_MS;
    await waitUntil(
      'every outcome counted',
      async () => {
        const now = await scrape();
        return (
          delta(now, 'telemetry_consumer_messages_applied_total') === 101 &&
          delta(now, 'telemetry_consumer_dead_lettered_total') === 1 &&
          // Acknowledgements of partial batches may wait (ackDelayMs): held until then.
          now.value('telemetry_consumer_inflight_messages', consumer) === 0
        );
      },
      20_000,
      { intervalMs: 100 },
    );
    const now = await scrape();
    assert.equal(delta(now, 'telemetry_consumer_messages_applied_total'), 101);
    assert.equal(delta(now, 'telemetry_consumer_duplicates_skipped_total'), 40);
    // Each applied event's age observed once, after its commit (the duplicates and the poison are not).
    assert.equal(delta(now, 'telemetry_consumer_event_age_seconds_count'), 101);
    assert.equal(
      value(now, 'telemetry_consumer_event_age_seconds_bucket', { le: '+Inf' }),
      value(now, 'telemetry_consumer_event_age_seconds_count'),
    );
    assert.equal(delta(now, 'telemetry_consumer_poison_messages_total'), 1);
    assert.equal(delta(now, 'telemetry_consumer_dead_lettered_total'), 1);
    // The one failing once: one retry at the first step; the doomed one: one at each step.
    assert.equal(delta(now, 'telemetry_consumer_retries_total', step(first)), 2);
    assert.equal(delta(now, 'telemetry_consumer_retries_total', step(second)), 1);
    assert.equal(delta(now, 'telemetry_consumer_retries_total', step(third)), 1);
    const batches = delta(now, 'telemetry_consumer_batch_duration_seconds_count');
    assert.ok(batches >= 1);
    assert.equal(delta(now, 'telemetry_consumer_batch_messages_count'), batches);
    // Every delivery was in a batch: 100 + 40 + 1 poison + 2, then 4 retried copies back.
    assert.equal(delta(now, 'telemetry_consumer_batch_messages_sum'), 147);
    assert.ok(delta(now, 'telemetry_consumer_batch_duration_seconds_sum') > 0);
    assert.equal(now.value('telemetry_consumer_inflight_messages', consumer), 0);
    assert.equal(now.value('telemetry_consumer_paused', consumer), 0);
  });

  test('promtool check metrics finds nothing to complain about', async () => {
    const response = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const { status, output } = await promtoolCheckMetrics(await response.text());
    assert.equal(output.trim(), '', `promtool check metrics complained:\n${output}`);
    assert.equal(status, 0);
  });

  test('OpenMetrics when preferred; 401 without the token; /livez; 404 elsewhere', async () => {
    const openMetrics = await fetch(`${server.url}/metrics`, {
      headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/openmetrics-text;version=1.0.0' },
    });
    assert.match(String(openMetrics.headers.get('content-type')), /^application\/openmetrics-text/);
    assert.ok((await openMetrics.text()).endsWith('# EOF\n'));

    for (const headers of [{}, { authorization: 'Bearer not-the-token-0123' }] as Record<string, string>[]) {
      const refused = await fetch(`${server.url}/metrics`, { headers });
      assert.equal(refused.status, 401);
      assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'UNAUTHENTICATED');
    }
    assert.equal((await fetch(`${server.url}/livez`)).status, 200);
    const missing = await fetch(`${server.url}/nothing`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
  });
});

describe('telemetry-bus worker with WORKER_METRICS_PORT', () => {
  test('serves its consumers metrics on HOST and the port (0 picks one, logged)', async () => {
    const databaseUrl = await createTestDatabase({ after });
    const bus = await createBusEnvironment();
    const child = spawn(process.execPath, [CLI, 'worker', '--consumers', 'audit,dlq'], {
      env: {
        PATH: process.env.PATH ?? '',
        LOG_LEVEL: 'info',
        DATABASE_URL: databaseUrl,
        ...bus.env,
        HOST: '127.0.0.1',
        WORKER_METRICS_PORT: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stdout += chunk;
    });
    try {
      let url: string | undefined;
      await waitUntil(
        'the worker logged its metrics URL',
        () => {
          url = /"url":"(http:\/\/127\.0\.0\.1:\d+\/metrics)"/.exec(stdout)?.[1];
          return url !== undefined;
        },
        30_000,
        { intervalMs: 100 },
      );
      await waitUntil(
        'both consumers subscribed',
        async () => {
          const text = await (await fetch(url as string)).text();
          const exposition = parseExposition(text);
          return ['audit', 'dlq'].every(
            (name) => exposition.value('telemetry_consumer_paused', { consumer: name }) === 0,
          );
        },
        20_000,
        { intervalMs: 200 },
      );
      const exposition = parseExposition(await (await fetch(url as string)).text());
      assert.equal(exposition.value('telemetry_consumer_prefetch_messages', { consumer: 'audit' }), 500);
      assert.notEqual(exposition.value('process_cpu_seconds_total'), undefined);
      // A worker exports no API or queue series: those belong to the API process.
      assert.equal(exposition.names().has('http_request_duration_seconds_count'), false);
      assert.equal(exposition.names().has('telemetry_queue_messages_ready'), false);
    } finally {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      if (child.exitCode === null) await once(child, 'exit');
      clearTimeout(timer);
      await bus.remove();
    }
  });
});
