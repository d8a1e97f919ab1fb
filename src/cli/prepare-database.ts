import { ensureDatabase } from '../db/ensure-database.ts';
import { migrate } from '../db/migrate.ts';
import { redactCredentials } from '../redact-credentials.ts';
import { CliError } from './cli-error.ts';

/** Creates the database if missing and applies pending migrations; a failure says where and why. */
export async function prepareDatabase(databaseUrl: string, log: (message: string) => void): Promise<void> {
  try {
    if (await ensureDatabase(databaseUrl)) log(`created database ${new URL(databaseUrl).pathname.slice(1)}`);
    const applied = await migrate(databaseUrl, () => {});
    if (applied.length > 0) log(`applied migrations: ${applied.join(', ')}`);
  } catch (error) {
    const reason = redactCredentials(error instanceof Error ? error.message : String(error));
    throw new CliError(
      `cannot prepare PostgreSQL at ${redactCredentials(databaseUrl)} (DATABASE_URL): ${reason}`,
      {
        cause: error,
      },
    );
  }
}
