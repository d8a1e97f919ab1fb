/**
 * The loss ledger end to end: requests through the real app and bus, the consumers applying them from
 * the real queues, then GET /telemetry/ledger counting every stage — emitted = spooled = confirmed = the
 * requests made, and each consumer's applied = the events routed to it — unchanged by redelivered copies.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import amqp from 'amqplib';
import type { InjectOptions } from 'fastify';
import pino from 'pino';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { buildTopology, EXCHANGES } from '../../src/bus/topology.ts';
import { buildConsumers } from '../../src/consumers/build-consumers.ts';
import { ConsumerRuntime } from '../../src/consumers/consumer-runtime.ts';
import { build, modelBody } from '../helper.ts';
import { readQueues } from '../support/queue-reader.ts';
import { waitUntil } from '../support/wait-until.ts';

const system = await build({ after }, { LEDGER_FLUSH_INTERVAL_MS: '100' });
const { app, keys, services, config } = system;
const bus = services.bus;
assert.ok(bus !== undefined);

// The consumers start once the first test's requests are made, so they find a backlog to apply.
const topology = buildTopology({ retryDelaysMs: config.retryDelaysMs });
const built = buildConsumers(['audit', 'analytics', 'logging'], config, pino({ level: 'silent' }));
const runtime = new ConsumerRuntime({
  urls: config.rabbitmqUrls,
  pool: services.pool,
  topology,
  consumers: built.consumers,
  retryDelaysMs: config.retryDelaysMs,
});
after(async () => {
  await runtime.stop(5000);
  built.close();
});

// A tap on what the API publishes, to send exact copies later: as the broker redelivers a message, with
// its properties and headers (its producer stamp included).
const TAP = 'ledger-test-tap';
const tapConnection = await amqp.connect(config.rabbitmqUrls[0] as string);
await applyTopology(tapConnection, topology);
const tapChannel = await tapConnection.createChannel();
await tapChannel.assertQueue(TAP, { durable: false });
for (const exchange of [EXCHANGES.models, EXCHANGES.errors]) await tapChannel.bindQueue(TAP, exchange, '#');
const tap = await readQueues(config.rabbitmqUrls[0] as string, [TAP]);
after(async () => {
  await tap.close();
  await closeConnection(tapConnection);
});

let requests = 0;
async function request(options: InjectOptions) {
  requests++;
  return app.inject(options);
}
const writer = { 'x-api-key': keys.writer };
const reader = { 'x-api-key': keys.reader };

type Ledger = {
  emitted: number;
  spooled: number;
  dropped: number;
  confirmed: number;
  unconfirmed: number;
  consumers: { consumer: string; expected: number; applied: number; missing: number }[];
};

async function ledger(): Promise<Ledger> {
  const response = await request({ method: 'GET', url: '/telemetry/ledger', headers: reader });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

test('every stage counts every event once: emitted = spooled = confirmed, each consumer applies all routed to it', async () => {
  // A mix: registrations, updates, reads, filters, errors (404, 400), and unauthenticated requests.
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    const body = modelBody();
    ids.push(body.model_id as string);
    assert.equal(
      (await request({ method: 'POST', url: '/models', headers: writer, payload: body })).statusCode,
      201,
    );
  }
  for (const id of ids) {
    const url = `/models/${encodeURIComponent(id)}`;
    await request({ method: 'PATCH', url, headers: writer, payload: { context_window: 1000 } });
    await request({ method: 'GET', url, headers: reader });
  }
  for (let i = 0; i < 10; i++)
    await request({ method: 'GET', url: '/models?vendor_id=OpenAI', headers: reader });
  for (let i = 0; i < 10; i++) await request({ method: 'GET', url: '/models/test%2Fnone', headers: reader });
  for (let i = 0; i < 5; i++) await request({ method: 'GET', url: '/models?limit=0', headers: reader });
  for (let i = 0; i < 5; i++) await request({ method: 'GET', url: '/livez' });
  await runtime.start();

  // Settled: every earlier request's event written to the ledger (the last read's own comes after its
  // answer), all confirmed, and applied by every running consumer.
  const settled = (l: Ledger) =>
    l.emitted === requests - 1 &&
    l.unconfirmed === 0 &&
    l.confirmed === l.spooled &&
    l.consumers.every((c) => c.consumer === 'metrics' || c.missing === 0);
  let last = await ledger();
  await waitUntil(
    'the ledger to settle',
    async () => {
      last = await ledger();
      return settled(last);
    },
    30_000,
    { intervalMs: 200 },
  );
  // The last ledger request's own event is emitted after its answer was computed.
  const counted = requests - 1;
  assert.equal(last.emitted, counted, 'one event per request, the ledger reads included');
  assert.equal(last.spooled, counted);
  assert.equal(last.dropped, 0);
  assert.equal(last.confirmed, counted);
  const byConsumer = Object.fromEntries(last.consumers.map((c) => [c.consumer, c]));
  // audit: model events, reads, filters and errors (all but api.request: 5 /livez and the ledger reads).
  const ledgerReads = counted - 20 - 40 - 10 - 10 - 5 - 5;
  assert.equal(byConsumer.audit?.applied, counted - 5 - ledgerReads);
  // analytics: model lifecycle, reads and filters (20 + 20 + 20 + 10).
  assert.equal(byConsumer.analytics?.applied, 70);
  // logging: errors (10 × 404, 5 × 400).
  assert.equal(byConsumer.logging?.applied, 15);
  // metrics is not running here: everything is missing, and said so.
  assert.equal(byConsumer.metrics?.applied, 0);
  assert.equal(byConsumer.metrics?.missing, counted);

  // Redelivered copies (the broker's at-least-once) change no count: every model and error event again,
  // byte for byte with its properties and headers.
  const audited = await services.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_records');
  const copies = await tap.waitFor(audited.rows[0]?.n ?? 0);
  assert.equal(copies.length, audited.rows[0]?.n, 'the tap saw every audited event once');
  const channel = await tapConnection.createConfirmChannel();
  for (const copy of copies) {
    channel.publish(copy.fields.exchange, copy.fields.routingKey, copy.content, copy.properties);
  }
  await channel.waitForConfirms();
  await waitUntil(
    'the copies to be skipped',
    () =>
      runtime.status().reduce((sum, status) => sum + status.counters.duplicates, 0) >=
      70 + 15 + copies.length,
    30_000,
  );
  // The API writes its ledger counts every 100 ms: the last read's own event may not be in yet.
  let again = await ledger();
  await waitUntil(
    'the ledger to count the reads',
    async () => {
      again = await ledger();
      return again.emitted === requests - 1;
    },
    10_000,
    { intervalMs: 200 },
  );
  for (const name of ['audit', 'analytics', 'logging']) {
    assert.equal(again.consumers.find((c) => c.consumer === name)?.applied, byConsumer[name]?.applied, name);
  }
  assert.equal(again.emitted, requests - 1, 'the copies were not emitted by the API');
});

test('POST /telemetry/selftest: a synthetic event through every queue, timed per consumer, with no effect', async () => {
  const denied = await request({ method: 'POST', url: '/telemetry/selftest', headers: reader });
  assert.equal(denied.statusCode, 403);
  const analyticsBefore = await services.pool.query(
    'SELECT coalesce(sum(queries), 0)::int AS n FROM analytics_model_queries',
  );

  const response = await request({
    method: 'POST',
    url: '/telemetry/selftest?timeout_ms=3000',
    headers: { 'x-api-key': keys.admin },
  });
  assert.equal(response.statusCode, 200, response.body);
  const result = response.json();
  const of = (name: string) => result.consumers.find((c: { consumer: string }) => c.consumer === name);
  // The model read reaches audit, analytics and metrics; the error audit, logging and metrics; the plain
  // request metrics only.
  assert.deepEqual(
    ['audit', 'analytics', 'logging', 'metrics'].map((name) => [name, of(name).sent]),
    [
      ['audit', 2],
      ['analytics', 1],
      ['logging', 1],
      ['metrics', 3],
    ],
  );
  for (const name of ['audit', 'analytics', 'logging']) {
    assert.equal(of(name).applied, of(name).sent, name);
    assert.ok(of(name).latency_ms >= 0 && of(name).latency_ms < 3000, `${name}: ${of(name).latency_ms} ms`);
  }
  // No metrics consumer runs here: the self-test says so rather than waiting forever.
  assert.equal(of('metrics').applied, 0);
  assert.equal(of('metrics').latency_ms, null);
  assert.equal(result.ok, false);

  // Recorded as applied, with no effect: no audit record, no count.
  const analyticsAfter = await services.pool.query(
    'SELECT coalesce(sum(queries), 0)::int AS n FROM analytics_model_queries',
  );
  assert.equal(analyticsAfter.rows[0].n, analyticsBefore.rows[0].n);
  const synthetic = await services.pool.query(
    `SELECT count(*)::int AS n FROM audit_records WHERE correlation_id = $1 OR envelope->>'source' = 'selftest'`,
    [result.correlation_id],
  );
  assert.equal(synthetic.rows[0].n, 0);
});
