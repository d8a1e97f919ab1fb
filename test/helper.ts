/**
 * Test helper: every test file gets its own PostgreSQL database, created, migrated and dropped here, so
 * files run in parallel against the real server without seeing each other.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import type { Role } from '../src/auth/roles.ts';
import { type Config, loadConfig, serverLimitsOf } from '../src/config.ts';
import { ensureDatabase } from '../src/db/ensure-database.ts';
import { migrate } from '../src/db/migrate.ts';
import { buildApp } from '../src/http/app.ts';
import { createServices, type Services } from '../src/services.ts';
import { createTestVhost, type TestBroker, type TestVhost } from './support/rabbitmq-vhost.ts';

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
  /** The RabbitMQ vhost this app publishes to. */
  vhost: TestVhost;
}

export interface BusEnvironment {
  /** RABBITMQ_URL (a vhost of its own) and DATA_DIR (a temporary directory) for one system under test. */
  env: { RABBITMQ_URL: string; DATA_DIR: string };
  vhost: TestVhost;
  /** Deletes the vhost and the directory; call it after the system is closed. */
  remove(): Promise<void>;
}

/**
 * A RabbitMQ vhost and a data directory of their own, so the real topology names can be used and tests
 * running side by side never see each other's events. The caller removes them once it has closed what
 * uses them (a vhost deleted under a running publisher would only make it reconnect in a loop).
 */
export async function createBusEnvironment(broker?: TestBroker): Promise<BusEnvironment> {
  const removals: Array<() => unknown> = [];
  const vhost = await createTestVhost({ after: (fn) => removals.push(fn) }, broker);
  const dataDir = mkdtempSync(join(tmpdir(), 'tb-test-'));
  return {
    env: { RABBITMQ_URL: vhost.url, DATA_DIR: dataDir },
    vhost,
    async remove() {
      for (const removal of removals) await removal();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Builds the real application on a fresh database; closes and drops it all after the tests. `env`
 * overrides configuration variables exactly as the environment would.
 */
export interface BuildOptions {
  /** Rewrites the vhost's AMQP URL the app gets, e.g. to go through a TCP proxy. */
  rabbitmqUrl?: (url: string) => string;
}

export async function build(
  teardown: Teardown,
  env: Record<string, string> = {},
  options: BuildOptions = {},
): Promise<TestApp> {
  const databaseUrl = await createTestDatabase(teardown);
  const bus = await createBusEnvironment();
  const rabbitmqUrl = options.rabbitmqUrl?.(bus.env.RABBITMQ_URL) ?? bus.env.RABBITMQ_URL;
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    ...bus.env,
    RABBITMQ_URL: rabbitmqUrl,
    ...env,
    DATABASE_URL: databaseUrl,
  });
  const services = createServices(config);
  const app = await buildApp(services, {
    rateLimitPerMinute: config.rateLimitPerMinute,
    // Only when a test asks for it: every test app's keyless requests come from 127.0.0.1, and many
    // tests send more than the default's 600 in a minute.
    rateLimitKeylessPerMinute:
      env.RATE_LIMIT_KEYLESS_PER_MINUTE === undefined ? 0 : config.rateLimitKeylessPerMinute,
    eventIpAddress: config.eventIpAddress,
    eventIpHashKey: config.eventIpHashKey,
    metricsScrapeToken: config.metricsScrapeToken,
    metricsRollupRetentionDays: config.metricsRollupRetentionDays,
    serverLimits: serverLimitsOf(config),
  });
  // The database is dropped WITH (FORCE), so whichever teardown runs first, nothing is left behind.
  teardown.after(async () => {
    await app.close();
    await services.close();
    await bus.remove();
  });
  const keys = {} as Record<Role, string>;
  for (const role of ['reader', 'writer', 'admin'] as const) {
    keys[role] = (await services.apiKeys.create(`test-${role}`, role)).key;
  }
  await app.ready();
  return { app, services, databaseUrl, keys, config, vhost: bus.vhost };
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
