/**
 * The composition root of the domain: a pool and the services built on it, created from the
 * configuration. The CLI and the tests both build the system through here.
 */
import type pg from 'pg';
import { ApiKeyStore } from './auth/api-key-store.ts';
import type { Config } from './config.ts';
import { createPool } from './db/create-pool.ts';
import { ModelRegistry } from './registry/model-registry.ts';
import { ModelRepository } from './registry/model-repository.ts';

export interface Services {
  pool: pg.Pool;
  registry: ModelRegistry;
  apiKeys: ApiKeyStore;
  close(): Promise<void>;
}

export function createServices(
  config: Pick<Config, 'databaseUrl' | 'dbPoolMax' | 'cacheTtlMs' | 'cacheMaxEntries' | 'apiKeyCacheTtlMs'>,
  onPoolError: (error: Error) => void = () => {},
): Services {
  const pool = createPool({ databaseUrl: config.databaseUrl, max: config.dbPoolMax }, onPoolError);
  return {
    pool,
    registry: new ModelRegistry(new ModelRepository(pool), {
      ttlMs: config.cacheTtlMs,
      maxEntries: config.cacheMaxEntries,
    }),
    apiKeys: new ApiKeyStore(pool, { cacheTtlMs: config.apiKeyCacheTtlMs }),
    close: () => pool.end(),
  };
}
