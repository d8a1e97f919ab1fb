/**
 * GET /metrics through the real API: who may read it, the 400s that name the field, the OpenAPI
 * document, and freshness — under about 1,000 requests per second through the API, its spool and
 * publisher, RabbitMQ and the metrics consumer (a `telemetry-bus worker` process), how long until a
 * request shows in /metrics.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { MetricsReport } from '../../src/consumers/metrics/metrics-query.ts';
import { build, modelBody } from '../helper.ts';
import { percentile } from '../support/http-load.ts';

const { app, keys, config, databaseUrl } = await build({ after }, { METRICS_ROLLUP_RETENTION_DAYS: '30' });

// The metrics consumer runs as deployed beside an API: `telemetry-bus worker`, a process of its own.
const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));
const workerDataDir = mkdtempSync(join(tmpdir(), 'tb-metrics-worker-'));
const worker = spawn(process.execPath, [CLI, 'worker', '--consumers', 'metrics'], {
  env: {
    PATH: process.env.PATH ?? '',
    LOG_LEVEL: 'fatal',
    DATABASE_URL: databaseUrl,
    RABBITMQ_URL: config.rabbitmqUrls.join(','),
    DATA_DIR: workerDataDir,
  },
  stdio: 'ignore',
});
after(async () => {
  if (worker.exitCode === null) {
    worker.kill('SIGTERM');
    await once(worker, 'exit');
  }
  rmSync(workerDataDir, { recursive: true, force: true });
});

const get = (query: string, key: string | null = keys.reader) =>
  app.inject({ url: `/metrics${query}`, headers: key === null ? {} : { 'x-api-key': key } });

test('a reader key or better reads it; no key is 401', async () => {
  assert.equal((await get('', null)).statusCode, 401);
  for (const role of ['reader', 'writer', 'admin'] as const) {
    const response = await get('', keys[role]);
    assert.equal(response.statusCode, 200, response.body);
    assert.match(String(response.headers['content-type']), /^application\/json/);
  }
});

test('bad parameters are 400 VALIDATION_FAILED naming the field', async () => {
  const cases: Array<[string, string]> = [
    ['?bucket=5m', 'bucket'],
    ['?from=-1h&to=-2h', 'from'],
    ['?from=2026-02-30T00:00:00Z', 'from'],
    ['?from=yesterday', 'from'],
    ['?to=-1x', 'to'],
    ['?from=-31d', 'from'],
    ['?from=-2d&bucket=1m', 'bucket'],
    ['?capability_tier=Tier_9', 'capability_tier'],
    ['?vendor_id=%20bad', 'vendor_id'],
    ['?route=', 'route'],
    ['?colour=blue', 'colour'],
  ];
  for (const [query, field] of cases) {
    const response = await get(query);
    assert.equal(response.statusCode, 400, `${query}: ${response.body}`);
    const { error } = response.json() as { error: { code: string; field: string; message: string } };
    assert.equal(error.code, 'VALIDATION_FAILED', query);
    assert.equal(error.field, field, `${query}: ${error.message}`);
  }
});

test('the OpenAPI document describes the route, its query and its response', async () => {
  const document = (await app.inject({ url: '/docs/json' })).json() as {
    paths: Record<
      string,
      { get?: { parameters: Array<{ name: string }>; responses: Record<string, unknown> } }
    >;
  };
  const operation = document.paths['/metrics']?.get;
  assert.ok(operation, '/metrics is documented');
  assert.deepEqual(operation.parameters.map((parameter) => parameter.name).sort(), [
    'bucket',
    'capability_tier',
    'from',
    'route',
    'to',
    'vendor_id',
  ]);
  const schema = JSON.stringify(operation.responses['200']);
  for (const field of ['processing_latency_ms', 'peak', 'series', 'by_route', 'hit_rate', 'active_now']) {
    assert.ok(schema.includes(field), `the 200 response documents ${field}`);
  }
});

test('freshness: at ~1,000 requests/s, p95 from response to visible in /metrics', async () => {
  const created = await app.inject({
    method: 'POST',
    url: '/models',
    headers: { 'x-api-key': keys.writer },
    payload: modelBody(),
  });
  assert.equal(created.statusCode, 201);
  const path = `/models/${encodeURIComponent((created.json() as { model_id: string }).model_id)}`;
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  after(() => agent.destroy());

  const RATE = 1000;
  const SECONDS = 8;
  const total = RATE * SECONDS;
  /** performance.now() at each response, in completion order. */
  const completed: number[] = [];
  let failures = 0;
  const send = () =>
    new Promise<void>((resolve) => {
      const request = http.request(
        { agent, host: '127.0.0.1', port, path, headers: { 'x-api-key': keys.reader } },
        (response) => {
          response.resume();
          response.on('end', () => {
            if (response.statusCode === 200) completed.push(performance.now());
            else failures++;
            resolve();
          });
        },
      );
      request.on('error', () => {
        failures++;
        resolve();
      });
      request.end();
    });

  // The poller: the count of GET /models/:model_id in /metrics, and when each poll answered.
  const polls: Array<{ at: number; sentAt: number; count: number }> = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const sentAt = performance.now();
      const response = await get('?from=-10m&bucket=1m&route=%2Fmodels%2F%3Amodel_id');
      const report = response.json() as MetricsReport;
      const count = report.requests.by_route.find((route) => route.method === 'GET')?.requests ?? 0;
      polls.push({ at: performance.now(), sentAt, count });
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();

  // Paced: every 5 ms, send what the elapsed time owes at RATE per second.
  const started = performance.now();
  const inflight: Array<Promise<void>> = [];
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const owed = Math.min(total, Math.floor(((performance.now() - started) * RATE) / 1000));
      while (sent < owed) {
        inflight.push(send());
        sent++;
      }
      if (sent === total) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(inflight);
  const sendSeconds = (completed[completed.length - 1] as number) / 1000 - started / 1000;
  const deadline = performance.now() + 30_000;
  while ((polls[polls.length - 1]?.count ?? 0) < total && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  polling = false;
  await poller;

  assert.equal(failures, 0);
  assert.equal(polls[polls.length - 1]?.count, total, 'every request counted, once');
  // The k-th response is visible at the first poll that counted k requests: events are spooled,
  // published and applied in order, so the count reaches k when the k-th is in.
  const delays: number[] = [];
  const lowerBounds: number[] = [];
  let poll = 0;
  for (let k = 1; k <= total; k++) {
    while ((polls[poll] as { count: number }).count < k) poll++;
    const found = polls[poll] as { at: number; sentAt: number };
    delays.push(Math.max(0, found.at - (completed[k - 1] as number)));
    lowerBounds.push(Math.max(0, found.sentAt - (completed[k - 1] as number)));
  }
  const pollMs = polls.map((entry) => entry.at - entry.sentAt);
  const p50 = percentile(delays, 50);
  const p95 = percentile(delays, 95);
  const p99 = percentile(delays, 99);
  const rate = total / sendSeconds;
  console.log(
    `freshness at ${rate.toFixed(0)} requests/s over ${sendSeconds.toFixed(1)} s: p50 ${p50.toFixed(0)} ms, ` +
      `p95 ${p95.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms (${polls.length} polls of /metrics, every ~25 ms + its own time: p50 ${percentile(pollMs, 50).toFixed(0)} ms; ` +
      `counted from each poll's start instead of its answer, p95 ${percentile(lowerBounds, 95).toFixed(0)} ms)`,
  );
  // The delay is measured and printed, not bounded: with the integration tests running two at a time on
  // two cores it depends on what runs beside it (p95 up to 6 s seen). What must hold anywhere is asserted
  // above (every request counted, once, in order); the goal (p95 within 1 s at 1,000 requests/s) is
  // measured by `npm run bench`, whose end-to-end latency ends at the same commit.
});
