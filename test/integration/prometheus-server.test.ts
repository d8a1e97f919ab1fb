/**
 * A real Prometheus server (Debian's `prometheus`) scrapes a test system with deploy/prometheus.yml, its
 * targets pointed at this test's API, a worker metrics endpoint and the local RabbitMQ's
 * `rabbitmq_prometheus` endpoint, on loopback with a 1 s scrape interval and a throw-away storage
 * directory; our series come back through its HTTP API, and every query of the Grafana dashboard
 * evaluates. The server is always killed, whatever happens.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parse, stringify } from 'yaml';
import { startMetricsServer } from '../../src/prometheus/metrics-server.ts';
import { createPrometheusRegistry } from '../../src/prometheus/prometheus-registry.ts';
import { build, modelBody, type TestApp } from '../helper.ts';
import { waitUntil } from '../support/wait-until.ts';

const RABBITMQ_PROMETHEUS_TARGET = process.env.TEST_RABBITMQ_PROMETHEUS_TARGET ?? '127.0.0.1:15692';
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

interface ScrapeConfig {
  job_name: string;
  static_configs: Array<{ targets: string[] }>;
  [key: string]: unknown;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** deploy/prometheus.yml with a 1 s interval and each job's targets replaced. */
function testConfig(targets: Record<string, string>): string {
  const config = parse(read('deploy/prometheus.yml')) as {
    global?: Record<string, unknown>;
    scrape_configs: ScrapeConfig[];
  };
  config.global = {
    ...config.global,
    scrape_interval: '1s',
    scrape_timeout: '1s',
    evaluation_interval: '1s',
  };
  assert.deepEqual(
    config.scrape_configs.map((scrape) => scrape.job_name).sort(),
    Object.keys(targets).sort(),
    'the jobs of deploy/prometheus.yml',
  );
  for (const scrape of config.scrape_configs) {
    scrape.static_configs = [{ targets: [targets[scrape.job_name] as string] }];
  }
  return stringify(config);
}

let system: TestApp;
let prometheus: ChildProcess | undefined;
let prometheusUrl = '';
let prometheusLog = '';
const directory = mkdtempSync(join(tmpdir(), 'tb-prometheus-'));

async function stopPrometheus(): Promise<void> {
  const child = prometheus;
  prometheus = undefined;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Teardowns registered in `before`, run last-registered first after the tests. */
const cleanups: Array<() => unknown> = [];
const teardown = { after: (fn: () => unknown) => cleanups.push(fn) };
after(async () => {
  try {
    await stopPrometheus();
  } finally {
    for (const cleanup of cleanups.reverse()) await cleanup();
    rmSync(directory, { recursive: true, force: true });
  }
});

/** Why targets are down, for a failure message. */
async function targetHealth(): Promise<string> {
  const response = await fetch(`${prometheusUrl}/api/v1/targets`).catch(() => undefined);
  if (response === undefined) return 'no answer from /api/v1/targets';
  const body = (await response.json()) as {
    data: { activeTargets: Array<{ scrapePool: string; health: string; lastError: string }> };
  };
  return body.data.activeTargets
    .map((target) => `${target.scrapePool}: ${target.health} ${target.lastError}`)
    .join('\n');
}

async function query(
  expr: string,
): Promise<{ status: string; data?: { result: unknown[] }; error?: string }> {
  const url = new URL('/api/v1/query', prometheusUrl);
  url.searchParams.set('query', expr);
  const response = await fetch(url);
  return (await response.json()) as { status: string; data?: { result: unknown[] }; error?: string };
}

async function vector(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
  const answer = await query(expr);
  assert.equal(answer.status, 'success', `${expr}: ${answer.error}`);
  return (
    (answer.data?.result ?? []) as Array<{ metric: Record<string, string>; value: [number, string] }>
  ).map((sample) => ({ metric: sample.metric, value: Number(sample.value[1]) }));
}

before(async () => {
  const probe = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  assert.ok(
    probe.error === undefined && probe.status === 0,
    'the prometheus server is not installed: apt-get install -y prometheus (Debian), or put it on PATH',
  );
  system = await build(teardown);
  const apiUrl = await system.app.listen({ host: '127.0.0.1', port: 0 });
  const worker = await startMetricsServer({
    registry: createPrometheusRegistry(),
    host: '127.0.0.1',
    port: 0,
  });
  teardown.after(() => worker.close());

  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  const configFile = join(directory, 'prometheus.yml');
  writeFileSync(
    configFile,
    testConfig({
      'telemetry-bus-api': new URL(apiUrl).host,
      'telemetry-bus-worker': new URL(worker.url).host,
      rabbitmq: RABBITMQ_PROMETHEUS_TARGET,
    }),
  );
  prometheus = spawn(
    'prometheus',
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(directory, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prometheus.stdout?.on('data', (chunk) => {
    prometheusLog += chunk;
  });
  prometheus.stderr?.on('data', (chunk) => {
    prometheusLog += chunk;
  });
  await waitUntil(
    'Prometheus ready',
    async () => {
      if (prometheus?.exitCode !== null) throw new Error(`prometheus exited:\n${prometheusLog}`);
      const response = await fetch(`${prometheusUrl}/-/ready`).catch(() => undefined);
      return response?.status === 200;
    },
    30_000,
    { intervalMs: 200 },
  );
});

test('Prometheus scrapes the API (GET /metrics), the worker and RabbitMQ: every target is up', async () => {
  await waitUntil(
    'three targets up',
    async () => {
      const up = await vector('up == 1');
      return ['telemetry-bus-api', 'telemetry-bus-worker', 'rabbitmq'].every((job) =>
        up.some((sample) => sample.metric.job === job),
      );
    },
    20_000,
    { intervalMs: 250 },
  ).catch(async (error: unknown) => {
    throw new Error(`${String(error)}\n${await targetHealth()}\n${prometheusLog}`);
  });
  // Prometheus's scrapes of GET /metrics were answered by the exposition (they are in our histogram).
  await waitUntil(
    "the API's histogram counts Prometheus's scrapes of /metrics",
    async () =>
      (
        await vector(
          'http_request_duration_seconds_count{job="telemetry-bus-api",route="/metrics",method="GET",status_code="200"} > 0',
        )
      ).length === 1,
    20_000,
    { intervalMs: 250 },
  );
});

test('a registered model shows in telemetry_events_emitted_total queried back from Prometheus', async () => {
  const response = await system.app.inject({
    method: 'POST',
    url: '/models',
    headers: { 'x-api-key': system.keys.writer },
    payload: modelBody(),
  });
  assert.equal(response.statusCode, 201);
  let found: Array<{ metric: Record<string, string>; value: number }> = [];
  await waitUntil(
    'the event counted in Prometheus',
    async () => {
      found = await vector(
        'telemetry_events_emitted_total{job="telemetry-bus-api",event_type="model.registered"}',
      );
      return found.length === 1 && (found[0]?.value ?? 0) >= 1;
    },
    20_000,
    { intervalMs: 250 },
  );
  assert.equal(found[0]?.value, 1);
  assert.equal(found[0]?.metric.instance, new URL(String(system.app.listeningOrigin)).host);
});

test('every query of the Grafana dashboard evaluates in Prometheus', async () => {
  const dashboard = JSON.parse(read('deploy/grafana/dashboards/telemetry-bus.json')) as {
    panels: Array<{ title: string; targets?: Array<{ expr: string }> }>;
  };
  let evaluated = 0;
  for (const panel of dashboard.panels) {
    for (const target of panel.targets ?? []) {
      const expr = target.expr.replaceAll('$__rate_interval', '1m');
      const answer = await query(expr);
      assert.equal(answer.status, 'success', `'${panel.title}': ${expr}: ${answer.error}`);
      evaluated++;
    }
  }
  assert.ok(evaluated >= 20);
  // Some answer already: the RabbitMQ and queue panels need no traffic.
  assert.ok((await vector('sum(rabbitmq_connections)')).length === 1);
  assert.ok((await vector('min(telemetry_broker_connection_state{state="connected"})')).length === 1);
});
