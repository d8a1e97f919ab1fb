import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONFIG_VARIABLES, loadConfig, redactUrl } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';

test('defaults work on this machine', () => {
  const config = loadConfig({});
  assert.equal(config.databaseUrl, 'postgres://root@127.0.0.1:5432/telemetry_bus');
  assert.equal(config.rabbitmqUrl, 'amqp://guest:guest@127.0.0.1:5672');
  assert.equal(config.port, 8080);
  assert.equal(config.logLevel, 'info');
  assert.equal(config.bootstrapAdminKey, true);
});

test('every variable parses its own default', () => {
  for (const [name, spec] of Object.entries(CONFIG_VARIABLES)) {
    assert.notEqual(spec.parse(spec.default as never), undefined, name);
  }
});

test('values are parsed into their types', () => {
  const config = loadConfig({ PORT: '0', CACHE_TTL_MS: '0', BOOTSTRAP_ADMIN_KEY: 'no', LOG_LEVEL: 'DEBUG' });
  assert.equal(config.port, 0);
  assert.equal(config.cacheTtlMs, 0);
  assert.equal(config.bootstrapAdminKey, false);
  assert.equal(config.logLevel, 'debug');
});

const bad: [string, string, RegExp][] = [
  ['PORT', '65536', /expected an integer 0–65535/],
  ['PORT', '80a', /expected an integer/],
  ['PORT', '8.5', /expected an integer/],
  ['DB_POOL_MAX', '0', /1–1000/],
  ['DATABASE_URL', 'postgres://host', /postgres:\/\/user/],
  ['DATABASE_URL', 'not a url', /postgres:\/\/user/],
  ['RABBITMQ_URL', 'http://guest:guest@host', /amqp\[s\]/],
  ['LOG_LEVEL', 'verbose', /one of fatal/],
  ['TRUST_PROXY', 'maybe', /true or false/],
];
for (const [name, value, form] of bad) {
  test(`${name}=${value} is refused naming the variable and the form`, () => {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.variable, name);
        assert.match(error.message, new RegExp(`^invalid ${name}: `));
        assert.match(error.message, form);
        return true;
      },
    );
  });
}

test('a bad URL never echoes its password', () => {
  assert.throws(
    () => loadConfig({ RABBITMQ_URL: 'http://user:s3cret@host' }),
    (error: Error) => !error.message.includes('s3cret') && error.message.includes('***'),
  );
  assert.equal(redactUrl('postgres://u:pw@h/db'), 'postgres://u:***@h/db');
  assert.equal(redactUrl('postgres://u@h/db'), 'postgres://u@h/db');
});
