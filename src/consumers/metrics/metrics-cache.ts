/**
 * What GET /metrics read of closed periods, kept in memory so that the next request over a range that
 * shares them does not read them again. Never stale, by construction of what is cached and how it is
 * checked (src/consumers/metrics/metrics-query.ts):
 *
 * - only periods wholly before the compaction watermark are kept, and their rows change after that only
 *   by late events, each of which raises its day's revision (metrics_revisions) in the same transaction;
 * - an entry carries the revision of its day when it was read, and is used only by a request whose
 *   snapshot shows the same revision (and the period still before the watermark).
 *
 * Bounded by an estimate of the bytes each entry holds; over it, entries go oldest first, but an entry
 * used since it was last passed over gets a second chance (the CLOCK approximation of least recently
 * used: a hit only sets a flag, where strict LRU would move the entry — 1,440 moves for a day of minutes).
 */

import { cacheBudget } from '../../cache-budget.ts';

export interface MetricsCacheOptions {
  /** Estimated bytes kept at most; 0 turns the cache off. @default the metrics' share of CACHE_MAX_BYTES's default */
  maxBytes?: number;
}

interface Entry<T> {
  revision: number;
  value: T;
  bytes: number;
  used: boolean;
}

export class MetricsCache<T> {
  readonly #maxBytes: number;
  /** In order of insertion (a Map iterates so), an entry given a second chance re-inserted. */
  readonly #entries = new Map<string, Entry<T>>();
  #bytes = 0;
  #hits = 0;
  #misses = 0;

  constructor(options: MetricsCacheOptions = {}) {
    this.#maxBytes = options.maxBytes ?? cacheBudget().metrics;
  }

  /** The value kept for `key` at `revision`; undefined if none, or one of another revision. */
  get(key: string, revision: number): T | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || entry.revision !== revision) {
      this.#misses++;
      return undefined;
    }
    entry.used = true;
    this.#hits++;
    return entry.value;
  }

  set(key: string, revision: number, value: T, bytes: number): void {
    if (bytes > this.#maxBytes) return;
    const previous = this.#entries.get(key);
    if (previous !== undefined) {
      this.#entries.delete(key);
      this.#bytes -= previous.bytes;
    }
    this.#entries.set(key, { revision, value, bytes, used: false });
    this.#bytes += bytes;
    while (this.#bytes > this.#maxBytes) {
      const [oldest, entry] = this.#entries.entries().next().value as [string, Entry<T>];
      this.#entries.delete(oldest);
      if (entry.used) {
        entry.used = false;
        this.#entries.set(oldest, entry);
      } else {
        this.#bytes -= entry.bytes;
      }
    }
  }

  stats(): { entries: number; bytes: number; hits: number; misses: number } {
    return { entries: this.#entries.size, bytes: this.#bytes, hits: this.#hits, misses: this.#misses };
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
