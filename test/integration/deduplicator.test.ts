/**
 * The runtime's de-duplication on a real PostgreSQL, without a broker: stamped copies decided by their
 * producer streams (no row per event), gaps recorded and filled, a consumer whose cached highs went stale
 * (another took over the queue) refused and right after re-reading, two claiming the same gap at once
 * applying it once; unstamped copies by event id.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pg from 'pg';
import { newEventId } from '../../src/bus/event-id.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { PRODUCER_HEADERS } from '../../src/bus/producer-sequence.ts';
import type { Delivery } from '../../src/consumers/consumer.ts';
import { Deduplicator, StaleStreamError } from '../../src/consumers/deduplication/deduplicator.ts';
import { createTestDatabase } from '../helper.ts';
import { exampleEvent } from '../support/event-examples.ts';

const pool = new pg.Pool({ connectionString: await createTestDatabase({ after }), max: 4 });
pool.on('error', () => {});
after(() => pool.end());

const PRODUCER = newEventId();

const freshEvent = () => ({ ...exampleEvent('model.queried'), event_id: newEventId() }) as TelemetryEvent;

function delivery(sequence: number | undefined, copy: TelemetryEvent = freshEvent()): Delivery {
  return {
    event: copy,
    id: copy.event_id,
    content: Buffer.from(JSON.stringify(copy)),
    exchange: 'models.events',
    routingKey: copy.event_type,
    redelivered: false,
    properties: {
      messageId: copy.event_id,
      correlationId: copy.correlation_id,
      type: copy.event_type,
      timestamp: undefined,
      headers:
        sequence === undefined
          ? {}
          : { [PRODUCER_HEADERS.producer]: PRODUCER, [PRODUCER_HEADERS.sequence]: sequence },
    },
  };
}

/** One event per number, as the producer would have emitted them. */
const events = new Map<number, TelemetryEvent>();
const stamped = (sequence: number) => {
  let event = events.get(sequence);
  if (event === undefined) {
    event = freshEvent();
    events.set(sequence, event);
  }
  return delivery(sequence, event);
};

/** Selects and records in one transaction, as the runtime does; returns the numbers found new. */
async function apply(deduplicator: Deduplicator, deliveries: Delivery[]): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const selection = await deduplicator.select(client, deliveries);
    await deduplicator.record(client, selection);
    await client.query('COMMIT');
    deduplicator.committed(selection);
    return selection.fresh.map((item) => Number(item.properties.headers[PRODUCER_HEADERS.sequence]));
  } catch (error) {
    await client.query('ROLLBACK');
    deduplicator.forget();
    throw error;
  } finally {
    client.release();
  }
}

async function state(consumer: string) {
  const marks = await pool.query<{ high: string }>(
    'SELECT high FROM consumer_stream_marks WHERE consumer = $1',
    [consumer],
  );
  const gaps = await pool.query<{ first: string; last: string }>(
    `SELECT first_sequence AS first, last_sequence AS last FROM consumer_stream_gaps WHERE consumer = $1
      ORDER BY first_sequence`,
    [consumer],
  );
  const ids = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM consumer_applied_events WHERE consumer = $1',
    [consumer],
  );
  return {
    high: marks.rows.map((row) => Number(row.high)),
    gaps: gaps.rows.map((row) => [Number(row.first), Number(row.last)]),
    ids: ids.rows[0]?.n,
  };
}

test('in order, copies, late numbers and gaps: each number new once, no row per event', async () => {
  const one = new Deduplicator('one');
  assert.deepEqual(await apply(one, [1, 2, 3].map(stamped)), [1, 2, 3]);
  // A resend of 2 and 3 with 4; 6 before 5 (5 refused by the broker, sent again later); 2 twice in a batch.
  assert.deepEqual(await apply(one, [2, 3, 4, 6, 2].map(stamped)), [4, 6]);
  assert.deepEqual(await state('one'), { high: [6], gaps: [[5, 5]], ids: 0 });
  assert.deepEqual(await apply(one, [5, 6, 5].map(stamped)), [5]);
  assert.deepEqual(await state('one'), { high: [6], gaps: [], ids: 0 });
  // A stream first seen at 10: 1 … 9 may still come (from the retry queue), and are applied when they do.
  const two = new Deduplicator('two');
  assert.deepEqual(await apply(two, [10, 12].map(stamped)), [10, 12]);
  assert.deepEqual(await state('two'), {
    high: [12],
    gaps: [
      [1, 9],
      [11, 11],
    ],
    ids: 0,
  });
  assert.deepEqual(await apply(two, [3, 11, 10, 9].map(stamped)), [3, 11, 9]);
  assert.deepEqual(await state('two'), {
    high: [12],
    gaps: [
      [1, 2],
      [4, 8],
    ],
    ids: 0,
  });
});

test('a stale cached high (another consumer took over) is refused, and right after re-reading', async () => {
  const first = new Deduplicator('takeover');
  const second = new Deduplicator('takeover');
  assert.deepEqual(await apply(first, [1, 2].map(stamped)), [1, 2]);
  assert.deepEqual(await apply(second, [2, 3, 4].map(stamped)), [3, 4]);
  // `first` still believes the high is 2: it takes 3 and 4 for new, and the write is refused.
  await assert.rejects(apply(first, [3, 4, 5].map(stamped)), StaleStreamError);
  assert.deepEqual(await apply(first, [3, 4, 5].map(stamped)), [5]);
  assert.deepEqual(await state('takeover'), { high: [5], gaps: [], ids: 0 });
});

test('two consumers claiming the same gap at once: one applies it, the other finds it gone', async () => {
  const a = new Deduplicator('race');
  const b = new Deduplicator('race');
  assert.deepEqual(await apply(a, [1, 3].map(stamped)), [1, 3]);
  assert.deepEqual(await apply(b, [3].map(stamped)), []);
  const clientA = await pool.connect();
  const clientB = await pool.connect();
  try {
    await clientA.query('BEGIN');
    await clientB.query('BEGIN');
    const selectedA = await a.select(clientA, [stamped(2)]);
    assert.equal(selectedA.fresh.length, 1);
    // b waits on a's lock of the gap, then finds it gone.
    const selectingB = b.select(clientB, [stamped(2)]);
    await a.record(clientA, selectedA);
    await clientA.query('COMMIT');
    const selectedB = await selectingB;
    assert.equal(selectedB.fresh.length, 0);
    await b.record(clientB, selectedB);
    await clientB.query('COMMIT');
  } finally {
    clientA.release();
    clientB.release();
  }
  assert.deepEqual(await state('race'), { high: [3], gaps: [], ids: 0 });
});

test('without a stamp (an older release, a hand-made message): by event id, a row each', async () => {
  const ids = new Deduplicator('ids');
  const plain = [delivery(undefined), delivery(undefined)];
  const first = await apply(ids, plain);
  assert.equal(first.length, 2);
  assert.deepEqual(await apply(ids, [...plain, delivery(undefined)]), [Number.NaN]);
  assert.deepEqual(await state('ids'), { high: [], gaps: [], ids: 3 });
});
