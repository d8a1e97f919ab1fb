/**
 * No password in any output (issue 16). Every configuration variable is fed a URL with a password — one
 * URL and a list of them, valid and invalid — and everything the processes print (stdout and stderr of
 * the CLI, the API and a worker) and everything GET /health answers is searched for every password.
 * The valid lists reach a real broker and database (the broker with a user of the test's own, whose
 * password is as searchable as the others), with a dead node first so that connection errors are said
 * too; a second API and the CLI get only dead nodes, so that every failure message is said.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CONFIG_VARIABLES } from '../../src/config.ts';
import { createTestDatabase } from '../helper.ts';
import { startApiProcess } from '../support/api-process.ts';
import { spawnCli } from '../support/cli-process.ts';
import { freePort } from '../support/free-port.ts';
import { createTestUser, createTestVhost } from '../support/rabbitmq-vhost.ts';
import { waitUntil } from '../support/wait-until.ts';

const secrets = new Set<string>();
function secret(): string {
  const value = `Pw${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  secrets.add(value);
  return value;
}
function leaked(text: string): string[] {
  return [...secrets].filter((value) => text.includes(value));
}

/** Runs the CLI to its end; resolves with its exit code and everything it printed. */
async function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const cli = spawnCli(args, env);
  const [code] = (await once(cli.child, 'exit')) as [number | null];
  return { code, output: cli.output() };
}

/** A URL of the scheme the variable wants (an AMQP one for those that want no URL), with a password. */
function urlFor(name: string): string {
  if (name === 'DATABASE_URL') return `postgres://user:${secret()}@127.0.0.1:1/db`;
  if (name === 'RABBITMQ_MANAGEMENT_URL') return `http://user:${secret()}@127.0.0.1:1`;
  return `amqp://user:${secret()}@127.0.0.1:1/`;
}

const variables = Object.keys(CONFIG_VARIABLES);
/** The variables that take a list of URLs; DATABASE_URL takes one; DATA_DIR takes any path. */
const LISTS = new Set(['RABBITMQ_URL', 'RABBITMQ_MANAGEMENT_URL']);
const ANY_TEXT = new Set(['DATA_DIR']);

test('every variable given a URL with a password, one and a list: the configuration errors hide them all', async () => {
  const single = Object.fromEntries(variables.map((name) => [name, urlFor(name)]));
  const list = Object.fromEntries(variables.map((name) => [name, `${urlFor(name)},${urlFor(name)}`]));
  const [one, many] = await Promise.all([
    runCli(['topology', 'show'], single),
    runCli(['topology', 'show'], list),
  ]);
  for (const [form, run, accepted] of [
    ['one URL', one, new Set(['DATABASE_URL', ...LISTS, ...ANY_TEXT])],
    ['a list', many, new Set([...LISTS, ...ANY_TEXT])],
  ] as const) {
    assert.equal(run.code, 2, `${form}: a configuration error\n${run.output}`);
    for (const name of variables) {
      assert.equal(
        run.output.includes(`invalid ${name}:`),
        !accepted.has(name),
        `${form}: ${name}\n${run.output}`,
      );
    }
    assert.deepEqual(leaked(run.output), [], `${form}: passwords printed:\n${run.output}`);
  }
});

test('invalid URLs and lists of the URL variables: refused without a password', async () => {
  const run = await runCli(['topology', 'show'], {
    DATABASE_URL: `mysql://user:${secret()}@127.0.0.1/db`,
    RABBITMQ_URL: `amqp://user:${secret()}@127.0.0.1:1/,http://user:${secret()}@127.0.0.1:2/`,
    RABBITMQ_MANAGEMENT_URL: `http://user:${secret()}@127.0.0.1:1,ftp://user:${secret()}@127.0.0.1:2`,
    DATA_DIR: `amqp://user:${secret()}@[::1`,
  });
  assert.equal(run.code, 2, run.output);
  for (const name of ['DATABASE_URL', 'RABBITMQ_URL', 'RABBITMQ_MANAGEMENT_URL']) {
    assert.match(run.output, new RegExp(`invalid ${name}:`));
  }
  assert.deepEqual(leaked(run.output), [], run.output);
});

test('valid lists with a dead node first: the API, a worker, /health and the CLI print no password', async (t) => {
  const vhost = await createTestVhost(t);
  const user = await createTestUser(t, vhost);
  secrets.add(user.password);
  const databaseUrl = new URL(await createTestDatabase(t));
  // PostgreSQL here trusts local connections: the password is sent nowhere, but it is in the URL.
  databaseUrl.password = secret();
  const broker = new URL(vhost.url);
  const live = `amqp://${user.username}:${user.password}@127.0.0.1:${broker.port || 5672}${broker.pathname}`;
  const dataDir = mkdtempSync(join(tmpdir(), 'tb-redaction-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = {
    DATABASE_URL: databaseUrl.toString(),
    RABBITMQ_URL: `amqp://user:${secret()}@127.0.0.1:${await freePort()}${broker.pathname},${live}`,
    RABBITMQ_MANAGEMENT_URL: `http://user:${secret()}@127.0.0.1:${await freePort()},http://${user.username}:${user.password}@127.0.0.1:${new URL(vhost.managementUrl).port}`,
    DATA_DIR: join(dataDir, 'api'),
    CONSUMERS: 'none',
  };
  const api = await startApiProcess(env);
  t.after(() => api.child.kill('SIGKILL'));
  const worker = spawnCli(['worker'], { ...env, DATA_DIR: join(dataDir, 'worker'), CONSUMERS: 'all' });
  t.after(() => worker.child.kill('SIGKILL'));
  const key = api.adminKey ?? assert.fail(`no admin key printed:\n${api.output()}`);
  const created = await fetch(`${api.url}/models`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({
      model_id: `redaction/${randomUUID()}`,
      vendor_id: 'OpenAI',
      capability_tier: 'Tier_1',
      context_window: 1000,
      cost_in_per_mil: 1,
      cost_out_per_mil: 2,
      function_call_support: false,
    }),
  });
  assert.equal(created.status, 201);
  let health = '';
  await waitUntil(
    'the publisher connected to the live node, and queue statistics from the live management API',
    async () => {
      health = await (await fetch(`${api.url}/health`)).text();
      const parsed = JSON.parse(health) as {
        publisher: { state: string };
        queues: { source: string; node: string };
      };
      return parsed.publisher.state === 'connected' && parsed.queues.source === 'management';
    },
    30_000,
    { intervalMs: 200 },
  );
  await waitUntil(
    'the worker consuming',
    () => worker.output().includes('consumers connected to RabbitMQ'),
    30_000,
  );
  const show = await runCli(['topology', 'show'], env);
  const apply = await runCli(['topology', 'apply'], env);
  assert.equal(apply.code, 0, apply.output);
  for (const [what, text] of [
    ['/health', health],
    ['the API', api.output()],
    ['the worker', worker.output()],
    ['topology show', show.output],
    ['topology apply', apply.output],
  ] as const) {
    assert.deepEqual(leaked(text), [], `${what} printed a password:\n${text}`);
  }
  assert.match(show.output, /leader /, 'topology show read the leaders through the list');
});

test('every node dead: the failures say where, never with a password', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tb-redaction-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  const databaseUrl = new URL(await createTestDatabase(t));
  databaseUrl.password = secret();
  const deadAmqp = [await freePort(), await freePort()].map(
    (port) => `amqp://user:${secret()}@127.0.0.1:${port}/`,
  );
  const deadHttp = [await freePort(), await freePort()].map(
    (port) => `http://user:${secret()}@127.0.0.1:${port}`,
  );
  const env = {
    DATABASE_URL: databaseUrl.toString(),
    RABBITMQ_URL: deadAmqp.join(','),
    RABBITMQ_MANAGEMENT_URL: deadHttp.join(','),
    DATA_DIR: join(dataDir, 'api'),
    CONSUMERS: 'none',
  };
  const api = await startApiProcess(env);
  t.after(() => api.child.kill('SIGKILL'));
  let health = '';
  await waitUntil(
    'the publisher to have failed and the queue statistics to say why',
    async () => {
      health = await (await fetch(`${api.url}/health`)).text();
      const parsed = JSON.parse(health) as {
        publisher: { last_error: string | null };
        queues: { error: string | null };
      };
      return parsed.publisher.last_error !== null && parsed.queues.error !== null;
    },
    30_000,
    { intervalMs: 200 },
  );
  const badDatabase = new URL(databaseUrl);
  badDatabase.port = String(await freePort());
  const [apply, show, replay, migrate] = await Promise.all([
    runCli(['topology', 'apply'], env),
    runCli(['topology', 'show'], env),
    runCli(['dlq', 'replay', '--dry-run'], env),
    runCli(['migrate'], { ...env, DATABASE_URL: badDatabase.toString() }),
  ]);
  assert.equal(apply.code, 1, apply.output);
  assert.match(apply.output, /no RabbitMQ node answered: 127\.0\.0\.1:\d+ \(.*\); 127\.0\.0\.1:\d+/);
  assert.notEqual(migrate.code, 0, migrate.output);
  for (const [what, text] of [
    ['/health', health],
    ['the API', api.output()],
    ['topology apply', apply.output],
    ['topology show', show.output],
    ['dlq replay', replay.output],
    ['migrate', migrate.output],
  ] as const) {
    assert.deepEqual(leaked(text), [], `${what} printed a password:\n${text}`);
  }
});
