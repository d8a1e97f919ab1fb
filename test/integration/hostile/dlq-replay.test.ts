/**
 * Hostile (issue 17, item 4): with 400 poison messages archived, `POST /dlq/replay {"filter":{}}` answered
 * `matched: 400, replayed: 1131` — the replay kept picking up the copies that had just failed again, as
 * new dead letters. A replay now works on the set it matched when it started. Each row archives poison
 * dead letters (their copies fail again at once when replayed), replays them, and checks matched ≥
 * replayed, that each original was replayed once, and that the copies that failed again wait as new dead
 * letters for the next replay.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import type pg from 'pg';
import { QUEUES } from '../../../src/bus/topology.ts';
import type { Consumer, Delivery } from '../../../src/consumers/consumer.ts';
import { dlqConsumer } from '../../../src/consumers/dlq/dlq-consumer.ts';
import { DlqService } from '../../../src/consumers/dlq/dlq-service.ts';
import { PoisonMessageError } from '../../../src/consumers/poison-message-error.ts';
import { consumerHarness } from '../../support/consumer-harness.ts';
import { exampleEvent } from '../../support/event-examples.ts';

/** Refuses every event of a model whose id starts with `poison/`, as poison: dead-lettered at once. */
function poisonedConsumer(): Consumer {
  return {
    name: 'test-poisoned',
    queue: QUEUES.audit,
    async apply(deliveries: Delivery[], client: pg.PoolClient) {
      for (const delivery of deliveries) {
        if (delivery.event?.event_type === 'dlq.replayed') continue;
        const modelId = String((delivery.event?.data as { model_id?: unknown } | undefined)?.model_id ?? '');
        if (modelId.startsWith('poison/')) throw new PoisonMessageError(`poison: ${modelId}`);
        await client.query('SELECT 1');
      }
    },
  };
}

const silent = { error: () => {} };
/** Hundreds of dead letters go through the runtime and the DLQ consumer: slow on a busy machine. */
const ARCHIVE_TIMEOUT_MS = 120_000;
const harness = await consumerHarness({ after }, () => [poisonedConsumer(), dlqConsumer(silent)]);
const dlq = new DlqService({ pool: harness.pool, amqpUrls: [harness.url], topology: harness.topology });
const actor = { label: 'cli:hostile@host', keyId: null };

async function deadLetters(modelId: string, state: 'dead' | 'replayed'): Promise<number> {
  const { rows } = await harness.pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM dead_letters WHERE model_id = $1 AND state = $2',
    [modelId, state],
  );
  return Number(rows[0]?.n);
}

async function archivePoison(modelId: string, count: number): Promise<void> {
  const events = Array.from({ length: count }, () =>
    exampleEvent('model.queried', {
      event_id: randomUUID(),
      correlation_id: randomUUID(),
      data: { ...exampleEvent('model.queried').data, model_id: modelId },
    }),
  );
  await harness.publish(events);
  await harness.waitUntil(
    `${count} dead letters of ${modelId}`,
    async () => (await deadLetters(modelId, 'dead')) === count,
    ARCHIVE_TIMEOUT_MS,
  );
}

interface Row {
  name: string;
  /** Poison dead letters archived before the replay. */
  archived: number;
  /** The replay's filter ({} takes every dead letter: the row runs first) and max. */
  filter: 'all' | 'model';
  max: number;
  /** What the replay must answer. */
  matched: number;
  replayed: number;
}

const rows: Row[] = [
  {
    name: "the issue's case: 400 poison, filter {}, max 10,000",
    archived: 400,
    filter: 'all',
    max: 10_000,
    matched: 400,
    replayed: 400,
  },
  {
    name: 'by model, more chunks than one (chunks of 200)',
    archived: 450,
    filter: 'model',
    max: 10_000,
    matched: 450,
    replayed: 450,
  },
  {
    name: 'max below the matched count',
    archived: 120,
    filter: 'model',
    max: 50,
    matched: 120,
    replayed: 50,
  },
];

for (const [index, row] of rows.entries()) {
  test(row.name, async () => {
    const modelId = `poison/${index}-${randomUUID()}`;
    await archivePoison(modelId, row.archived);
    const result = await dlq.replay(
      { filter: row.filter === 'all' ? {} : { model_id: modelId }, max: row.max },
      { actor },
    );
    assert.equal(result.matched, row.matched);
    assert.equal(result.replayed, row.replayed);
    assert.ok(result.matched >= result.replayed, `matched ${result.matched} ≥ replayed ${result.replayed}`);
    assert.equal(new Set(result.ids).size, result.ids.length, 'no dead letter replayed twice');
    assert.equal(await deadLetters(modelId, 'replayed'), row.replayed, 'each original replayed once');
    // Every copy failed again: as many new dead letters as were replayed, beside those not taken.
    await harness.waitUntil(
      'the copies dead-lettered again',
      async () => (await deadLetters(modelId, 'dead')) === row.archived,
      ARCHIVE_TIMEOUT_MS,
    );
    // None of the new ones is among the replayed: the replay did not take its own copies.
    const { rows: taken } = await harness.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM dead_letters WHERE id = ANY($1::uuid[]) AND received_at > (
         SELECT min(replayed_at) FROM dead_letters WHERE model_id = $2 AND state = 'replayed')`,
      [result.ids, modelId],
    );
    assert.equal(Number(taken[0]?.n), 0, 'no copy made by this replay was replayed by it');
  });
}
