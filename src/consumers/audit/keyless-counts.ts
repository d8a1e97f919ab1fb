/**
 * Reading what the audit trail keeps of keyless client errors (./keyless-errors.ts) as counts: per UTC
 * day, HTTP status and error code, those pruned into `audit_keyless_counts` plus the records still held
 * in the '~keyless' chain, read in one statement (one snapshot: a pruning moves records into counts in
 * one transaction, so each is counted once, whichever side it is on). No web framework here: the TypeBox
 * schemas validate `GET /audit/keyless` and type this module.
 */
import type pg from 'pg';
import { type Static, Type } from 'typebox';
import { KEYLESS_CHAIN_KEY } from './keyless-errors.ts';

export const KEYLESS_COUNTS_LIMITS = { daysDefault: 30, daysMax: 3660, itemsMax: 1000 } as const;

export const KeylessCountsQuery = Type.Object(
  {
    days: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: KEYLESS_COUNTS_LIMITS.daysMax,
        default: KEYLESS_COUNTS_LIMITS.daysDefault,
        description: 'The last this many UTC days, today included',
      }),
    ),
  },
  { additionalProperties: false },
);
export type KeylessCountsQuery = Static<typeof KeylessCountsQuery>;

export const KeylessCounts = Type.Object(
  {
    items: Type.Array(
      Type.Object(
        {
          day: Type.String({ format: 'date', description: 'UTC day the requests were made' }),
          status: Type.Integer({ description: 'HTTP status answered' }),
          code: Type.String({ description: 'The error code answered (error.type of the event)' }),
          count: Type.Integer({ description: 'Requests, whether pruned or still held as records' }),
          pruned: Type.Integer({ description: 'Of these, how many are kept as this count only' }),
        },
        { additionalProperties: false },
      ),
      { description: 'Newest day first; within a day by status, then code' },
    ),
    truncated: Type.Boolean({
      description: `True when the list was cut at ${KEYLESS_COUNTS_LIMITS.itemsMax} items`,
    }),
    pruned_through: Type.Union(
      [
        Type.Object(
          {
            chain_position: Type.Integer({ description: "The last position pruned of the '~keyless' chain" }),
            hash: Type.String({ description: 'Hex hash of that record: the chain now starts from it' }),
            occurred_before: Type.String({
              format: 'date-time',
              description: 'Every record pruned occurred before',
            }),
            pruned_at: Type.String({ format: 'date-time' }),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: 'The latest pruning; null if nothing was pruned yet' },
    ),
  },
  { additionalProperties: false },
);
export type KeylessCounts = Static<typeof KeylessCounts>;

const COUNTS = `
  WITH since AS (SELECT ((now() AT TIME ZONE 'UTC')::date - ($1::integer - 1)) AS day),
  held AS (
    SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, (envelope #>> '{metadata,response_code}')::smallint AS status,
           COALESCE(envelope #>> '{error,type}', '') AS code, count(*) AS n
      FROM audit_records
     WHERE chain_key = $2 AND occurred_at >= ((SELECT day FROM since)::timestamp AT TIME ZONE 'UTC')
     GROUP BY 1, 2, 3),
  pruned AS (SELECT day, status, code, count AS n FROM audit_keyless_counts WHERE day >= (SELECT day FROM since))
  SELECT to_char(day, 'YYYY-MM-DD') AS day, status, code, sum(n) AS count, sum(n) FILTER (WHERE is_pruned) AS pruned
    FROM (SELECT *, false AS is_pruned FROM held UNION ALL SELECT *, true FROM pruned) c
   GROUP BY day, status, code
   ORDER BY day DESC, status, code
   LIMIT $3`;

const LATEST_PRUNE = `SELECT last_position, last_hash, occurred_before, pruned_at FROM audit_prunes
  WHERE chain_key = $1 ORDER BY id DESC LIMIT 1`;

/** The keyless client errors of the last `days` UTC days, counted. */
export async function queryKeylessCounts(pool: pg.Pool, input: KeylessCountsQuery): Promise<KeylessCounts> {
  const days = input.days ?? KEYLESS_COUNTS_LIMITS.daysDefault;
  const [counts, prune] = await Promise.all([
    pool.query<{ day: string; status: number; code: string; count: string; pruned: string | null }>(COUNTS, [
      days,
      KEYLESS_CHAIN_KEY,
      KEYLESS_COUNTS_LIMITS.itemsMax + 1,
    ]),
    pool.query<{ last_position: string; last_hash: Buffer; occurred_before: Date; pruned_at: Date }>(
      LATEST_PRUNE,
      [KEYLESS_CHAIN_KEY],
    ),
  ]);
  const latest = prune.rows[0];
  return {
    items: counts.rows.slice(0, KEYLESS_COUNTS_LIMITS.itemsMax).map((row) => ({
      day: row.day,
      status: row.status,
      code: row.code,
      count: Number(row.count),
      pruned: Number(row.pruned ?? 0),
    })),
    truncated: counts.rows.length > KEYLESS_COUNTS_LIMITS.itemsMax,
    pruned_through:
      latest === undefined
        ? null
        : {
            chain_position: Number(latest.last_position),
            hash: latest.last_hash.toString('hex'),
            occurred_before: latest.occurred_before.toISOString(),
            pruned_at: latest.pruned_at.toISOString(),
          },
  };
}
