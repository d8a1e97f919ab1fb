/**
 * Two `telemetry-bus worker` processes on the audit queue (single active consumer: one applies, one
 * stands by), 100 models × 100 updates published interleaved, and the active worker killed with kill -9
 * in the middle of a batch (prefetch 500): every event is applied exactly once, and each model's audit
 * records are in strictly increasing `sequence` with no gaps. Then PostgreSQL is stopped for 30 s under
 * load: consumption pauses, nothing is dead-lettered, and everything is applied once it is back.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { connectToBroker } from '../../src/bus/broker-connection.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { buildTopology, QUEUES } from '../../src/bus/topology.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import { createBusEnvironment, createTestDatabase } from '../helper.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { postgresUp, restorePostgres, stopPostgres } from '../support/postgres-control.ts';
import { publishEvents } from '../support/publish-events.ts';
import { queueStats } from '../support/rabbitmq-vhost.ts';
import { waitUntil } from '../support/wait-until.ts';
import { startWorkerProcess } from '../support/worker-process.ts';

/** PostgreSQL may be restarting while these checks run: a failing check is only "not yet". */
const POLL = { intervalMs: 100, ignoreErrors: true };

const databaseUrl = await createTestDatabase({ after });
const bus = await createBusEnvironment();
after(() => bus.remove());
const topology = buildTopology();
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
pool.on('error', () => {});
after(() => pool.end());

const publisher = await connectToBroker(bus.env.RABBITMQ_URL, { name: 'test publisher' });
publisher.on('error', () => {});
after(() => publisher.close().catch(() => {}));
await applyTopology(publisher, topology);
const channel = await publisher.createConfirmChannel();

const publish = (events: TelemetryEvent[]) => publishEvents(channel, events);

function updates(prefix: string, models: number, perModel: number): TelemetryEvent[] {
  const base = exampleEvent('model.updated');
  const events: TelemetryEvent[] = [];
  for (let sequence = 1; sequence <= perModel; sequence++) {
    for (let model = 0; model < models; model++) {
      events.push({
        ...base,
        event_id: randomUUID(),
        correlation_id: `${prefix}-${model}-${sequence}`,
        timestamp: new Date().toISOString(),
        sequence,
        data: { ...base.data, model_id: `${prefix}/${model}`, version: sequence, changed: true },
      });
    }
  }
  return events;
}

const startWorker = () => startWorkerProcess('audit', databaseUrl, bus);

async function count(prefix: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM audit_records WHERE model_id LIKE $1',
    [`${prefix}/%`],
  );
  return Number(rows[0]?.n);
}

/** Per model, the sequences of its audit records in the order they were recorded. */
async function assertOrdered(prefix: string, models: number, perModel: number): Promise<void> {
  const { rows } = await pool.query<{ model_id: string; sequences: number[] }>(
    `SELECT model_id, array_agg(sequence::int ORDER BY id) AS sequences
       FROM audit_records WHERE model_id LIKE $1 GROUP BY model_id`,
    [`${prefix}/%`],
  );
  assert.equal(rows.length, models);
  const expected = Array.from({ length: perModel }, (_, index) => index + 1);
  for (const row of rows) assert.deepEqual(row.sequences, expected, `${row.model_id} in order, no gaps`);
}

test('kill -9 of the active worker mid-batch: the standby takes over, every event applied once, each model in order', async () => {
  const first = startWorker();
  await waitUntil(
    'the first worker to consume',
    async () => (await queueStats(bus.vhost.managementUrl, bus.vhost.vhost, QUEUES.audit)).consumers >= 1,
    30_000,
    POLL,
  );
  const second = startWorker();
  await waitUntil(
    'the second worker to stand by',
    async () => (await queueStats(bus.vhost.managementUrl, bus.vhost.vhost, QUEUES.audit)).consumers >= 2,
    30_000,
    POLL,
  );

  const events = updates('crash', 100, 100);
  // Published round by round (one update of every model per round) while the worker applies them; the
  // active worker is killed a third of the way through, with batches in flight.
  let atKill = -1;
  for (let round = 0; round < 100; round++) {
    await publish(events.slice(round * 100, (round + 1) * 100));
    if (round === 33) {
      await waitUntil('some applied', async () => (await count('crash')) > 0, 30_000, POLL);
      first.child.kill('SIGKILL');
      await once(first.child, 'exit');
      atKill = await count('crash');
    }
  }
  assert.ok(atKill > 0 && atKill < events.length, `killed mid-run (${atKill} applied)`);

  await waitUntil('every event applied', async () => (await count('crash')) >= events.length, 120_000, POLL);
  await sleep(1000);
  assert.equal(await count('crash'), events.length, 'exactly once: none lost, none twice');
  await assertOrdered('crash', 100, 100);
  const verified = await verifyAuditTrail(pool);
  assert.equal(verified.ok, true, JSON.stringify(verified));
  second.child.kill('SIGTERM');
  await once(second.child, 'exit');
});

const postgresAnswers = () => postgresUp(databaseUrl);

test('PostgreSQL stopped for 30 s under load: consumption pauses, nothing dead-lettered, all applied once after', async () => {
  const worker = startWorker();
  await waitUntil(
    'the worker to consume',
    async () => (await queueStats(bus.vhost.managementUrl, bus.vhost.vhost, QUEUES.audit)).consumers >= 1,
    30_000,
    POLL,
  );
  const before = updates('outage', 50, 40);
  const during = updates('outage2', 50, 40);
  try {
    await publish(before);
    await waitUntil('some applied', async () => (await count('outage')) >= 200, 60_000, POLL);
    await stopPostgres();
    await publish(during);
    await sleep(30_000);
    assert.match(worker.output(), /consumption paused/);
  } finally {
    await restorePostgres();
    await waitUntil('PostgreSQL to answer', postgresAnswers, 60_000, POLL);
  }
  await waitUntil(
    'every event applied',
    async () => (await count('outage')) + (await count('outage2')) >= 4000,
    120_000,
    POLL,
  ).catch(async (error: unknown) => {
    const counts = `${await count('outage').catch(() => -1)} + ${await count('outage2').catch(() => -1)}`;
    throw new Error(
      `${String(error)} (applied ${counts}); the worker said:\n${worker.output().slice(-4000)}`,
    );
  });
  await sleep(1000);
  assert.equal(await count('outage'), before.length);
  assert.equal(await count('outage2'), during.length);
  await assertOrdered('outage', 50, 40);
  await assertOrdered('outage2', 50, 40);
  const dlq = await queueStats(bus.vhost.managementUrl, bus.vhost.vhost, QUEUES.deadLetters);
  assert.equal(dlq.messages, 0, 'nothing dead-lettered');
  worker.child.kill('SIGTERM');
  await once(worker.child, 'exit');
});
