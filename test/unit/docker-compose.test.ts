/**
 * docker-compose.yml stays in step with the code: the services exist and are health-checked, the ports are
 * published, and the API's environment is configuration that `loadConfig` accepts and that points at the
 * compose services. The monitoring wiring too: Prometheus scrapes the ports the API, the worker and
 * RabbitMQ really serve metrics on, and Grafana's datasource and dashboards are provisioned where it
 * looks for them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.ts';

const COMPOSE_FILE = new URL('../../docker-compose.yml', import.meta.url);
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

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
  command?: string | string[];
  volumes?: (string | { source?: string; target?: string })[];
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
    assert.deepEqual(Object.keys(compose.services).sort(), [
      'grafana',
      'postgres',
      'prometheus',
      'rabbitmq',
      'telemetry-bus',
      'worker',
    ]);
    assert.ok(api.build !== undefined, 'telemetry-bus is built from the Dockerfile');
    assert.ok(service('worker').build !== undefined, 'the worker is built from the Dockerfile');
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
    const broker = new URL(config.rabbitmqUrls[0] as string);
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
      const svc = service(name);
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

/** Bind mounts of a service: host path (relative to the repository) → container path. */
function bindMounts(svc: Service): Map<string, string> {
  const mounts = new Map<string, string>();
  for (const volume of svc.volumes ?? []) {
    if (typeof volume !== 'string' || !volume.startsWith('./')) continue;
    const [source = '', target = ''] = volume.split(':');
    mounts.set(source.slice(2), target);
  }
  return mounts;
}

interface ScrapeConfig {
  job_name: string;
  metrics_path?: string;
  static_configs: Array<{ targets: string[] }>;
}

describe('monitoring: the worker, Prometheus and Grafana', () => {
  const worker = service('worker');
  const workerEnv = environment(worker);
  const prometheus = parse(read('deploy/prometheus.yml')) as { scrape_configs: ScrapeConfig[] };
  const target = (job: string) => {
    const config = prometheus.scrape_configs.find((scrape) => scrape.job_name === job);
    assert.ok(config, `deploy/prometheus.yml has no job ${job}`);
    const [host = '', port = ''] = (config.static_configs[0]?.targets[0] ?? '').split(':');
    return { host, port: Number(port), path: config.metrics_path ?? '/metrics' };
  };

  test('the worker runs `telemetry-bus worker` with valid configuration and a metrics port', () => {
    assert.deepEqual([worker.command].flat(), [
      'node',
      '--max-semi-space-size=64',
      'bin/telemetry-bus.js',
      'worker',
    ]);
    for (const name of Object.keys(workerEnv)) {
      assert.ok(Object.hasOwn(CONFIG_VARIABLES, name), `${name} is not in CONFIG_VARIABLES (src/config.ts)`);
    }
    const config = loadConfig(workerEnv);
    assert.equal(config.host, '0.0.0.0');
    assert.ok(config.workerMetricsPort !== null && config.workerMetricsPort > 0);
    assert.equal(new URL(config.databaseUrl).hostname, 'postgres');
    assert.equal(new URL(config.rabbitmqUrls[0] as string).hostname, 'rabbitmq');
    // One process consumes: the API is told not to.
    assert.deepEqual(loadConfig(apiEnv).consumers, []);
    assert.ok(config.consumers.length > 0);
  });

  test('Prometheus scrapes the API, the worker and RabbitMQ where they serve metrics', () => {
    const apiTarget = target('telemetry-bus-api');
    assert.equal(apiTarget.host, 'telemetry-bus');
    assert.equal(apiTarget.port, loadConfig(apiEnv).port);
    assert.match(apiTarget.path, /^\/metrics(\/prometheus)?$/);
    const workerTarget = target('telemetry-bus-worker');
    assert.equal(workerTarget.host, 'worker');
    assert.equal(workerTarget.port, loadConfig(workerEnv).workerMetricsPort);
    assert.equal(workerTarget.path, '/metrics');
    const rabbitTarget = target('rabbitmq');
    assert.equal(rabbitTarget.host, 'rabbitmq');
    assert.equal(rabbitTarget.port, 15692);
    // RabbitMQ loads rabbitmq_prometheus (and the management plugin the API's queue figures need).
    const pluginsTarget = bindMounts(service('rabbitmq')).get('deploy/rabbitmq/enabled_plugins');
    assert.equal(pluginsTarget, '/etc/rabbitmq/enabled_plugins');
    assert.match(read('deploy/rabbitmq/enabled_plugins'), /^\[.*\brabbitmq_prometheus\b.*\]\.\s*$/s);
    assert.match(read('deploy/rabbitmq/enabled_plugins'), /\brabbitmq_management\b/);
    // Prometheus reads this very file.
    const prometheusService = service('prometheus');
    const configPath = bindMounts(prometheusService).get('deploy/prometheus.yml');
    assert.ok(configPath, 'deploy/prometheus.yml is mounted into prometheus');
    assert.ok([prometheusService.command].flat().includes(`--config.file=${configPath}`));
  });

  test('Grafana is provisioned with the Prometheus datasource and the dashboard', () => {
    const grafana = service('grafana');
    const mounts = bindMounts(grafana);
    assert.equal(mounts.get('deploy/grafana/provisioning'), '/etc/grafana/provisioning');
    const dashboardsPath = mounts.get('deploy/grafana/dashboards');
    assert.ok(dashboardsPath, 'the dashboards are mounted into grafana');
    const provider = parse(read('deploy/grafana/provisioning/dashboards/telemetry-bus.yml')) as {
      providers: Array<{ options: { path: string } }>;
    };
    assert.equal(provider.providers[0]?.options.path, dashboardsPath);

    const datasource = (
      parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
        datasources: Array<{ uid: string; type: string; url: string }>;
      }
    ).datasources[0];
    assert.equal(datasource?.type, 'prometheus');
    const url = new URL(datasource?.url ?? '');
    assert.ok(Object.hasOwn(compose.services, url.hostname), `${url.hostname} is not a compose service`);
    assert.equal(url.hostname, 'prometheus');
    assert.equal(url.port, '9090');

    const dashboard = JSON.parse(read('deploy/grafana/dashboards/telemetry-bus.json')) as {
      panels: Array<{ title: string; type: string; datasource?: { uid?: string }; targets?: unknown[] }>;
    };
    const charts = dashboard.panels.filter((panel) => panel.type !== 'row');
    assert.ok(charts.length >= 10);
    for (const panel of charts) {
      assert.equal(
        panel.datasource?.uid,
        datasource?.uid,
        `'${panel.title}' uses the provisioned datasource`,
      );
      assert.ok((panel.targets ?? []).length > 0, `'${panel.title}' has queries`);
    }
    for (const title of [
      'Events/s by type',
      'API latency p50 / p95 / p99',
      'Error rate',
      'Queue depth (ready)',
      'Consumers per queue',
      'Broker connected',
      'Spool: unpublished events',
      'Events dropped/s',
      'Dead letters',
    ]) {
      assert.ok(
        charts.some((panel) => panel.title === title),
        `the dashboard has a '${title}' panel`,
      );
    }
  });
});
