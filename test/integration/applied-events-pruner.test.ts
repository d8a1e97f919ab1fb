/**
 * Retention of the de-duplication records on a real PostgreSQL: ids past the retention go, in chunks; recent
 * ones stay, and so do old ones whose event still has a dead (replayable) copy in the dead-letter archive,
 * until that copy is replayed. Producer streams idle past the retention go with their gaps, unless a dead
 * letter of that producer waits.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import pg from 'pg';
import { AppliedEventsPruner } from '../../src/consumers/applied-events-pruner.ts';
import { createTestDatabase } from '../helper.ts';

const DAY_MS = 86_400_000;

const pool = new pg.Pool({ connectionString: await createTestDatabase({ after }), max: 2 });
pool.on('error', () => {});
after(() => pool.end());

async function recordApplied(consumer: string, eventId: string, appliedAt: Date): Promise<void> {
  await pool.query(
    'INSERT INTO consumer_applied_events (consumer, event_id, applied_at) VALUES ($1, $2, $3)',
    [consumer, eventId, appliedAt],
  );
}

async function archiveDeadLetter(eventId: string, state: 'dead' | 'replayed'): Promise<void> {
  await pool.query(
    `INSERT INTO dead_letters (id, event_id, original_queue, reason, attempts, error_type, error_message,
                               first_failure_at, last_failure_at, content, properties, headers, state,
                               replayed_at)
     VALUES ($1, $2, 'analytics.events', 'retries_exhausted', 4, 'Error', 'boom', now(), now(), '\\x7b7d',
             '{}', '{}', $3, CASE WHEN $3 = 'replayed' THEN now() END)`,
    [randomUUID(), eventId, state],
  );
}

async function appliedIds(): Promise<string[]> {
  const { rows } = await pool.query<{ id: string }>(
    "SELECT consumer || ':' || event_id AS id FROM consumer_applied_events ORDER BY 1",
  );
  return rows.map((row) => row.id);
}

test('ids past the retention are deleted in chunks; recent ones and those with a dead letter stay', async () => {
  const now = new Date('2026-06-15T12:00:00Z');
  const old = new Date(now.getTime() - 31 * DAY_MS);
  const recent = new Date(now.getTime() - 29 * DAY_MS);
  const oldIds = Array.from({ length: 25 }, () => randomUUID());
  for (const id of oldIds) await recordApplied('metrics', id, old);
  const kept = { recent: randomUUID(), deadLettered: randomUUID(), replayed: randomUUID() };
  await recordApplied('metrics', kept.recent, recent);
  // A copy of this event is applied by analytics and dead-lettered by it too: a replay could bring it back.
  await recordApplied('analytics', kept.deadLettered, old);
  await archiveDeadLetter(kept.deadLettered, 'dead');
  // Its dead letter was replayed already: nothing can bring a copy back any more.
  await recordApplied('analytics', kept.replayed, old);
  await archiveDeadLetter(kept.replayed, 'replayed');

  const pruner = new AppliedEventsPruner(pool, { retentionDays: 30, chunkRows: 10 });
  const pruned = await pruner.prune(now);

  assert.equal(pruned, 26, 'the 25 old ids and the old id whose dead letter was replayed');
  assert.deepEqual(await appliedIds(), [`analytics:${kept.deadLettered}`, `metrics:${kept.recent}`].sort());
  assert.equal(await pruner.prune(now), 0, 'a second run finds nothing to delete');

  // Once its dead letter is gone (deleted by an operator), the id goes at the next run.
  await pool.query('DELETE FROM dead_letters WHERE event_id = $1', [kept.deadLettered]);
  assert.equal(await pruner.prune(now), 1);
  assert.deepEqual(await appliedIds(), [`metrics:${kept.recent}`]);
});

test('producer streams idle past the retention go with their gaps, unless a dead letter of the producer waits', async () => {
  const now = new Date('2026-06-15T12:00:00Z');
  const old = new Date(now.getTime() - 31 * DAY_MS);
  const recent = new Date(now.getTime() - 29 * DAY_MS);
  const producers = { idle: randomUUID(), active: randomUUID(), waiting: randomUUID() };
  for (const [producer, at] of [
    [producers.idle, old],
    [producers.active, recent],
    [producers.waiting, old],
  ] as const) {
    await pool.query(
      `INSERT INTO consumer_stream_marks (consumer, producer, event_type, high, updated_at)
       VALUES ('analytics', $1, 'model.queried', 10, $2), ('logging', $1, 'api.error', 4, $2)`,
      [producer, at],
    );
    await pool.query(
      `INSERT INTO consumer_stream_gaps (consumer, producer, event_type, first_sequence, last_sequence)
       VALUES ('analytics', $1, 'model.queried', 3, 5)`,
      [producer],
    );
  }
  // A dead letter of the waiting producer's: a replay would bring its copy back to its stream.
  await pool.query(
    `INSERT INTO dead_letters (id, event_id, original_queue, reason, attempts, error_type, error_message,
                               first_failure_at, last_failure_at, content, properties, headers, state)
     VALUES ($1, $2, 'analytics.events', 'retries_exhausted', 4, 'Error', 'boom', now(), now(), '\\x7b7d',
             '{}', jsonb_build_object('x-producer', $3::text, 'x-sequence', 4), 'dead')`,
    [randomUUID(), randomUUID(), producers.waiting],
  );

  const pruned = await new AppliedEventsPruner(pool, { retentionDays: 30 }).prune(now);

  assert.equal(pruned, 3, "the idle producer's two streams and its gap");
  const { rows } = await pool.query<{ producer: string; gaps: number }>(
    `SELECT m.producer, (SELECT count(*)::int FROM consumer_stream_gaps g WHERE g.producer = m.producer) AS gaps
       FROM consumer_stream_marks m GROUP BY m.producer ORDER BY m.producer`,
  );
  assert.deepEqual(
    rows,
    [
      { producer: producers.active, gaps: 1 },
      { producer: producers.waiting, gaps: 1 },
    ].sort((a, b) => (a.producer < b.producer ? -1 : 1)),
  );
});
