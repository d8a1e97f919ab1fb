import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { build } from '../helper.ts';

const { app, keys } = await build({ after }, { RATE_LIMIT_PER_MINUTE: '3' });

test('the fourth request of a key within a minute gets 429 with retry-after; other keys are unaffected', async () => {
  const get = (key: string) => app.inject({ url: '/models', headers: { 'x-api-key': key } });
  for (let i = 0; i < 3; i++) assert.equal((await get(keys.reader)).statusCode, 200);
  const limited = await get(keys.reader);
  assert.equal(limited.statusCode, 429);
  assert.equal(limited.json().error.code, 'RATE_LIMITED');
  assert.match(limited.json().error.message, /rate limit of 3 requests per minute/);
  assert.ok(Number(limited.headers['retry-after']) > 0);
  assert.equal((await get(keys.writer)).statusCode, 200);
});

test('health probes are not rate limited', async () => {
  for (let i = 0; i < 5; i++) assert.equal((await app.inject('/livez')).statusCode, 200);
});
