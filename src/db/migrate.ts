import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import pg from 'pg';

/** Plain-SQL migrations, shipped with the code. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/** The advisory lock that queues instances migrating at once ('telemetry-bus migrate' as a number). */
const MIGRATION_QUEUE_LOCK = 7_484_101_650_123;

/**
 * Applies pending migrations (plain `.sql` files); returns the names of the migrations applied.
 *
 * Several instances often start together (the API and its workers under compose or Kubernetes).
 * node-pg-migrate's own lock is a try-lock: the second instance would fail with "Another migration is
 * already running". So each instance first waits its turn on a blocking advisory lock of ours, held on a
 * session of its own; the first migrates, the others then find nothing pending.
 */
export async function migrate(
  databaseUrl: string,
  log: (message: string) => void = () => {},
): Promise<string[]> {
  const queue = new pg.Client({ connectionString: databaseUrl, application_name: 'telemetry-bus migrate' });
  queue.on('error', () => {
    // The session only holds the lock: losing it shows as the migration's own failure.
  });
  await queue.connect();
  try {
    await queue.query('SELECT pg_advisory_lock($1)', [MIGRATION_QUEUE_LOCK]);
    return await runMigrations(databaseUrl, log);
  } finally {
    // Closing the session releases the lock.
    await queue.end().catch(() => {});
  }
}

async function runMigrations(databaseUrl: string, log: (message: string) => void): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    checkOrder: true,
    singleTransaction: true,
    log,
    logger: { debug: () => {}, info: log, warn: log, error: log },
  });
  return applied.map((migration) => migration.name);
}
