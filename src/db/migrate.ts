import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';

/** Plain-SQL migrations, shipped with the code. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations', import.meta.url));

/**
 * Applies pending migrations (plain `.sql` files) under node-pg-migrate's advisory lock, so several
 * instances starting together migrate once. Returns the names of the migrations applied.
 */
export async function migrate(
  databaseUrl: string,
  log: (message: string) => void = () => {},
): Promise<string[]> {
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
