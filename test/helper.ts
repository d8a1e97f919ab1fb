/**
 * Test helper: every test file gets its own PostgreSQL database, created, migrated and dropped here, so
 * files run in parallel against the real server without seeing each other.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import type { Role } from '../src/auth/roles.ts';
import { type Config, loadConfig } from '../src/config.ts';
import { ensureDatabase } from '../src/db/ensure-database.ts';
import { migrate } from '../src/db/migrate.ts';
import { buildApp } from '../src/http/app.ts';
import { createServices, type Services } from '../src/services.ts';

/** The server tests create their databases on; override with TEST_DATABASE_SERVER. */
export const TEST_DATABASE_SERVER = process.env.TEST_DATABASE_SERVER ?? 'postgres://root@127.0.0.1:5432';

/** Anything with node:test's `after` hook registration: a TestContext, or `{ after }` at file level. */
export interface Teardown {
  after(fn: () => unknown): void;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomUUID().replaceAll('-', '')}`;
}

/** Creates an empty database (not migrated) whose drop is registered on `teardown`. */
export async function createEmptyDatabase(teardown: Teardown): Promise<string> {
  const name = uniqueName('tb_test');
  const url = `${TEST_DATABASE_SERVER}/${name}`;
  await ensureDatabase(url);
  teardown.after(() => dropDatabase(name));
  return url;
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: `${TEST_DATABASE_SERVER}/postgres` });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** A migrated database of its own. */
export async function createTestDatabase(teardown: Teardown): Promise<string> {
  const url = await createEmptyDatabase(teardown);
  await migrate(url);
  return url;
}

export interface TestApp {
  app: FastifyInstance;
  services: Services;
  databaseUrl: string;
  /** One API key per role, created for this app. */
  keys: Record<Role, string>;
  config: Config;
}

/**
 * Builds the real application on a fresh database; closes and drops it all after the tests. `env`
 * overrides configuration variables exactly as the environment would.
 */
export async function build(teardown: Teardown, env: Record<string, string> = {}): Promise<TestApp> {
  const databaseUrl = await createTestDatabase(teardown);
  const config = loadConfig({ LOG_LEVEL: 'silent', ...env, DATABASE_URL: databaseUrl });
  const services = createServices(config);
  const app = await buildApp(services, { rateLimitPerMinute: config.rateLimitPerMinute });
  // The database is dropped WITH (FORCE), so whichever teardown runs first, nothing is left behind.
  teardown.after(async () => {
    await app.close();
    await services.close();
  });
  const keys = {} as Record<Role, string>;
  for (const role of ['reader', 'writer', 'admin'] as const) {
    keys[role] = (await services.apiKeys.create(`test-${role}`, role)).key;
  }
  await app.ready();
  return { app, services, databaseUrl, keys, config };
}

/** A valid model body; override any field. */
export function modelBody(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_id: `test/${randomUUID()}`,
    vendor_id: 'OpenAI',
    capability_tier: 'Tier_1',
    context_window: 128000,
    cost_in_per_mil: 10,
    cost_out_per_mil: 30,
    function_call_support: true,
    ...overrides,
  };
}
