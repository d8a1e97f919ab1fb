import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { redactCredentials } from '../../src/redact-credentials.ts';

test('defaults work on this machine', () => {
  const config = loadConfig({});
  assert.equal(config.databaseUrl, 'postgres://root@127.0.0.1:5432/telemetry_bus');
  assert.deepEqual(config.rabbitmqUrls, ['amqp://guest:guest@127.0.0.1:5672']);
  assert.deepEqual(config.rabbitmqManagementUrls, ['http://guest:guest@127.0.0.1:15672']);
  assert.equal(config.quorumInitialGroupSize, null);
  assert.equal(config.queueLeaderLocator, 'balanced');
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
  assert.equal(redactCredentials('postgres://u:pw@h/db'), 'postgres://u:***@h/db');
  assert.equal(redactCredentials('postgres://u@h/db'), 'postgres://u@h/db');
});

test('RABBITMQ_URL and RABBITMQ_MANAGEMENT_URL take one URL per node', () => {
  const config = loadConfig({
    RABBITMQ_URL: 'amqp://u:p@n1:5672/v, amqp://u:p@n2:5672/v,amqp://u:p@n3:5672/v',
    RABBITMQ_MANAGEMENT_URL: 'http://u:p@n1:15672,http://u:p@n2:15672',
  });
  assert.deepEqual(config.rabbitmqUrls, [
    'amqp://u:p@n1:5672/v',
    'amqp://u:p@n2:5672/v',
    'amqp://u:p@n3:5672/v',
  ]);
  assert.deepEqual(config.rabbitmqManagementUrls, ['http://u:p@n1:15672', 'http://u:p@n2:15672']);
  assert.deepEqual(loadConfig({ RABBITMQ_MANAGEMENT_URL: 'off' }).rabbitmqManagementUrls, []);
});

test('placement: the initial group size and the leader locator', () => {
  const config = loadConfig({
    QUORUM_INITIAL_GROUP_SIZE: '3',
    QUEUE_LEADER_LOCATOR: 'broker',
  });
  assert.equal(config.quorumInitialGroupSize, 3);
  assert.equal(config.queueLeaderLocator, null);
  assert.equal(loadConfig({ QUEUE_LEADER_LOCATOR: 'client-local' }).queueLeaderLocator, 'client-local');
  assert.throws(() => loadConfig({ QUORUM_INITIAL_GROUP_SIZE: '0' }), /broker, or an integer 1–99/);
  assert.throws(() => loadConfig({ QUEUE_LEADER_LOCATOR: 'random' }), /balanced, client-local or broker/);
});

const badLists: [string, string, string[]][] = [
  ['RABBITMQ_URL', 'amqp://a:Secret1@n1,http://b:Secret2@n2', ['Secret1', 'Secret2']],
  ['RABBITMQ_URL', 'amqp://a:Secret1@n1,amqp://a:Secret1@n1', ['Secret1']],
  ['RABBITMQ_URL', 'amqp://a:Secret1@n1/x,amqp://b:Secret2@n2/y', ['Secret1', 'Secret2']],
  ['RABBITMQ_URL', 'amqp://a:Secret1@n1,', ['Secret1']],
  ['RABBITMQ_URL', 'amqp://a:Se@cr,et1@n1 ,b:Secret2@n2', ['Se@cr,et1', 'Secret2']],
  ['RABBITMQ_MANAGEMENT_URL', 'http://a:Secret1@n1,amqp://b:Secret2@n2', ['Secret1', 'Secret2']],
  ['DATABASE_URL', 'postgres://a:Secret1@n1/db,postgres://b:Secret2@n2/db', ['Secret1', 'Secret2']],
  ['PORT', 'amqp://a:Secret1@n1,amqp://b:Secret2@n2', ['Secret1', 'Secret2']],
];
for (const [name, value, secrets] of badLists) {
  test(`${name}=${value.replace(/:[^@,]*@/g, ':…@')} is refused with no password in the message`, () => {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (error: Error) => {
        assert.ok(error instanceof ConfigError, String(error));
        for (const secret of secrets) assert.ok(!error.message.includes(secret), error.message);
        return true;
      },
    );
  });
}

const redactions: [string, string][] = [
  ['amqp://u:pw@h:1/v', 'amqp://u:***@h:1/v'],
  ['amqp://u:p@ss@h', 'amqp://u:***@h'],
  ['amqp://a:x@h1,amqp://b:y@h2', 'amqp://a:***@h1,amqp://b:***@h2'],
  ['amqp://u:a,b@h,amqp://c:d@h2', 'amqp://u:***@h,amqp://c:***@h2'],
  ['amqp://u:p/w@h', 'amqp://u:***@h'],
  ['amqp://:pw@h', 'amqp://:***@h'],
  ['amqp://user@h', 'amqp://user@h'],
  ['http://h:15672/api', 'http://h:15672/api'],
  ['got "amqp://a:S1@h, http://b:S2@x" then', 'got "amqp://a:***@h, http://b:***@x" then'],
  ['u:secret@host,amqp://v:s2@h2', 'u:***@host,amqp://v:***@h2'],
  ['12:30 nothing secret', '12:30 nothing secret'],
];
for (const [text, redacted] of redactions) {
  test(`redactCredentials(${JSON.stringify(text)})`, () => {
    assert.equal(redactCredentials(text), redacted);
  });
}

test('every bad variable is reported at once, one line each, in the reference’s order', () => {
  assert.throws(
    () => loadConfig({ DB_POOL_MAX: '0', PORT: 'x', LOG_LEVEL: 'loud' }),
    (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.variable, 'PORT');
      assert.deepEqual(
        error.message.split('\n').map((line) => line.split(':')[0]),
        ['invalid PORT', 'invalid LOG_LEVEL', 'invalid DB_POOL_MAX'],
      );
      return true;
    },
  );
});
