/**
 * Retention of the raw metrics events on a real PostgreSQL: the partitions of the coming days are made
 * ahead, a day past the retention is dropped whole, and the events outside every day partition (far
 * older, or ahead of the partitions) are kept in metrics_events_other until past the retention, then
 * deleted — or moved into their day's partition when it is made.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pg from 'pg';
import { newEventId } from '../../src/bus/event-id.ts';
import { MetricsPruner } from '../../src/consumers/metrics/metrics-pruner.ts';
import { createTestDatabase } from '../helper.ts';

const DAY_MS = 86_400_000;
const pool = new pg.Pool({ connectionString: await createTestDatabase({ after }), max: 2 });
pool.on('error', () => {});
after(() => pool.end());

const today = Date.now() - (Date.now() % DAY_MS);
const day = (offset: number) =>
  new Date(today + offset * DAY_MS).toISOString().slice(0, 10).replaceAll('-', '');

async function insertEvents(times: number[]): Promise<void> {
  await pool.query(
    `INSERT INTO metrics_events (event_id, event_type, occurred_at, applied_at, method, response_code,
                                 request_duration_ms, processing_ms)
     SELECT unnest($1::uuid[]), 'api.request', to_timestamp(unnest($2::float8[]) / 1000), now(), 'GET', 200, 1, 1`,
    [times.map(() => newEventId()), times],
  );
}

async function where(): Promise<Record<string, number>> {
  const { rows } = await pool.query<{ part: string; n: number }>(
    `SELECT tableoid::regclass::text AS part, count(*)::int AS n FROM metrics_events GROUP BY 1 ORDER BY 1`,
  );
  return Object.fromEntries(rows.map((row) => [row.part, row.n]));
}

async function partitions(): Promise<string[]> {
  const { rows } = await pool.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
      WHERE i.inhparent = 'metrics_events'::regclass ORDER BY 1`,
  );
  return rows.map((row) => row.name);
}

test('days past the retention dropped whole, the coming ones made ahead, strays kept then deleted', async () => {
  // A new database has the partitions of today and the next two days.
  assert.deepEqual(await partitions(), [
    `metrics_events_${day(0)}`,
    `metrics_events_${day(1)}`,
    `metrics_events_${day(2)}`,
    'metrics_events_other',
  ]);
  await insertEvents([
    today + 1000,
    today + 2000,
    today + DAY_MS + 5,
    today - 3 * DAY_MS,
    today + 9 * DAY_MS,
  ]);
  assert.deepEqual(await where(), {
    [`metrics_events_${day(0)}`]: 2,
    [`metrics_events_${day(1)}`]: 1,
    metrics_events_other: 2,
  });

  // Eight days on, with a retention of 7: today's day has ended more than 7 days ago, tomorrow's not.
  const pruner = new MetricsPruner(pool, { rawRetentionDays: 7 });
  const result = await pruner.prune(new Date(today + 8 * DAY_MS + 3_600_000));
  assert.equal(result.rawDays, 1, "today's partition");
  assert.equal(result.rawEvents, 1, 'the stray of three days ago');
  assert.deepEqual(
    await partitions(),
    [
      `metrics_events_${day(1)}`,
      `metrics_events_${day(10)}`,
      `metrics_events_${day(2)}`,
      `metrics_events_${day(8)}`,
      `metrics_events_${day(9)}`,
      'metrics_events_other',
    ].sort(),
  );
  // The event nine days ahead moved into its day's partition when it was made.
  assert.deepEqual(await where(), {
    [`metrics_events_${day(1)}`]: 1,
    [`metrics_events_${day(9)}`]: 1,
  });
});
