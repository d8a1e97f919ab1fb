import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import { buildApp } from '../../src/http/app.ts';
import { createServices } from '../../src/services.ts';
import { createBusEnvironment } from '../helper.ts';

const bus = await createBusEnvironment();
// Nothing listens on port 1: this is PostgreSQL being unreachable, seen from the API.
const config = loadConfig({
  DATABASE_URL: 'postgres://root@127.0.0.1:1/telemetry_bus',
  LOG_LEVEL: 'silent',
  ...bus.env,
});
const services = createServices(config);
const app = await buildApp(services);
after(async () => {
  await app.close();
  await services.close();
  await bus.remove();
});

test('/livez stays up while /readyz reports PostgreSQL down with 503', async () => {
  assert.deepEqual((await app.inject('/livez')).json(), { status: 'ok' });
  const ready = await app.inject('/readyz');
  assert.equal(ready.statusCode, 503);
  const body = ready.json();
  assert.equal(body.status, 'not_ready');
  assert.equal(body.checks.postgres, 'down');
  assert.ok(body.notes.includes('PostgreSQL is unreachable: registry requests fail with 503'));
});

test('a request that needs the database gets 503 SERVICE_UNAVAILABLE with retry-after, no details', async () => {
  const response = await app.inject({ url: '/models', headers: { 'x-api-key': `tb_${'a'.repeat(43)}` } });
  assert.equal(response.statusCode, 503);
  assert.equal(response.headers['retry-after'], '5');
  assert.deepEqual(response.json(), {
    error: { code: 'SERVICE_UNAVAILABLE', message: 'PostgreSQL is unavailable' },
  });
});

test('the Prometheus exposition still answers, without the dead-letter count (no made-up 0)', async () => {
  const started = Date.now();
  const response = await app.inject('/metrics/prometheus');
  assert.equal(response.statusCode, 200);
  // The count is given 2 s, then the scrape goes on without it.
  assert.ok(Date.now() - started < 5000, `the scrape took ${Date.now() - started} ms`);
  assert.match(response.body, /^# TYPE telemetry_dead_letters gauge$/m);
  assert.doesNotMatch(response.body, /^telemetry_dead_letters\{/m);
  assert.match(response.body, /^process_cpu_seconds_total /m);
});
