/**
 * metrics_histogram_add, the merge every rollup upsert runs in PostgreSQL, against the in-process merge
 * (LogLinearHistogram.merge) on random histograms of every shape the consumer and the compactor produce:
 * empty, NULL, disjoint, overlapping, one inside the other, wide and narrow.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pg from 'pg';
import { LogLinearHistogram } from '../../src/log-linear-histogram.ts';
import { createTestDatabase } from '../helper.ts';

const pool = new pg.Pool({ connectionString: await createTestDatabase({ after }), max: 1 });
pool.on('error', () => {});
after(() => pool.end());

/** A deterministic generator, so a failure can be replayed. */
function generator(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };
}

function randomHistogram(random: () => number): LogLinearHistogram {
  const histogram = new LogLinearHistogram();
  const values = Math.floor(random() * 4) === 0 ? 0 : Math.floor(random() * 600);
  // Latencies from 0.01 ms to a few seconds, clustered like request times.
  const centre = 10 ** (random() * 5 - 2);
  for (let i = 0; i < values; i++)
    histogram.record(centre * (0.2 + random() * 3), 1 + Math.floor(random() * 3));
  return histogram;
}

test('metrics_histogram_add merges like LogLinearHistogram.merge, NULL counting as empty', async () => {
  const random = generator(20_261_128);
  const pairs = Array.from(
    { length: 300 },
    () => [randomHistogram(random), randomHistogram(random)] as const,
  );
  const { rows } = await pool.query<{ merged: string[] }>(
    `SELECT metrics_histogram_add(a::bigint[], b::bigint[])::text[] AS merged
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS p(a, b, n) ORDER BY n`,
    [pairs.map(([a]) => `{${a.toPacked().join(',')}}`), pairs.map(([, b]) => `{${b.toPacked().join(',')}}`)],
  );
  assert.equal(rows.length, pairs.length);
  pairs.forEach(([a, b], i) => {
    const expected = LogLinearHistogram.fromPacked(a.toPacked()).merge(b).toPacked();
    assert.deepEqual(rows[i]?.merged.map(Number), expected, `pair ${i}`);
  });

  const { rows: nulls } = await pool.query<{ both: string; left: string; right: string }>(
    `SELECT metrics_histogram_add(NULL, NULL)::text AS both,
            metrics_histogram_add(NULL, $1::bigint[])::text AS left,
            metrics_histogram_add($1::bigint[], NULL)::text AS right`,
    [`{${pairs[1]?.[0].toPacked().join(',')}}`],
  );
  const one = `{${pairs[1]?.[0].toPacked().join(',')}}`;
  assert.deepEqual(nulls[0], { both: '{}', left: one, right: one });
});
