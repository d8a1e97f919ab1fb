/**
 * The consumer runtime on the real broker and database, with a test consumer writing to a table of its
 * own: batches applied once whatever is redelivered, poison dead-lettered at once while the rest flows,
 * failures retried on the (shortened) ladder only in their own queue, then dead-lettered with their
 * history.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import type pg from 'pg';
import { EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import type { Consumer, Delivery } from '../../src/consumers/consumer.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import { consumerHarness, TEST_RETRY_DELAYS_MS } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { readQueues } from '../support/queue-reader.ts';

/** Fails every event whose model_id is in `failing` (as many times as its count says; Infinity = always). */
const failing = new Map<string, number>();
const attempts = new Map<string, number[]>();

function sinkConsumer(pool: pg.Pool): Consumer {
  void pool;
  return {
    name: 'test-sink',
    queue: QUEUES.audit,
    async apply(deliveries: Delivery[], client: pg.PoolClient) {
      for (const delivery of deliveries) {
        const modelId = String(((delivery.event?.data ?? {}) as { model_id?: unknown }).model_id ?? '');
        const left = failing.get(modelId);
        if (left !== undefined) {
          attempts.set(modelId, [...(attempts.get(modelId) ?? []), Date.now()]);
          if (left > 0) {
            failing.set(modelId, left - 1);
            throw new Error(`sink refuses ${modelId}`);
          }
        }
        await client.query('INSERT INTO test_sink (event_id, model_id) VALUES ($1, $2)', [
          delivery.id,
          modelId,
        ]);
      }
    },
  };
}

const harness = await consumerHarness({ after }, (pool) => [sinkConsumer(pool)], { start: false });
await harness.pool.query('CREATE TABLE test_sink (event_id text NOT NULL, model_id text NOT NULL)');
await harness.runtime.start();

function queried(modelId: string) {
  return exampleEvent('model.queried', {
    event_id: randomUUID(),
    correlation_id: randomUUID(),
    data: { ...exampleEvent('model.queried').data, model_id: modelId },
  });
}

async function rows(modelPrefix: string): Promise<Array<{ event_id: string; model_id: string }>> {
  const result = await harness.pool.query('SELECT event_id, model_id FROM test_sink WHERE model_id LIKE $1', [
    `${modelPrefix}%`,
  ]);
  return result.rows;
}

test('2,000 events, each published twice: every one applied exactly once', async () => {
  const events = Array.from({ length: 2000 }, (_, index) => queried(`dup/${index}`));
  await harness.publish(events);
  await harness.publish(events);
  await harness.waitUntil('all applied', async () => (await rows('dup/')).length >= 2000);
  await harness.waitUntil('duplicates seen', () => {
    const status = harness.runtime.status()[0];
    return (status?.counters.duplicates ?? 0) >= 2000;
  });
  const applied = await rows('dup/');
  assert.equal(applied.length, 2000);
  assert.equal(new Set(applied.map((row) => row.event_id)).size, 2000);
});

test('a poison message goes to the dead-letter queue at once, with the reason; the rest is applied', async () => {
  const dlq = await readQueues(harness.url, [QUEUES.deadLetters]);
  after(() => dlq.close());
  const before = queried('poison/before');
  const afterwards = queried('poison/after');
  await harness.publish([before]);
  await harness.publishRaw(EXCHANGES.models, 'model.queried', Buffer.from('{not json'));
  await harness.publishRaw(
    EXCHANGES.models,
    'model.queried',
    Buffer.from(JSON.stringify({ event_type: 'nope' })),
  );
  await harness.publish([afterwards]);
  await harness.waitUntil('both valid events applied', async () => (await rows('poison/')).length === 2);
  const dead = await dlq.waitFor(2, 10_000);
  for (const message of dead) {
    const headers = message.properties.headers ?? {};
    assert.equal(headers[FAILURE_HEADERS.errorType], 'POISON_MESSAGE');
    assert.equal(headers[FAILURE_HEADERS.attempts], 1, 'never retried');
    assert.equal(headers[FAILURE_HEADERS.originalQueue], QUEUES.audit);
    assert.equal(headers[FAILURE_HEADERS.originalExchange], EXCHANGES.models);
  }
  assert.match(String(dead[0]?.properties.headers?.[FAILURE_HEADERS.errorMessage]), /not JSON/);
  assert.match(String(dead[1]?.properties.headers?.[FAILURE_HEADERS.errorMessage]), /unknown event_type/);
});

test('fails twice, then succeeds: applied once, after two retries', async () => {
  failing.set('flaky/1', 2);
  await harness.publish([queried('flaky/1'), queried('steady/1')]);
  await harness.waitUntil('the flaky event applied', async () => (await rows('flaky/')).length === 1, 20_000);
  assert.equal((await rows('steady/')).length, 1, 'its batch neighbour was applied without waiting');
  assert.equal(attempts.get('flaky/1')?.length, 3);
});

test('always failing: retried after each delay of the ladder, then exactly one copy dead-lettered with its history', async () => {
  const dlq = await readQueues(harness.url, [QUEUES.deadLetters]);
  after(() => dlq.close());
  failing.set('doomed/1', Number.POSITIVE_INFINITY);
  const event = queried('doomed/1');
  const sent = Date.now();
  await harness.publish([event]);
  const [dead] = await dlq.waitFor(
    (messages) => messages.some((m) => m.properties.messageId === event.event_id),
    20_000,
  );
  const times = attempts.get('doomed/1') ?? [];
  assert.equal(times.length, TEST_RETRY_DELAYS_MS.length + 1, 'one attempt, then one per delay');
  const gaps = times.slice(1).map((time, index) => time - (times[index] as number));
  for (const [index, gap] of gaps.entries()) {
    const delay = TEST_RETRY_DELAYS_MS[index] as number;
    assert.ok(
      gap >= delay * 0.9 && gap <= delay + 1500,
      `retry ${index + 1} after ${gap} ms (delay ${delay} ms)`,
    );
  }
  assert.ok((times[0] as number) - sent < 2000);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const copies = dlq.messages(QUEUES.deadLetters).filter((m) => m.properties.messageId === event.event_id);
  assert.equal(copies.length, 1, 'exactly one copy in the dead-letter queue');
  const headers = dead?.properties.headers ?? {};
  assert.equal(headers[FAILURE_HEADERS.attempts], TEST_RETRY_DELAYS_MS.length + 1);
  assert.match(String(headers[FAILURE_HEADERS.errorStack]), /sink refuses doomed\/1\n\s+at /);
  assert.equal(headers[FAILURE_HEADERS.originalRoutingKey], 'model.queried');
  assert.equal(headers[FAILURE_HEADERS.originalQueue], QUEUES.audit);
  assert.ok(headers[FAILURE_HEADERS.firstFailureAt] !== headers[FAILURE_HEADERS.lastFailureAt]);
  assert.equal((await rows('doomed/')).length, 0);
  const status = harness.runtime.status()[0];
  assert.ok((status?.counters.deadLettered ?? 0) >= 1);
});
