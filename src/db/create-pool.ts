import pg from 'pg';

// int8 (COUNT(*), bigint sums) as a JS number: our counts stay far below 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10));

export interface PoolOptions {
  /** PostgreSQL connection URL. */
  databaseUrl: string;
  /** Maximum connections. @default {@link POOL_DEFAULTS} */
  max?: number;
  /** Time to wait for a connection before failing, in ms. @default {@link POOL_DEFAULTS} */
  connectionTimeoutMs?: number;
  /** `application_name` shown in pg_stat_activity. @default 'telemetry-bus' */
  applicationName?: string;
}

export const POOL_DEFAULTS = {
  /** Connections open at once, at most. */
  max: 10,
  /** Time to wait for a connection before failing, in milliseconds. */
  connectionTimeoutMs: 5000,
} as const;

/**
 * A pg Pool with the project's defaults; a client's error is reported, never thrown — idle or checked out.
 *
 * pg-pool listens for errors only on idle clients. A checked-out client between two queries (inside a
 * consumer's transaction, say) that the server terminates — PostgreSQL shutting down sends every session
 * FATAL 57P01 — emits 'error' with no listener, which would crash the process. With a listener of its
 * own, the client's next query fails instead, and its holder handles that like any lost connection.
 */
export function createPool(options: PoolOptions, onError: (error: Error) => void = () => {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.max ?? POOL_DEFAULTS.max,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? POOL_DEFAULTS.connectionTimeoutMs,
    application_name: options.applicationName ?? 'telemetry-bus',
  });
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}
