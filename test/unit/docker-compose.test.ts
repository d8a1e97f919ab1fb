/**
 * docker-compose.yml stays in step with the code: the services exist and are health-checked, the ports are
 * published, and the API's environment is configuration that `loadConfig` accepts and that points at the
 * compose services.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.ts';

const COMPOSE_FILE = new URL('../../docker-compose.yml', import.meta.url);

interface PortMapping {
  published: number;
  target: number;
}

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, unknown> | string[];
  ports?: (string | number | { target: number; published?: number | string })[];
  healthcheck?: { test?: string | string[]; disable?: boolean };
  depends_on?: string[] | Record<string, { condition?: string }>;
}

interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync(COMPOSE_FILE, 'utf8')) as ComposeFile;

function service(name: string): Service {
  const found = compose.services[name];
  assert.ok(found, `docker-compose.yml has no service '${name}'`);
  return found;
}

/** Compose's short (`"8080:8080"`, `"127.0.0.1:8080:8080/tcp"`) and long port syntaxes. */
function portMappings(svc: Service): PortMapping[] {
  return (svc.ports ?? []).map((port) => {
    if (typeof port === 'object') {
      return { target: Number(port.target), published: Number(port.published ?? port.target) };
    }
    const parts = String(port)
      .replace(/\/(tcp|udp)$/, '')
      .split(':');
    const target = Number(parts.at(-1));
    const published = parts.length >= 2 ? Number(parts.at(-2)) : target;
    return { target, published };
  });
}

/** The environment as a string map, from either the mapping or the `KEY=value` list form. */
function environment(svc: Service): Record<string, string> {
  const env = svc.environment ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((entry) => {
        const at = entry.indexOf('=');
        return at < 0 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(env).map(([key, value]) => [key, String(value ?? '')]));
}

const api = service('telemetry-bus');
const apiEnv = environment(api);

describe('docker-compose.yml', () => {
  test('defines the rabbitmq, postgres and telemetry-bus services', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['postgres', 'rabbitmq', 'telemetry-bus']);
    assert.ok(api.build !== undefined, 'telemetry-bus is built from the Dockerfile');
  });

  test('publishes AMQP, the RabbitMQ management UI and the API', () => {
    const published = Object.values(compose.services).flatMap((svc) => portMappings(svc));
    const rabbit = portMappings(service('rabbitmq'));
    assert.ok(
      rabbit.some((port) => port.target === 5672 && port.published === 5672),
      'rabbitmq publishes 5672',
    );
    assert.ok(
      rabbit.some((port) => port.target === 15672 && port.published === 15672),
      'rabbitmq publishes 15672',
    );
    for (const port of portMappings(service('postgres'))) {
      assert.equal(port.target, 5432, 'postgres publishes only its own port');
    }
    assert.ok(
      portMappings(api).some((port) => port.published === 8080),
      'telemetry-bus publishes 8080',
    );
    const hostPorts = published.map((port) => port.published);
    assert.equal(new Set(hostPorts).size, hostPorts.length, 'no host port is published twice');
  });

  test('every service has a healthcheck', () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      const healthcheck = svc.healthcheck;
      assert.ok(
        healthcheck?.test !== undefined && healthcheck.disable !== true,
        `${name} has no healthcheck`,
      );
      const command = Array.isArray(healthcheck.test) ? healthcheck.test.join(' ') : healthcheck.test;
      assert.ok(command.length > 0 && !/^NONE\b/.test(command), `${name} has no healthcheck`);
    }
    const joined = (name: string) => [service(name).healthcheck?.test ?? []].flat().join(' ');
    assert.match(joined('rabbitmq'), /rabbitmq-diagnostics -q ping/);
    assert.match(joined('postgres'), /pg_isready/);
    assert.match(joined('telemetry-bus'), /\/readyz/);
  });

  test('telemetry-bus waits for healthy dependencies', () => {
    const dependsOn = api.depends_on;
    assert.ok(dependsOn !== undefined && !Array.isArray(dependsOn), 'depends_on uses the long form');
    for (const dependency of ['postgres', 'rabbitmq']) {
      assert.equal(
        dependsOn[dependency]?.condition,
        'service_healthy',
        `waits for ${dependency} to be healthy`,
      );
    }
  });

  test('every variable telemetry-bus sets is a configuration variable', () => {
    assert.ok(Object.keys(apiEnv).length > 0);
    for (const name of Object.keys(apiEnv)) {
      assert.ok(Object.hasOwn(CONFIG_VARIABLES, name), `${name} is not in CONFIG_VARIABLES (src/config.ts)`);
    }
    for (const name of ['DATABASE_URL', 'RABBITMQ_URL', 'HOST', 'PORT', 'LOG_LEVEL']) {
      assert.ok(name in apiEnv, `telemetry-bus sets ${name}`);
    }
  });

  test('the environment of telemetry-bus passes loadConfig', () => {
    // loadConfig throws a ConfigError naming the first bad variable.
    const config = loadConfig(apiEnv);
    assert.equal(config.host, '0.0.0.0', 'the API must listen beyond the container loopback');
  });

  test('PORT is the container port that is published, and the healthcheck probes it', () => {
    const port = loadConfig(apiEnv).port;
    const mapping = portMappings(api).find((candidate) => candidate.target === port);
    assert.ok(mapping, `PORT ${port} is not a published container port`);
    assert.equal(mapping.published, port, 'the API is published on the same port it listens on');
    const probe = [api.healthcheck?.test ?? []].flat().join(' ');
    const probed = /https?:\/\/[^/:'"\s]+:(\d+)\/readyz/.exec(probe);
    assert.ok(probed, 'the healthcheck fetches /readyz with an explicit port');
    assert.equal(Number(probed[1]), port, 'the healthcheck probes PORT');
  });

  test('DATABASE_URL and RABBITMQ_URL point at the compose services with their credentials', () => {
    const config = loadConfig(apiEnv);
    const database = new URL(config.databaseUrl);
    const broker = new URL(config.rabbitmqUrl);
    assert.equal(database.hostname, 'postgres');
    assert.equal(broker.hostname, 'rabbitmq');
    for (const url of [database, broker]) {
      assert.ok(Object.hasOwn(compose.services, url.hostname), `${url.hostname} is not a compose service`);
    }
    assert.equal(database.port || '5432', '5432');
    assert.equal(broker.port || '5672', '5672');

    const pgEnv = environment(service('postgres'));
    assert.equal(decodeURIComponent(database.username), pgEnv.POSTGRES_USER);
    assert.equal(decodeURIComponent(database.password), pgEnv.POSTGRES_PASSWORD);
    assert.equal(database.pathname.slice(1), pgEnv.POSTGRES_DB);

    // RabbitMQ's guest user is refused from any host but localhost, so the API needs a user of its own.
    const rabbitEnv = environment(service('rabbitmq'));
    assert.notEqual(broker.username, 'guest', 'guest cannot connect from another container');
    assert.equal(decodeURIComponent(broker.username), rabbitEnv.RABBITMQ_DEFAULT_USER);
    assert.equal(decodeURIComponent(broker.password), rabbitEnv.RABBITMQ_DEFAULT_PASS);
  });

  test('data lives in named volumes', () => {
    const declared = Object.keys(compose.volumes ?? {});
    for (const name of ['postgres', 'rabbitmq']) {
      const svc = service(name) as Service & { volumes?: (string | { source?: string })[] };
      const sources = (svc.volumes ?? []).map((volume) =>
        typeof volume === 'string' ? volume.split(':')[0] : volume.source,
      );
      assert.ok(
        sources.some((source) => source !== undefined && declared.includes(source)),
        `${name} keeps its data in a named volume`,
      );
    }
  });
});
