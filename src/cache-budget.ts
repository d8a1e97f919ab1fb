/**
 * One memory budget for every read cache of an API process (CACHE_MAX_BYTES), shared out once here, so
 * that no sequence of reads — distinct filter pages, made-up keys, metrics ranges — can make the process
 * hold more than that in caches (issue 17, item 1: a count bound let 10,000 pages of 200 models hold
 * 1.3 GB).
 *
 * Filter pages and metrics periods are what a reader can multiply, so they get most of it; models by id
 * and API keys are small entries.
 */

/** Bytes all read caches of a process may hold together, by default: 64 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/** Each cache's share of the budget; they add up to 1. */
export const CACHE_SHARES = { filters: 0.375, metrics: 0.375, models: 0.125, apiKeys: 0.125 } as const;

export type CacheBudget = { [cache in keyof typeof CACHE_SHARES]: number };

/** The bytes each cache may hold out of `totalBytes`. */
export function cacheBudget(totalBytes: number = DEFAULT_CACHE_MAX_BYTES): CacheBudget {
  const share = (cache: keyof typeof CACHE_SHARES) => Math.floor(totalBytes * CACHE_SHARES[cache]);
  return {
    filters: share('filters'),
    metrics: share('metrics'),
    models: share('models'),
    apiKeys: share('apiKeys'),
  };
}

/**
 * Estimated bytes a JSON-shaped value holds in the heap: twice its JSON length. Measured on pages of 200
 * models, V8 holds 1.03 bytes per JSON character; doubled for two-byte strings and what a parser leaves.
 */
export function estimateJsonBytes(value: unknown): number {
  return 2 * (JSON.stringify(value)?.length ?? 0);
}
