import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import { createPool } from '../../src/db/create-pool.ts';
import {
  type BusEnvironment,
  createBusEnvironment,
  dropDatabase,
  TEST_DATABASE_SERVER,
  uniqueName,
} from '../helper.ts';
import { readQueues } from '../support/queue-reader.ts';

/** The bootstrap key is printed alone on an indented line. */
const KEY_LINE = /^ {4}(tb_[A-Za-z0-9_-]{43})$/m;
const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function cli(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function databaseExists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: `${TEST_DATABASE_SERVER}/postgres` });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return rowCount === 1;
  } finally {
    await client.end();
  }
}

describe('start-up failures', () => {
  test('a DATABASE_URL that is not a postgres URL exits 2 naming the variable and the form', async () => {
    const run = cli(['start'], { DATABASE_URL: 'mysql://root:secret@localhost/db' });
    assert.equal(await run.exit, 2);
    assert.match(run.stderr(), /configuration error: invalid DATABASE_URL: expected a URL postgres:\/\//);
    assert.doesNotMatch(run.stderr() + run.stdout(), /secret/);
  });

  test('an unreachable PostgreSQL exits non-zero with a clear message and no password', async () => {
    const run = cli(['start'], { DATABASE_URL: 'postgres://root:secret@127.0.0.1:1/telemetry_bus' });
    assert.equal(await run.exit, 1);
    assert.match(
      run.stderr(),
      /cannot prepare PostgreSQL at postgres:\/\/root:\*\*\*@127\.0\.0\.1:1\/telemetry_bus \(DATABASE_URL\): .*ECONNREFUSED/,
    );
    assert.doesNotMatch(run.stderr() + run.stdout(), /secret|\n\s+at /);
  });

  test('a bad PORT or LOG_LEVEL exits 2 naming it', async () => {
    const port = cli(['start'], { PORT: '99999' });
    assert.equal(await port.exit, 2);
    assert.match(port.stderr(), /invalid PORT: expected an integer 0–65535/);
    const level = cli(['migrate'], { LOG_LEVEL: 'loud' });
    assert.equal(await level.exit, 2);
    assert.match(level.stderr(), /invalid LOG_LEVEL: expected one of fatal, error/);
  });
});

describe('first start on a machine with no database', () => {
  const name = uniqueName('tb_test_start');
  const databaseUrl = `${TEST_DATABASE_SERVER}/${name}`;
  let bus: BusEnvironment;
  before(async () => {
    bus = await createBusEnvironment();
  });
  after(async () => {
    await dropDatabase(name);
    await bus.remove();
  });

  test('creates the database, migrates, prints an admin key once, serves, and stops on SIGTERM', async () => {
    assert.equal(await databaseExists(name), false);
    // No consumers: this test reads the queues itself, to see what the API published.
    const first = cli(['start'], { DATABASE_URL: databaseUrl, PORT: '0', CONSUMERS: 'none', ...bus.env });
    const url = await waitFor('the listening line', () => first.stdout().match(/"url":"(http:[^"]+)"/)?.[1]);
    const key = await waitFor('the admin key', () => first.stdout().match(KEY_LINE)?.[1]);
    assert.equal(await databaseExists(name), true);
    assert.match(first.stdout(), new RegExp(`curl -s -H 'x-api-key: ${key}' ${url}/models`));
    // The key appears twice (alone and in the curl example), in no log line.
    assert.equal(first.stdout().split(key).length - 1, 2);
    assert.ok(
      !first
        .stdout()
        .split('\n')
        .some((line) => line.startsWith('{') && line.includes(key)),
    );

    assert.equal((await fetch(`${url}/readyz`)).status, 200);
    const created = await fetch(`${url}/models`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({
        model_id: 'startup/model',
        vendor_id: 'Acme',
        capability_tier: 'Tier_2',
        context_window: 8192,
        cost_in_per_mil: 1,
        cost_out_per_mil: 2,
        function_call_support: false,
      }),
    });
    assert.equal(created.status, 201);

    first.child.kill('SIGTERM');
    assert.equal(await first.exit, 0);
    assert.match(first.stdout(), /shutting down/);

    // Keys exist now: a second start prints none, and the data survived.
    const second = cli(['start'], { DATABASE_URL: databaseUrl, PORT: '0', CONSUMERS: 'none', ...bus.env });
    const url2 = await waitFor(
      'the listening line',
      () => second.stdout().match(/"url":"(http:[^"]+)"/)?.[1],
    );
    const model = await fetch(`${url2}/models/startup%2Fmodel`, { headers: { 'x-api-key': key } });
    assert.equal(model.status, 200);
    assert.equal(((await model.json()) as { vendor_id: string }).vendor_id, 'Acme');
    second.child.kill('SIGINT');
    assert.equal(await second.exit, 0);
    assert.doesNotMatch(second.stdout(), KEY_LINE);
    assert.doesNotMatch(second.stdout(), /No API keys existed/);

    // Every request of both runs reached RabbitMQ (readyz, the registration, the read), sent on SIGTERM.
    const reader = await readQueues(bus.env.RABBITMQ_URL, ['audit.trail', 'metrics.updates']);
    try {
      const messages = await reader.waitFor({ 'audit.trail': 2, 'metrics.updates': 3 });
      const audit = reader.messages('audit.trail').map((message) => message.properties.type);
      assert.deepEqual(audit, ['model.registered', 'model.queried']);
      assert.ok(messages.every((message) => message.properties.appId === 'telemetry-bus'));
    } finally {
      await reader.close();
    }
  });

  test('keys create prints a key once, which then authenticates with its role; list never shows it', async () => {
    const created = cli(['keys', 'create', '--role', 'reader', '--name', 'ci'], {
      DATABASE_URL: databaseUrl,
    });
    assert.equal(await created.exit, 0);
    const key = created.stdout().trim();
    assert.match(key, /^tb_[A-Za-z0-9_-]{43}$/);
    assert.match(created.stderr(), /created reader key 'ci'/);
    const listed = cli(['keys', 'list', '--json'], { DATABASE_URL: databaseUrl });
    assert.equal(await listed.exit, 0);
    const keys = JSON.parse(listed.stdout()) as { name: string; role: string }[];
    assert.ok(keys.some((entry) => entry.name === 'ci' && entry.role === 'reader'));
    assert.ok(!listed.stdout().includes(key));
    const pool = createPool({ databaseUrl, max: 1 });
    try {
      const principal = await new ApiKeyStore(pool).verify(key);
      assert.equal(principal?.role, 'reader');
      assert.equal(principal?.name, 'ci');
    } finally {
      await pool.end();
    }
    const bad = cli(['keys', 'create', '--role', 'root', '--name', 'x'], { DATABASE_URL: databaseUrl });
    assert.equal(await bad.exit, 2);
    assert.match(bad.stderr(), /--role must be one of reader, writer, admin/);
  });
});
