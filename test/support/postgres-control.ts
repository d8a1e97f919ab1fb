/**
 * Test support: stopping and starting the real PostgreSQL server, for the fault tests that prove what an
 * outage does. The server is shared by every test on the machine, so whatever stops it must call
 * restorePostgres() in a `finally`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { TEST_DATABASE_SERVER } from '../helper.ts';
import { waitUntil } from './wait-until.ts';

const exec = promisify(execFile);

/** The cluster pg_ctlcluster controls, as `<version> <name>`; override with TEST_POSTGRES_CLUSTER. */
export const POSTGRES_CLUSTER = process.env.TEST_POSTGRES_CLUSTER ?? '15 main';

async function pgCtlCluster(action: 'start' | 'stop'): Promise<void> {
  const [version, name] = POSTGRES_CLUSTER.split(' ') as [string, string];
  await exec(
    'pg_ctlcluster',
    ['--skip-systemctl-redirect', version, name, action, ...(action === 'stop' ? ['-m', 'fast'] : [])],
    { timeout: 60_000 },
  );
}

/** Stops the server at once (fast shutdown: sessions are cut, as in a crash of the network path). */
export async function stopPostgres(): Promise<void> {
  await pgCtlCluster('stop');
}

/** Whether a session can be opened and answer a query. */
export async function postgresUp(connectionString = `${TEST_DATABASE_SERVER}/postgres`): Promise<boolean> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Starts the server if it is not answering, and resolves once it answers. Safe to call at any time. */
export async function restorePostgres(): Promise<void> {
  if (await postgresUp()) return;
  await pgCtlCluster('start').catch(() => {
    // Already starting, or started by someone else meanwhile: the wait below decides.
  });
  await waitUntil('PostgreSQL to answer', () => postgresUp(), 60_000, {
    intervalMs: 200,
    ignoreErrors: true,
  });
}
