/**
 * A pooled client for some work, and a transaction around it, written once: the client always goes back
 * to the pool, and one that cannot be trusted again — its connection broke, or its ROLLBACK failed — goes
 * back with the error, so the pool destroys it instead of handing the next caller a dead connection or an
 * open transaction.
 *
 * node-postgres leaves transactions to the caller (its documentation shows this BEGIN / COMMIT / ROLLBACK
 * block by hand); the small libraries that wrap it are callback-era and unmaintained, and would not tell
 * a broken connection the way this service does (./database-unavailable.ts), so it is written here.
 */
import type pg from 'pg';
import { isDatabaseUnavailable } from './database-unavailable.ts';

export interface TransactionOptions {
  /**
   * What opens the transaction, sent as one simple query: `BEGIN` with its isolation level and access
   * mode, and any `SET LOCAL` that goes with it. @default 'BEGIN'
   */
  begin?: string;
  /** Called as soon as the opening statement is sent, before PostgreSQL answers it. */
  onBeginSent?: () => void;
}

const asError = (value: unknown): Error => (value instanceof Error ? value : new Error(String(value)));

/**
 * Runs `work` on a client of `pool` and releases it; when `work` throws an error that says the connection
 * broke (PostgreSQL unreachable, restarting, or the session terminated), the client is released with it
 * and the pool discards it. The error is thrown as it was.
 */
export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    return await work(client);
  } catch (error) {
    if (isDatabaseUnavailable(error)) broken = asError(error);
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * Runs `work` in a transaction on a client of `pool`: `options.begin` (BEGIN), `work`, COMMIT. When any of
 * them throws, the transaction is rolled back and the error thrown as it was; the client is discarded
 * instead of rolled back when the error says its connection broke, and discarded too when the ROLLBACK
 * fails. A failed COMMIT has ended the transaction already: its ROLLBACK only draws a warning.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (client: pg.PoolClient) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    const begun = client.query(options.begin ?? 'BEGIN');
    options.onBeginSent?.();
    await begun;
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    if (isDatabaseUnavailable(error)) broken = asError(error);
    else {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = asError(rollbackError);
      });
    }
    throw error;
  } finally {
    client.release(broken);
  }
}
