/** The request histogram: buckets inclusive of their bound and cumulative when written, bounded labels. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { HttpRequestMetrics } from '../../../src/prometheus/http-request-metrics.ts';
import { parseExposition } from '../../support/prometheus-text.ts';

test('observations land in the first bucket whose bound they do not exceed; buckets are written cumulative', async () => {
  const registry = new Registry();
  const metrics = HttpRequestMetrics.on(registry);
  for (const seconds of [0.0001, 0.00025, 0.0003, 0.001, 0.2, 11])
    metrics.observe('/models', 'GET', 200, seconds);
  const text = await registry.metrics();
  assert.match(text, /^# TYPE http_request_duration_seconds histogram$/m);
  const exposition = parseExposition(text);
  const bucket = (le: string) =>
    exposition.value('http_request_duration_seconds_bucket', {
      route: '/models',
      method: 'GET',
      status_code: '200',
      le,
    });
  assert.equal(bucket('0.00025'), 2);
  assert.equal(bucket('0.0005'), 3);
  assert.equal(bucket('0.001'), 4);
  assert.equal(bucket('0.25'), 5);
  assert.equal(bucket('10'), 5);
  assert.equal(bucket('+Inf'), 6);
  assert.equal(exposition.value('http_request_duration_seconds_count', { route: '/models' }), 6);
  const sum = exposition.value('http_request_duration_seconds_sum', { route: '/models' }) ?? 0;
  assert.ok(Math.abs(sum - 11.20165) < 1e-9);
});

test('no route is one `unmatched` series; unusual methods are one `OTHER` series; one family per registry', async () => {
  const registry = new Registry();
  const metrics = HttpRequestMetrics.on(registry);
  assert.equal(HttpRequestMetrics.on(registry), metrics);
  metrics.observe(undefined, 'GET', 404, 0.001);
  metrics.observe(undefined, 'GET', 404, 0.001);
  metrics.observe('/models', 'PROPFIND', 405, 0.001);
  metrics.observe('/models', 'MKCOL', 405, 0.001);
  const exposition = parseExposition(await registry.metrics());
  assert.equal(
    exposition.value('http_request_duration_seconds_count', { route: 'unmatched', status_code: '404' }),
    2,
  );
  assert.equal(
    exposition.value('http_request_duration_seconds_count', { method: 'OTHER', status_code: '405' }),
    2,
  );
});
