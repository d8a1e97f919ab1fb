/**
 * audit.trail partitioned by model_id on a real broker: 4 partitions behind the consistent-hash exchange,
 * and two consumer runtimes (two workers) running the audit consumer on every partition. Single active
 * consumer gives each partition to one of them; the other stands by and takes over when it stops. Every
 * model's records must be in strictly increasing sequence with no gaps, every partition must have had
 * work, and a failing event must come back to its own partition through the retry ladder.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import amqp from 'amqplib';
import pg from 'pg';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { eventRecord, toOutboundMessage } from '../../src/bus/outbound-message.ts';
import { buildTopology, consumedQueues, QUEUES } from '../../src/bus/topology.ts';
import { auditConsumer } from '../../src/consumers/audit/audit-consumer.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import type { Consumer } from '../../src/consumers/consumer.ts';
import { ConsumerRuntime, type ConsumerStatus } from '../../src/consumers/consumer-runtime.ts';
import { createBusEnvironment, createTestDatabase } from '../helper.ts';
import { TEST_RETRY_DELAYS_MS } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { waitUntil } from '../support/wait-until.ts';

const PARTITIONS = 4;
const MODELS = 40;
const UPDATES = 25;

const databaseUrl = await createTestDatabase({ after });
const bus = await createBusEnvironment();
const topology = buildTopology({
  retryDelaysMs: TEST_RETRY_DELAYS_MS,
  partitions: { [QUEUES.audit]: PARTITIONS },
});
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10 });
pool.on('error', () => {});
const connection = await amqp.connect(bus.env.RABBITMQ_URL);
connection.on('error', () => {});
await applyTopology(connection, topology);
const channel = await connection.createConfirmChannel();

/**
 * Events to fail, with the attempts left to fail: 2 fails the batch and then the event alone (the runtime
 * retries a failed batch's events one by one before it sends the one at fault up the ladder).
 */
const failing = new Map<string, number>();
const partitionQueues = consumedQueues(topology, QUEUES.audit);

function auditConsumers(): Consumer[] {
  return partitionQueues.map((queue) => {
    const consumer = auditConsumer({ queue });
    return {
      ...consumer,
      async apply(deliveries, client) {
        for (const delivery of deliveries) {
          const left = failing.get(delivery.id) ?? 0;
          if (left > 0) {
            failing.set(delivery.id, left - 1);
            throw new Error(`refused: ${delivery.id}`);
          }
        }
        // The audit consumer de-duplicates itself: it says which deliveries it applied.
        return consumer.apply?.(deliveries, client);
      },
    };
  });
}

const workers = [1, 2].map(
  () =>
    new ConsumerRuntime({
      urls: [bus.env.RABBITMQ_URL],
      pool,
      topology,
      consumers: auditConsumers(),
      retryDelaysMs: TEST_RETRY_DELAYS_MS,
      prefetch: 100,
      batchSize: 50,
    }),
);
after(async () => {
  for (const worker of workers) await worker.stop(5000);
  await closeConnection(connection);
  await pool.end();
  await bus.remove();
});

const modelIds = Array.from({ length: MODELS }, (_, index) => `partition/model-${index}`);

function updateOf(modelId: string, sequence: number): TelemetryEvent {
  const base = exampleEvent('model.updated');
  return exampleEvent('model.updated', {
    event_id: randomUUID(),
    sequence,
    data: { ...base.data, model_id: modelId, version: sequence },
  });
}

/** Publishes as the API's publisher does: same exchange, routing key and headers (model_id included). */
async function publish(events: TelemetryEvent[]): Promise<void> {
  for (const event of events) {
    const record = eventRecord(
      event,
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      Date.parse(event.timestamp),
    );
    const message = toOutboundMessage(Buffer.from(record));
    channel.publish(message.exchange, message.routingKey, message.body, message.options);
  }
  await channel.waitForConfirms();
}

/** Rounds `from`..`to` of updates, interleaved across models, and a filter (no model) per round. */
function rounds(from: number, to: number): TelemetryEvent[] {
  const events: TelemetryEvent[] = [];
  for (let sequence = from; sequence <= to; sequence++) {
    for (const modelId of modelIds) events.push(updateOf(modelId, sequence));
    events.push(exampleEvent('filter.executed', { event_id: randomUUID() }));
  }
  return events;
}

async function recordCount(): Promise<number> {
  const { rows } = await pool.query<{ count: string }>('SELECT count(*) FROM audit_records');
  return Number(rows[0]?.count);
}

const appliedBy = (status: ConsumerStatus[]) => status.reduce((sum, item) => sum + item.counters.applied, 0);

test('4 partitions, 2 workers, one stopped mid-run: each model in strict sequence, work on every partition', async () => {
  await workers[0]?.start();
  await workers[1]?.start();
  const firstHalf = rounds(1, 12);
  // One event fails once: it goes up the ladder and must come back to its own partition only. A filter
  // (no model): a retried model event would be applied after its model's later events, as documented.
  const retried = firstHalf[MODELS] as TelemetryEvent;
  assert.equal(retried.event_type, 'filter.executed');
  failing.set(retried.event_id, 2);
  await publish(firstHalf);
  await waitUntil('the first half recorded', async () => (await recordCount()) === firstHalf.length, 30_000);

  // The first worker goes away; the second takes over its partitions, from where it stopped.
  const before = workers.map((worker) => appliedBy(worker.status()));
  await workers[0]?.stop(5000);
  const secondHalf = rounds(13, UPDATES);
  await publish(secondHalf);
  const total = firstHalf.length + secondHalf.length;
  await waitUntil('everything recorded', async () => (await recordCount()) === total, 30_000);
  // A worker counts a batch as applied just after its commit: the rows can be seen a moment before.
  await waitUntil(
    'every applied event counted',
    () => workers.reduce((sum, worker) => sum + appliedBy(worker.status()), 0) >= total,
    10_000,
  );
  const afterStop = workers.map((worker) => appliedBy(worker.status()));
  assert.ok((afterStop[1] ?? 0) > (before[1] ?? 0), 'the standby worker took over');
  assert.equal((afterStop[0] ?? 0) + (afterStop[1] ?? 0), total, 'each event applied once in all');

  // Per model: chain positions 1…25 carry sequences 1…25, strictly increasing, no gaps.
  const { rows } = await pool.query<{ model_id: string; sequences: string[] }>(
    `SELECT model_id, array_agg(sequence ORDER BY chain_position) AS sequences
       FROM audit_records WHERE model_id IS NOT NULL GROUP BY model_id`,
  );
  assert.equal(rows.length, MODELS);
  const expected = Array.from({ length: UPDATES }, (_, index) => index + 1);
  for (const row of rows) {
    assert.deepEqual(row.sequences.map(Number), expected, row.model_id);
  }
  const { rows: global } = await pool.query<{ count: string }>(
    "SELECT count(*) FROM audit_records WHERE chain_key = '~global'",
  );
  assert.equal(Number(global[0]?.count), UPDATES, 'the filters, with no model, all recorded');

  // Every partition had work, and the retried event came back to its own partition.
  const perQueue = new Map<string, { applied: number; retried: number }>();
  for (const status of workers.flatMap((worker) => worker.status())) {
    const entry = perQueue.get(status.queue) ?? { applied: 0, retried: 0 };
    entry.applied += status.counters.applied;
    entry.retried += status.counters.retried;
    perQueue.set(status.queue, entry);
  }
  assert.deepEqual([...perQueue.keys()].sort(), partitionQueues);
  for (const [queue, entry] of perQueue) assert.ok(entry.applied > 0, `${queue} applied events`);
  assert.equal(
    [...perQueue.values()].reduce((sum, entry) => sum + entry.retried, 0),
    1,
  );
  assert.equal(failing.get(retried.event_id), 0, 'the failing event was retried');
  const { rows: retriedRows } = await pool.query('SELECT 1 FROM audit_records WHERE event_id = $1', [
    retried.event_id,
  ]);
  assert.equal(retriedRows.length, 1);
  for (const queue of partitionQueues) {
    assert.equal((await channel.checkQueue(queue)).messageCount, 0, `${queue} drained`);
  }
  assert.equal((await channel.checkQueue(QUEUES.deadLetters)).messageCount, 0, 'nothing dead-lettered');

  const verification = await verifyAuditTrail(pool);
  assert.equal(verification.ok, true, JSON.stringify(verification.broken));
});
