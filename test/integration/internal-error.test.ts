import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config.ts';
import { buildApp } from '../../src/http/app.ts';
import { loggerOptions } from '../../src/logger.ts';
import { createServices } from '../../src/services.ts';
import { createBusEnvironment, createTestDatabase } from '../helper.ts';

const lines: string[] = [];
const sink = new Writable({
  write(chunk, _encoding, done) {
    lines.push(...String(chunk).split('\n').filter(Boolean));
    done();
  },
});

const databaseUrl = await createTestDatabase({ after });
const bus = await createBusEnvironment();
const config = loadConfig({ DATABASE_URL: databaseUrl, ...bus.env });
const services = createServices(config);
const app = await buildApp(services, { logger: pino(loggerOptions('info'), sink) });
after(async () => {
  await app.close();
  await services.close();
  await bus.remove();
});

test('a 5xx returns no detail, and its stack is logged without the API key', async () => {
  const { key } = await services.apiKeys.create('t', 'reader');
  // A broken schema stands in for any unexpected failure below the HTTP layer.
  await services.pool.query('ALTER TABLE models RENAME TO models_gone');
  const response = await app.inject({ url: '/models/some-model', headers: { 'x-api-key': key } });
  assert.equal(response.statusCode, 500);
  assert.deepEqual(response.json(), { error: { code: 'INTERNAL_ERROR', message: 'internal error' } });
  assert.doesNotMatch(response.body, /models_gone|relation|at /);
  const logged = lines.map((line) => JSON.parse(line)).find((entry) => entry.msg === 'request failed');
  assert.ok(logged, lines.join('\n'));
  assert.equal(logged.level, 50);
  assert.match(logged.err.message, /relation "models" does not exist/);
  assert.match(logged.err.stack, /\n\s+at /);
  assert.ok(!lines.some((line) => line.includes(key)));
});
