/**
 * A graceful stop acknowledges everything it committed: a partial batch's acknowledgement may wait
 * (`ackDelayMs`) to go with the next one, and stop() must send it before the connections close. Without
 * that, every stop left the committed deliveries in the queue, redelivered (and de-duplicated) by the
 * next runtime: nothing lost, but work redone after every deploy.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import amqp from 'amqplib';
import type pg from 'pg';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { QUEUES } from '../../src/bus/topology.ts';
import type { Consumer, Delivery } from '../../src/consumers/consumer.ts';
import { ConsumerRuntime } from '../../src/consumers/consumer-runtime.ts';
import { consumerHarness, TEST_RETRY_DELAYS_MS } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';

/** Writes each delivery it is given (duplicates are skipped before it sees them). */
function sink(): Consumer {
  return {
    name: 'test-sink',
    queue: QUEUES.audit,
    async apply(deliveries: Delivery[], client: pg.PoolClient) {
      for (const delivery of deliveries) {
        await client.query('INSERT INTO test_sink (event_id) VALUES ($1)', [delivery.id]);
      }
    },
  };
}

const harness = await consumerHarness({ after }, () => [sink()], { start: false });
await harness.pool.query('CREATE TABLE test_sink (event_id text NOT NULL)');

/** A runtime of this test's own on the harness's vhost and database, acknowledgements delayed for long. */
function runtime(): ConsumerRuntime {
  const started = new ConsumerRuntime({
    urls: [harness.url],
    pool: harness.pool,
    topology: harness.topology,
    consumers: [sink()],
    retryDelaysMs: TEST_RETRY_DELAYS_MS,
    // Long enough that only stop() can send the acknowledgement in this test's time.
    ackDelayMs: 60_000,
  });
  after(() => started.stop(2000));
  return started;
}

/** Messages in the audit queue, ready or not: read on a connection of its own (checkQueue). */
async function queueDepth(): Promise<{ messages: number; consumers: number }> {
  const connection = await amqp.connect(harness.url);
  try {
    const channel = await connection.createChannel();
    const { messageCount, consumerCount } = await channel.checkQueue(QUEUES.audit);
    return { messages: messageCount, consumers: consumerCount };
  } finally {
    await closeConnection(connection);
  }
}

const rows = async () => Number((await harness.pool.query('SELECT count(*) AS n FROM test_sink')).rows[0].n);

test('stopped right after a partial batch commits: every committed delivery acknowledged, none redelivered', async () => {
  const first = runtime();
  await first.start();
  const events = Array.from({ length: 7 }, () =>
    exampleEvent('model.queried', { event_id: randomUUID(), correlation_id: randomUUID() }),
  );
  await harness.publish(events);
  await harness.waitUntil('the partial batch applied', () => first.status()[0]?.counters.applied === 7);
  await first.stop(5000);
  assert.equal(await rows(), 7);
  // The runtime's connections are closed: anything it left unacknowledged is back in the queue, ready.
  assert.deepEqual(await queueDepth(), { messages: 0, consumers: 0 }, 'queue empty after the stop');

  // A runtime started afterwards (as after a deploy) gets nothing again.
  const second = runtime();
  await second.start();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const { counters } = second.status()[0] ?? assert.fail('no status');
  assert.deepEqual(
    { applied: counters.applied, duplicates: counters.duplicates },
    { applied: 0, duplicates: 0 },
  );
  await second.stop(5000);
  assert.equal(await rows(), 7);
  assert.deepEqual(await queueDepth(), { messages: 0, consumers: 0 });
});
