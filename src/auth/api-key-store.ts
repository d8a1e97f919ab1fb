/**
 * API keys in PostgreSQL, stored only as SHA-256 hashes with a role.
 */
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type pg from 'pg';
import { cacheBudget } from '../cache-budget.ts';
import { inTransaction } from '../db/transaction.ts';
import { generateApiKey, hashApiKey, looksLikeApiKey } from './api-key.ts';
import type { Role } from './roles.ts';

/** Who made a request, as far as the service knows: never the key itself. */
export interface Principal {
  keyId: string;
  name: string;
  role: Role;
  /** Hex SHA-256 of the key, the `user_id` of telemetry events. */
  userId: string;
}

export interface ApiKeyInfo {
  id: string;
  name: string;
  role: Role;
  created_at: string;
  revoked_at: string | null;
}

export const API_KEY_STORE_DEFAULTS = {
  /** How long a verified key is remembered, in milliseconds; bounds how late a revocation bites. */
  cacheTtlMs: 5000,
} as const;

export interface ApiKeyStoreOptions {
  /** How long a verified key is remembered, in ms. @default {@link API_KEY_STORE_DEFAULTS} */
  cacheTtlMs?: number;
  /** Bytes the cache of verified (and unknown) keys may hold. @default the API keys' share of CACHE_MAX_BYTES's default */
  cacheMaxBytes?: number;
}

/**
 * Bytes one remembered key costs besides its name, about: its 64-character hash (the cache key, shared
 * with the principal's userId), the key id, the objects and lru-cache's slots.
 */
const KEY_ENTRY_BYTES = 384;

/** Sentinel for "looked up and not found", so unknown keys are cached too and cannot hammer the database. */
const UNKNOWN = Symbol('unknown');

export class ApiKeyStore {
  readonly #cache: LRUCache<string, Principal | typeof UNKNOWN> | undefined;

  constructor(
    private readonly pool: pg.Pool,
    options: ApiKeyStoreOptions = {},
  ) {
    const ttl = options.cacheTtlMs ?? API_KEY_STORE_DEFAULTS.cacheTtlMs;
    const maxBytes = options.cacheMaxBytes ?? cacheBudget().apiKeys;
    // Made-up keys are remembered too (as unknown), so the bound, and the purge of expired entries, is
    // what keeps a flood of them from growing the process.
    this.#cache =
      ttl > 0 && maxBytes > 0
        ? new LRUCache<string, Principal | typeof UNKNOWN>({
            maxSize: maxBytes,
            maxEntrySize: maxBytes,
            sizeCalculation: (value) => KEY_ENTRY_BYTES + (value === UNKNOWN ? 0 : 2 * value.name.length),
            ttl,
            ttlAutopurge: true,
          })
        : undefined;
  }

  /** Keys remembered (verified or unknown), and their estimated bytes. */
  cacheStats(): { size: number; bytes: number } {
    return { size: this.#cache?.size ?? 0, bytes: this.#cache?.calculatedSize ?? 0 };
  }

  /** Creates a key and returns it: the only moment the raw key exists outside its holder. */
  async create(name: string, role: Role): Promise<{ key: string; info: ApiKeyInfo }> {
    const key = generateApiKey();
    const { rows } = await this.pool.query<{ id: string; created_at: Date }>(
      'INSERT INTO api_keys (id, name, role, key_hash) VALUES ($1, $2, $3, $4) RETURNING id, created_at',
      [randomUUID(), name, role, Buffer.from(hashApiKey(key), 'hex')],
    );
    const row = rows[0] as { id: string; created_at: Date };
    return {
      key,
      info: { id: row.id, name, role, created_at: row.created_at.toISOString(), revoked_at: null },
    };
  }

  /** The principal of a presented key, or undefined when it is malformed, unknown or revoked. */
  async verify(key: string): Promise<Principal | undefined> {
    if (!looksLikeApiKey(key)) return undefined;
    const userId = hashApiKey(key);
    const cached = this.#cache?.get(userId);
    if (cached !== undefined) return cached === UNKNOWN ? undefined : cached;
    const { rows } = await this.pool.query<{ id: string; name: string; role: Role }>({
      name: 'api_keys.verify',
      text: 'SELECT id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL',
      values: [Buffer.from(userId, 'hex')],
    });
    const row = rows[0];
    const principal =
      row === undefined ? undefined : { keyId: row.id, name: row.name, role: row.role, userId };
    this.#cache?.set(userId, principal ?? UNKNOWN);
    return principal;
  }

  async list(): Promise<ApiKeyInfo[]> {
    const { rows } = await this.pool.query<{
      id: string;
      name: string;
      role: Role;
      created_at: Date;
      revoked_at: Date | null;
    }>('SELECT id, name, role, created_at, revoked_at FROM api_keys ORDER BY created_at, id');
    return rows.map((row) => ({
      ...row,
      created_at: row.created_at.toISOString(),
      revoked_at: row.revoked_at?.toISOString() ?? null,
    }));
  }

  /** Revokes a key by id; returns false when no active key has that id. */
  async revoke(id: string): Promise<boolean> {
    const result = await this.pool.query(
      'UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
      [id],
    );
    this.#cache?.clear();
    return (result.rowCount ?? 0) > 0;
  }

  /**
   * Creates an admin key if, and only if, no key exists at all — under an advisory lock so that several
   * instances starting together create one. Returns the new key, or undefined when keys already exist.
   */
  async bootstrapAdmin(): Promise<{ key: string; info: ApiKeyInfo } | undefined> {
    return inTransaction(this.pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('telemetry-bus:bootstrap-admin'))");
      const { rows } = await client.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM api_keys) AS any');
      if (rows[0]?.any) return undefined;
      const key = generateApiKey();
      const id = randomUUID();
      const inserted = await client.query<{ created_at: Date }>(
        "INSERT INTO api_keys (id, name, role, key_hash) VALUES ($1, 'bootstrap-admin', 'admin', $2) RETURNING created_at",
        [id, Buffer.from(hashApiKey(key), 'hex')],
      );
      const createdAt = (inserted.rows[0] as { created_at: Date }).created_at.toISOString();
      return {
        key,
        info: { id, name: 'bootstrap-admin', role: 'admin', created_at: createdAt, revoked_at: null },
      };
    });
  }
}
