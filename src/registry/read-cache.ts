import { LRUCache } from 'lru-cache';
import { estimateJsonBytes } from '../cache-budget.ts';

export interface ReadCacheOptions {
  /** Time an entry is served, in milliseconds; 0 disables caching. */
  ttlMs: number;
  /**
   * Estimated bytes kept at most ({@link estimateJsonBytes}); the least recently used go first, and an
   * entry larger than this is not kept. 0 disables caching.
   */
  maxBytes: number;
}

export interface CacheStats {
  hits: number;
  misses: number;
  size: number;
  /** Estimated bytes held. */
  bytes: number;
}

/** The outcome of a cached read: the value, and whether it came from the cache. */
export interface CachedRead<V> {
  value: V;
  hit: boolean;
}

/**
 * An in-process LRU cache with a TTL, bounded by bytes, that counts hits and misses. Expired entries are
 * dropped when they expire (lru-cache's `ttlAutopurge`: one timer per stored entry, and entries are only
 * stored on a miss, which costs a database read anyway), not held until something evicts them.
 *
 * A write invalidates; a read that started before that write must not put its stale result back. Each
 * invalidation bumps a generation, and a load stores its result only if no invalidation happened while it
 * ran. (Coarse, but a false skip only costs one extra read.)
 */
export class ReadCache<V extends {}> {
  readonly #lru: LRUCache<string, V> | undefined;
  #generation = 0;
  readonly #pending = new Map<string, { generation: number; promise: Promise<V | undefined> }>();
  #hits = 0;
  #misses = 0;

  constructor(options: ReadCacheOptions) {
    this.#lru =
      options.ttlMs > 0 && options.maxBytes > 0
        ? new LRUCache<string, V>({
            maxSize: options.maxBytes,
            maxEntrySize: options.maxBytes,
            sizeCalculation: (value, key) => estimateJsonBytes(value) + 2 * key.length,
            ttl: options.ttlMs,
            ttlAutopurge: true,
          })
        : undefined;
  }

  /**
   * Returns the cached value, or loads it (and caches it unless it is undefined). Concurrent misses of
   * one key share a single load, unless an invalidation came in between.
   */
  async read<R extends V | undefined>(key: string, load: () => Promise<R>): Promise<CachedRead<R>> {
    const cached = this.#lru?.get(key);
    if (cached !== undefined) {
      this.#hits++;
      return { value: cached as R, hit: true };
    }
    this.#misses++;
    const pending = this.#pending.get(key);
    if (pending !== undefined && pending.generation === this.#generation) {
      return { value: (await pending.promise) as R, hit: false };
    }
    const entry = { generation: this.#generation, promise: load() };
    this.#pending.set(key, entry);
    try {
      const value = await entry.promise;
      if (value !== undefined && entry.generation === this.#generation) this.#lru?.set(key, value);
      return { value, hit: false };
    } finally {
      if (this.#pending.get(key) === entry) this.#pending.delete(key);
    }
  }

  delete(key: string): void {
    this.#generation++;
    this.#lru?.delete(key);
  }

  clear(): void {
    this.#generation++;
    // lru-cache's clear() walks every slot even when empty: skip it when there is nothing to drop.
    if (this.#lru !== undefined && this.#lru.size > 0) this.#lru.clear();
  }

  stats(): CacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      size: this.#lru?.size ?? 0,
      bytes: this.#lru?.calculatedSize ?? 0,
    };
  }
}
