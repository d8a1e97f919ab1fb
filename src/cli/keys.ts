/** `telemetry-bus keys create|list|revoke`: manage API keys directly in the database. */
import { ApiKeyStore } from '../auth/api-key-store.ts';
import { isRole, ROLES } from '../auth/roles.ts';
import type { Config } from '../config.ts';
import { createPool } from '../db/create-pool.ts';
import { CliError } from './cli-error.ts';
import { prepareDatabase } from './prepare-database.ts';

async function withStore<T>(config: Config, use: (store: ApiKeyStore) => Promise<T>): Promise<T> {
  await prepareDatabase(config.databaseUrl, (message) => process.stderr.write(`${message}\n`));
  const pool = createPool({ databaseUrl: config.databaseUrl, max: 1 });
  try {
    return await use(new ApiKeyStore(pool, { cacheTtlMs: 0 }));
  } finally {
    await pool.end();
  }
}

export async function createKey(config: Config, options: { role: string; name: string }): Promise<void> {
  if (!isRole(options.role)) {
    throw new CliError(`--role must be one of ${ROLES.join(', ')}, got '${options.role}'`, { exitCode: 2 });
  }
  const name = options.name.trim();
  if (name.length < 1 || name.length > 100)
    throw new CliError('--name must be 1–100 characters', { exitCode: 2 });
  const role = options.role;
  const { key, info } = await withStore(config, (store) => store.create(name, role));
  process.stderr.write(`created ${info.role} key '${info.name}' (id ${info.id}); it is shown only once:\n`);
  process.stdout.write(`${key}\n`);
}

export async function listKeys(config: Config, options: { json?: boolean }): Promise<void> {
  const keys = await withStore(config, (store) => store.list());
  if (options.json) {
    process.stdout.write(`${JSON.stringify(keys, null, 2)}\n`);
    return;
  }
  const rows = keys.map((key) => [key.id, key.role, key.name, key.created_at, key.revoked_at ?? 'active']);
  for (const row of [['id', 'role', 'name', 'created_at', 'state'], ...rows]) {
    process.stdout.write(`${row.join('\t')}\n`);
  }
}

export async function revokeKey(config: Config, id: string): Promise<void> {
  if (!/^[0-9a-f-]{36}$/i.test(id))
    throw new CliError(`'${id}' is not a key id (see keys list)`, { exitCode: 2 });
  const revoked = await withStore(config, (store) => store.revoke(id));
  if (!revoked) throw new CliError(`no active key has id ${id}`);
  process.stderr.write(`revoked key ${id}\n`);
}
