/**
 * The dead-letter archive on the real broker and database: a test consumer on audit.trail fails for
 * chosen model_ids, the runtime takes those messages up the (shortened) ladder into dlq.dead_letters, and
 * the dlq consumer archives them. Then: replay to the original queue only, with a fresh retry budget and
 * de-duplication by event id (1,000 dead letters, half already applied → exactly the other half
 * applied), dry runs that move nothing, broker-made and odd messages archived whole, delete and purge.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import amqp from 'amqplib';
import type pg from 'pg';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { eventRecord, toOutboundMessage } from '../../src/bus/outbound-message.ts';
import { EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import type { Consumer, Delivery } from '../../src/consumers/consumer.ts';
import { dlqConsumer } from '../../src/consumers/dlq/dlq-consumer.ts';
import { DlqService } from '../../src/consumers/dlq/dlq-service.ts';
import { decideFailure, FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import { consumerHarness, TEST_RETRY_DELAYS_MS } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';

/** Model ids the test consumer refuses, for as long as they are in here. */
const failing = new Set<string>();
const logged: Array<{ object: Record<string, unknown>; message: string }> = [];
const logger = {
  error: (object: object, message: string) => logged.push({ object: object as never, message }),
};

function sinkConsumer(): Consumer {
  return {
    name: 'test-sink',
    queue: QUEUES.audit,
    async apply(deliveries: Delivery[], client: pg.PoolClient) {
      for (const delivery of deliveries) {
        // A replay's own records for the audit trail come through audit.trail too: kept apart.
        if (delivery.event?.event_type === 'dlq.replayed') {
          await client.query('INSERT INTO test_replay_records (event) VALUES ($1)', [delivery.event]);
          continue;
        }
        const data = delivery.event?.data as { model_id?: unknown } | undefined;
        const modelId = String(data?.model_id ?? '');
        if (failing.has(modelId)) throw new Error(`sink refuses ${modelId}`);
        await client.query('INSERT INTO test_sink (event_id, model_id) VALUES ($1, $2)', [
          delivery.id,
          modelId,
        ]);
      }
    },
  };
}

const harness = await consumerHarness({ after }, () => [sinkConsumer(), dlqConsumer(logger)], {
  start: false,
});
await harness.pool.query('CREATE TABLE test_sink (event_id text NOT NULL, model_id text NOT NULL)');
await harness.pool.query('CREATE TABLE test_replay_records (event jsonb NOT NULL)');
await harness.runtime.start();
const dlq = new DlqService({ pool: harness.pool, amqpUrls: [harness.url], topology: harness.topology });
const actor = { label: 'cli:test@host', keyId: null };

function queried(modelId: string) {
  return exampleEvent('model.queried', {
    event_id: randomUUID(),
    correlation_id: randomUUID(),
    data: { ...exampleEvent('model.queried').data, model_id: modelId },
  });
}

async function count(sql: string, values: unknown[]): Promise<number> {
  const { rows } = await harness.pool.query<{ count: string }>(sql, values);
  return Number(rows[0]?.count ?? 0);
}

const deadOf = (modelId: string) => count('SELECT count(*) FROM dead_letters WHERE model_id = $1', [modelId]);
const appliedOf = (modelId: string) => count('SELECT count(*) FROM test_sink WHERE model_id = $1', [modelId]);
const sinkCounters = () => harness.runtime.status()[0]?.counters ?? { applied: 0, duplicates: 0 };

async function deadLetterOf(where: string, values: unknown[]) {
  const { rows } = await harness.pool.query<{ id: string }>(
    `SELECT id FROM dead_letters WHERE ${where}`,
    values,
  );
  assert.equal(rows.length, 1, `one dead letter where ${where}`);
  const detail = await dlq.get((rows[0] as { id: string }).id);
  assert.ok(detail);
  return detail;
}

test('an event that exhausts its retries is archived with its history and headers, and logged with its stack', async () => {
  failing.add('archive/1');
  const event = queried('archive/1');
  await harness.publish([event]);
  await harness.waitUntil('the dead letter archived', async () => (await deadOf('archive/1')) === 1);
  const dead = await deadLetterOf('model_id = $1', ['archive/1']);
  assert.equal(dead.event_id, event.event_id);
  assert.equal(dead.event_type, 'model.queried');
  assert.equal(dead.correlation_id, event.correlation_id);
  assert.equal(dead.reason, 'retries_exhausted');
  assert.equal(dead.attempts, TEST_RETRY_DELAYS_MS.length + 1);
  assert.equal(dead.error_type, 'Error');
  assert.equal(dead.error_message, 'sink refuses archive/1');
  assert.match(String(dead.error_stack), /sink refuses archive\/1\n\s+at /);
  assert.equal(dead.original_queue, QUEUES.audit);
  assert.equal(dead.original_exchange, EXCHANGES.models);
  assert.equal(dead.original_routing_key, 'model.queried');
  assert.ok(Date.parse(dead.last_failure_at) > Date.parse(dead.first_failure_at));
  assert.equal(dead.state, 'dead');
  assert.deepEqual(JSON.parse(dead.content.data), event);
  assert.equal(dead.headers[FAILURE_HEADERS.deadLetterId], dead.id);
  assert.equal(dead.headers['cloudEvents:id'], event.event_id);
  // The retries went through the retry queues, which the broker records in x-death.
  const deaths = dead.headers['x-death'] as Array<{ queue: string; reason: string }>;
  assert.ok(Array.isArray(deaths) && deaths.some((death) => death.reason === 'expired'));
  assert.equal(dead.properties.messageId, event.event_id);
  await harness.waitUntil('its log line', () => logged.some((line) => line.message.includes('dead letter')));
  const line = logged.find((entry) => (entry.object.deadLetter as { id: string }).id === dead.id);
  assert.ok(line, 'logged once archived');
  assert.match(String((line.object.err as { stack: string }).stack), /sink refuses archive\/1\n\s+at /);
  assert.equal((line.object.err as { type: string }).type, 'Error');
  failing.delete('archive/1');
});

test('poison is archived byte for byte, with the reason', async () => {
  const content = Buffer.from('{not json at all');
  await harness.publishRaw(EXCHANGES.models, 'model.queried', content, { model_id: 'poison/1' });
  await harness.waitUntil('the poison archived', async () => (await deadOf('poison/1')) === 1);
  const dead = await deadLetterOf('model_id = $1', ['poison/1']);
  assert.equal(dead.reason, 'poison');
  assert.equal(dead.error_type, 'POISON_MESSAGE');
  assert.equal(dead.attempts, 1);
  assert.equal(dead.content.data, content.toString());
  assert.match(dead.error_message, /not JSON/);
});

test('odd messages are archived whole: no headers, a binary body, a 4 MiB body, odd header values; a redelivered copy once', async () => {
  const connection = await amqp.connect(harness.url);
  after(() => closeConnection(connection));
  const channel = await connection.createConfirmChannel();
  const binary = Buffer.concat([Buffer.from([0, 0, 255, 254]), randomBytes(1024)]);
  const huge = randomBytes(4 * 1024 * 1024);
  const oddId = randomUUID();
  channel.publish(EXCHANGES.deadLetters, '', binary, { messageId: 'odd-binary' });
  channel.publish(EXCHANGES.deadLetters, '', binary, { messageId: 'odd-binary' });
  channel.publish(EXCHANGES.deadLetters, '', huge, { messageId: 'odd-huge' });
  channel.publish(EXCHANGES.deadLetters, '', Buffer.from('x'), {
    messageId: oddId,
    headers: {
      [FAILURE_HEADERS.deadLetterId]: 'not-a-uuid',
      [FAILURE_HEADERS.errorType]: 'Nul\u0000Type',
      [FAILURE_HEADERS.lastFailureAt]: 'yesterday',
      bytes: Buffer.from([0, 1, 2]),
      nested: { deep: [1, 'two', null] },
    },
  });
  await channel.waitForConfirms();
  await harness.waitUntil(
    'the odd messages archived',
    async () =>
      (await count('SELECT count(*) FROM dead_letters WHERE event_id = ANY($1)', [
        ['odd-binary', 'odd-huge', oddId],
      ])) >= 3,
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  const binaryRow = await deadLetterOf('event_id = $1', ['odd-binary']);
  assert.equal(binaryRow.content.encoding, 'base64');
  assert.deepEqual(Buffer.from(binaryRow.content.data, 'base64'), binary);
  assert.equal(binaryRow.reason, 'unknown');
  assert.equal(binaryRow.original_queue, null);
  const hugeRow = await deadLetterOf('event_id = $1', ['odd-huge']);
  assert.equal(hugeRow.content_bytes, huge.length);
  assert.deepEqual(Buffer.from(hugeRow.content.data, 'base64'), huge);
  const oddRow = await deadLetterOf('event_id = $1', [oddId]);
  assert.equal(oddRow.error_type, 'Nul\uFFFDType');
  assert.deepEqual(oddRow.headers.bytes, { $bytes: Buffer.from([0, 1, 2]).toString('base64') });
  assert.deepEqual(oddRow.headers.nested, { deep: [1, 'two', null] });
  assert.ok(Math.abs(Date.parse(oddRow.last_failure_at) - Date.now()) < 60_000, 'a bad time falls back');
  assert.equal(
    (harness.runtime.status()[1]?.counters.retried ?? 0) +
      (harness.runtime.status()[1]?.counters.deadLettered ?? 0),
    0,
  );
});

test('a dead letter made by RabbitMQ (delivery limit) is archived from x-death, and is not replayable elsewhere', async () => {
  const connection = await amqp.connect(harness.url);
  after(() => closeConnection(connection));
  const channel = await connection.createConfirmChannel();
  const queue = `limit.${randomUUID()}`;
  await channel.assertQueue(queue, {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-delivery-limit': 1,
      'x-dead-letter-exchange': EXCHANGES.deadLetters,
    },
  });
  const event = queried('limit/1');
  channel.sendToQueue(queue, Buffer.from(JSON.stringify(event)), {
    messageId: event.event_id,
    type: event.event_type,
    headers: { model_id: 'limit/1' },
  });
  await channel.waitForConfirms();
  // Refused (requeued) until the queue gives up on it.
  const consumer = await connection.createChannel();
  await consumer.consume(queue, (message) => message && consumer.nack(message, false, true));
  await harness.waitUntil('the broker dead-lettered it', async () => (await deadOf('limit/1')) === 1);
  const dead = await deadLetterOf('model_id = $1', ['limit/1']);
  assert.equal(dead.reason, 'delivery_limit');
  assert.equal(dead.error_type, 'DELIVERY_LIMIT');
  assert.equal(dead.original_queue, queue);
  assert.equal(dead.event_id, event.event_id);
  assert.ok(Array.isArray(dead.headers['x-death']));
  const replay = await dlq.replay({ ids: [dead.id] }, { actor });
  assert.equal(replay.replayed, 0);
  assert.deepEqual(replay.skipped, [{ id: dead.id, reason: 'not_replayable' }]);
  assert.equal((await dlq.get(dead.id))?.state, 'dead');
});

const BULK = 'bulk/1';
const bulkEvents = Array.from({ length: 1000 }, () => queried(BULK));
/** Through the real ladder; the rest are dead-lettered as the runtime does it (see below). */
const LADDER_COUNT = 50;

/**
 * Publishes dead letters exactly as the runtime's #fail would after the last retry: the API publisher's
 * message (toOutboundMessage), the failure headers of decideFailure, to dead.letters. The runtime takes
 * about 50 ms per failure here (each failing message is applied alone and its retry confirmed before the
 * next), so 1,000 events × 4 attempts through the real ladder would take minutes.
 */
async function deadLetterAsTheRuntimeDoes(events: ReturnType<typeof queried>[]): Promise<void> {
  const connection = await amqp.connect(harness.url);
  try {
    const channel = await connection.createConfirmChannel();
    for (const event of events) {
      const message = toOutboundMessage(
        Buffer.from(
          eventRecord(
            event,
            `00-${randomUUID().replaceAll('-', '')}-${randomUUID().replaceAll('-', '').slice(0, 16)}-01`,
            Date.parse(event.timestamp),
            harness.producer.stamp(event),
          ),
        ),
      );
      const decision = decideFailure(
        {
          queue: QUEUES.audit,
          exchange: message.exchange,
          routingKey: message.routingKey,
          headers: { ...message.options.headers, [FAILURE_HEADERS.attempts]: TEST_RETRY_DELAYS_MS.length },
        },
        new Error(`sink refuses ${event.data.model_id}`),
        { poison: false, retryDelaysMs: TEST_RETRY_DELAYS_MS, now: new Date(), deadLetterId: randomUUID() },
      );
      assert.equal(decision.action, 'dead-letter');
      channel.publish(EXCHANGES.deadLetters, message.routingKey, message.body, {
        ...message.options,
        mandatory: false,
        headers: decision.headers,
      });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

test('1,000 events dead-lettered: 50 through the real ladder, 950 as the runtime makes them', async () => {
  failing.add(BULK);
  await harness.publish(bulkEvents.slice(0, LADDER_COUNT));
  await harness.waitUntil(
    `${LADDER_COUNT} dead letters through the ladder`,
    async () => (await deadOf(BULK)) === LADDER_COUNT,
    60_000,
  );
  await deadLetterAsTheRuntimeDoes(bulkEvents.slice(LADDER_COUNT));
  await harness.waitUntil('1,000 dead letters archived', async () => (await deadOf(BULK)) === 1000, 60_000);
  assert.equal(await appliedOf(BULK), 0);
  assert.equal(
    await count(
      "SELECT count(*) FROM dead_letters WHERE model_id = $1 AND attempts = $2 AND original_queue = 'audit.trail'",
      [BULK, TEST_RETRY_DELAYS_MS.length + 1],
    ),
    1000,
  );
  failing.delete(BULK);
});

test('listing pages through them newest first, each exactly once', async () => {
  const seen: string[] = [];
  let cursor: string | undefined;
  let previous = Number.POSITIVE_INFINITY;
  do {
    const page = await dlq.list({ model_id: BULK, limit: 150, ...(cursor === undefined ? {} : { cursor }) });
    for (const item of page.items) {
      assert.ok(Date.parse(item.last_failure_at) <= previous, 'newest first');
      previous = Date.parse(item.last_failure_at);
      seen.push(item.id);
    }
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  assert.equal(seen.length, 1000);
  assert.equal(new Set(seen).size, 1000);
  assert.equal((await dlq.list({ model_id: BULK, error_type: 'POISON_MESSAGE' })).items.length, 0);
  assert.equal(
    (await dlq.list({ model_id: BULK, from: new Date(Date.now() + 60_000).toISOString() })).items.length,
    0,
  );
});

test('a dry run moves nothing', async () => {
  const before = sinkCounters();
  const result = await dlq.replay({ filter: { model_id: BULK }, dry_run: true, max: 10_000 }, { actor });
  assert.equal(result.dry_run, true);
  assert.equal(result.matched, 1000);
  assert.equal(result.replayed, 0);
  assert.equal(result.ids.length, 1000);
  const limited = await dlq.replay({ filter: { model_id: BULK }, dry_run: true, max: 10 }, { actor });
  assert.equal(limited.ids.length, 10);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(
    await count("SELECT count(*) FROM dead_letters WHERE model_id = $1 AND state = 'dead'", [BULK]),
    1000,
  );
  assert.equal(await appliedOf(BULK), 0);
  // Only the dry runs' records reached the queue: 1,000 dead letters in parts of 200, then 10 in one.
  const { rows: parts } = await harness.pool.query<{ part: number; ids: number; dry_run: boolean }>(
    `SELECT (event #>> '{data,part}')::int AS part, jsonb_array_length(event #> '{data,dead_letters}') AS ids,
            (event #>> '{data,dry_run}')::boolean AS dry_run
       FROM test_replay_records WHERE (event #>> '{data,operation_id}')::bigint = ANY($1::bigint[])
      ORDER BY (event #>> '{data,operation_id}')::bigint, part`,
    [[result.operation_id, limited.operation_id]],
  );
  assert.deepEqual(
    parts.map((part) => [part.part, part.ids, part.dry_run]),
    [
      [1, 200, true],
      [2, 200, true],
      [3, 200, true],
      [4, 200, true],
      [5, 200, true],
      [1, 10, true],
    ],
  );
  assert.deepEqual(sinkCounters(), { ...before, applied: before.applied + 6 });
  const { rows } = await harness.pool.query('SELECT * FROM dlq_operations WHERE id = $1', [
    result.operation_id,
  ]);
  assert.equal(rows[0]?.dry_run, true);
  assert.equal(rows[0]?.actor, actor.label);
  assert.equal(rows[0]?.affected_ids.length, 1000);
});

test('replaying 1,000 dead letters of which half were already applied applies exactly the other half', async () => {
  // Half applied since they were dead-lettered: copies of them (same stream numbers, as a resend or a
  // redelivery carries) published again while the sink accepts them.
  const alreadyApplied = bulkEvents.filter((_, index) => index % 2 === 0);
  const expected = new Set(bulkEvents.map((event) => event.event_id));
  await harness.publish(alreadyApplied);
  await harness.waitUntil('the first half applied', async () => (await appliedOf(BULK)) === 500, 60_000);
  const before = sinkCounters();
  const progress: number[] = [];
  const result = await dlq.replay(
    { filter: { model_id: BULK }, max: 10_000 },
    { actor, onProgress: (done) => progress.push(done) },
  );
  assert.equal(result.matched, 1000);
  assert.equal(result.replayed, 1000);
  assert.equal(result.ids.length, 1000);
  assert.deepEqual(result.skipped, []);
  assert.equal(progress.at(-1), 1000);
  await harness.waitUntil('the other half applied', async () => (await appliedOf(BULK)) >= 1000, 60_000);
  await harness.waitUntil(
    'the first half seen as duplicates',
    () => sinkCounters().duplicates - before.duplicates >= 500,
  );
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const { rows } = await harness.pool.query<{ event_id: string }>(
    'SELECT event_id FROM test_sink WHERE model_id = $1',
    [BULK],
  );
  assert.equal(rows.length, 1000, 'each event once');
  assert.deepEqual(new Set(rows.map((row) => row.event_id)), expected);
  assert.equal(sinkCounters().duplicates - before.duplicates, 500);
  assert.equal(
    await count(
      "SELECT count(*) FROM dead_letters WHERE model_id = $1 AND state = 'replayed' AND replayed_by = $2 AND replay_operation_id = $3",
      [BULK, actor.label, result.operation_id],
    ),
    1000,
  );
  assert.equal(await deadOf(BULK), 1000, 'no new dead letter');
  // Replaying again finds nothing left to replay.
  const again = await dlq.replay({ filter: { model_id: BULK } }, { actor });
  assert.equal(again.matched, 0);
  assert.equal(again.replayed, 0);
});

test('a replayed event that fails again gets a fresh retry budget and a new dead letter pointing back', async () => {
  failing.add('again/1');
  await harness.publish([queried('again/1')]);
  await harness.waitUntil('dead-lettered', async () => (await deadOf('again/1')) === 1);
  const first = await deadLetterOf('model_id = $1', ['again/1']);
  const unknown = randomUUID();
  const result = await dlq.replay({ ids: [first.id, unknown] }, { actor });
  assert.deepEqual(result.ids, [first.id]);
  assert.deepEqual(result.skipped, [{ id: unknown, reason: 'not_found' }]);
  await harness.waitUntil('dead-lettered again', async () => (await deadOf('again/1')) === 2);
  const second = await deadLetterOf("model_id = $1 AND state = 'dead'", ['again/1']);
  assert.notEqual(second.id, first.id);
  assert.equal(second.attempts, TEST_RETRY_DELAYS_MS.length + 1, 'the whole ladder again');
  assert.equal(second.headers['x-replayed-from'], first.id);
  assert.equal(second.headers['x-replayed-by'], actor.label);
  assert.equal(second.original_exchange, EXCHANGES.models, 'the original route, not retry.requeue');
  assert.equal(second.original_routing_key, 'model.queried');
  const replayedAgain = await dlq.replay({ ids: [first.id] }, { actor });
  assert.deepEqual(replayedAgain.skipped, [{ id: first.id, reason: 'already_replayed' }]);
  failing.delete('again/1');
  await dlq.replay({ ids: [second.id] }, { actor });
  await harness.waitUntil('applied at last', async () => (await appliedOf('again/1')) === 1);
});

test('delete removes one dead letter and records who did; purge removes what a filter matches', async () => {
  failing.add('gone/1');
  await harness.publish([queried('gone/1'), queried('gone/1'), queried('gone/1')]);
  await harness.waitUntil('dead-lettered', async () => (await deadOf('gone/1')) === 3);
  failing.delete('gone/1');
  const page = await dlq.list({ model_id: 'gone/1' });
  const victim = page.items[0]?.id as string;
  assert.equal(await dlq.delete(victim, actor), true);
  assert.equal(await dlq.get(victim), undefined);
  assert.equal(await dlq.delete(victim, actor), false);
  assert.equal(await deadOf('gone/1'), 2);
  assert.equal(
    await count("SELECT count(*) FROM dlq_operations WHERE action = 'delete' AND $1 = ANY(affected_ids)", [
      victim,
    ]),
    1,
  );
  assert.equal(await dlq.purge({ model_id: 'gone/1' }, actor), 2);
  assert.equal(await deadOf('gone/1'), 0);
  assert.equal(await deadOf(BULK), 1000, 'others untouched');
});
