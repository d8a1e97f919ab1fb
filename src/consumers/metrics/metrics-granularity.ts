/**
 * The time buckets the metrics are kept and served at: a minute, an hour, a day (UTC, aligned on the
 * epoch). The same names are the rollup tables' `granularity` and GET /metrics's `bucket`.
 */
export const GRANULARITIES = ['1m', '1h', '1d'] as const;
export type Granularity = (typeof GRANULARITIES)[number];

/** Length of each granularity, in ms. */
export const GRANULARITY_MS: Record<Granularity, number> = {
  '1m': 60_000,
  '1h': 3_600_000,
  '1d': 86_400_000,
};

/** The SQL interval of each granularity, for date_bin. */
export const GRANULARITY_INTERVAL: Record<Granularity, string> = {
  '1m': '1 minute',
  '1h': '1 hour',
  '1d': '1 day',
};

export function isGranularity(value: string): value is Granularity {
  return (GRANULARITIES as readonly string[]).includes(value);
}
