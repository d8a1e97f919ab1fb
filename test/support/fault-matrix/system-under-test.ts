/**
 * Test support: the whole system as deployed, for one fault-matrix scenario — the API (`telemetry-bus
 * start`, no consumers) and workers (`telemetry-bus worker --consumers all`) as processes of their own, on
 * a database and a vhost of their own, optionally reaching RabbitMQ through a TCP proxy the scenario can
 * cut or black-hole. Everything is torn down after the test file.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import pg from 'pg';
import { withTimeout } from '../../../src/with-timeout.ts';
import { type BusEnvironment, createBusEnvironment, createTestDatabase } from '../../helper.ts';
import { type ApiProcess, startApiProcess } from '../api-process.ts';
import type { TestBroker } from '../rabbitmq-vhost.ts';
import { startTcpProxy, type TcpProxy } from '../tcp-proxy.ts';
import { waitUntil } from '../wait-until.ts';
import { startWorkerProcess, type WorkerProcess } from '../worker-process.ts';

export interface SystemOptions {
  /** Worker processes to start (each runs every consumer). @default 1 */
  workers?: number;
  /** Route the API's and the workers' AMQP connections through a TCP proxy. @default false */
  proxy?: boolean;
  /** Extra environment of the API process. */
  apiEnv?: Record<string, string>;
  /** Extra environment of each worker process. */
  workerEnv?: Record<string, string>;
  /** The broker the vhost is made on. @default the local one */
  broker?: TestBroker;
  /** RABBITMQ_URL of the API and the workers, from the vhost's AMQP URL (a cluster's node list). */
  rabbitmqUrl?: (vhostUrl: string) => string;
}

export interface SystemUnderTest {
  api: ApiProcess;
  /** The admin key the first start printed. */
  key: string;
  workers: WorkerProcess[];
  pool: pg.Pool;
  databaseUrl: string;
  bus: BusEnvironment;
  proxy: TcpProxy | undefined;
  /** Starts one more worker process. */
  startWorker(): WorkerProcess;
  /** kill -9 of the API, then a start on the same database and data directory (spool). */
  restartApi(): Promise<void>;
  /** GET /health of the API. */
  health(): Promise<ApiHealth>;
  /** Kills every process (the scenario's teardown, once everything is counted). */
  stop(): Promise<void>;
}

export interface ApiHealth {
  checks: { postgres: string; broker: string };
  events: { unpublished: number; dropped: { spool_full: number; write_error: number } };
}

/** Anything with node:test's `after`: the scenario's TestContext, so each scenario tears down its own. */
export interface Teardown {
  after(fn: () => unknown): void;
}

/** Fast ledger flushes, no rate limit: the matrix counts, it does not throttle. */
const API_ENV = { CONSUMERS: 'none', LEDGER_FLUSH_INTERVAL_MS: '200', RATE_LIMIT_PER_MINUTE: '0' };

/**
 * Starts the system; `teardown.after` stops its processes, then removes its database and vhost (in that
 * order, whatever order the test runner runs hooks in).
 */
export async function startSystem(teardown: Teardown, options: SystemOptions = {}): Promise<SystemUnderTest> {
  const removals: Array<{ what: string; run: () => unknown }> = [];
  teardown.after(async () => {
    // Every step is attempted even if one fails: a pool or a database left behind outlives the scenario.
    const failures: unknown[] = [];
    for (const removal of removals.reverse()) {
      await withDeadline(removal.what, removal.run).catch((error: unknown) => failures.push(error));
    }
    if (failures.length > 0)
      throw new AggregateError(failures, `teardown: ${failures.map(String).join('; ')}`);
  });
  const databaseUrl = await createTestDatabase({
    after: (fn) => removals.push({ what: 'drop the database', run: fn }),
  });
  const bus = await createBusEnvironment(options.broker);
  removals.push({ what: 'remove the vhost and data directory', run: () => bus.remove() });
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  pool.on('error', () => {});
  removals.push({ what: 'end the pool', run: () => pool.end() });
  const proxy = options.proxy ? await startTcpProxy({ targetPort: 5672 }) : undefined;
  if (proxy !== undefined) removals.push({ what: 'close the TCP proxy', run: () => proxy.close() });
  const vhostUrl = proxy === undefined ? bus.env.RABBITMQ_URL : proxy.url(bus.env.RABBITMQ_URL);
  const rabbitmqUrl = options.rabbitmqUrl?.(vhostUrl) ?? vhostUrl;
  const apiEnv = {
    DATABASE_URL: databaseUrl,
    ...bus.env,
    RABBITMQ_URL: rabbitmqUrl,
    ...API_ENV,
    ...options.apiEnv,
  };

  const workerBus = { ...bus, env: { ...bus.env, RABBITMQ_URL: rabbitmqUrl } };
  const workers: WorkerProcess[] = [];
  const startWorker = () => {
    const worker = startWorkerProcess('all', databaseUrl, workerBus, { ...options.workerEnv });
    workers.push(worker);
    return worker;
  };
  // The workers boot while the API does (the database is migrated already).
  for (let index = 0; index < (options.workers ?? 1); index++) startWorker();
  let api = await startApiProcess(apiEnv);
  const key = api.adminKey;
  if (key === undefined) throw new Error(`the first start printed no admin key:\n${api.output()}`);
  // Every work queue has its consumer before the load starts.
  await waitForConsumers(workers);

  let stopped: Promise<void> | undefined;
  const system: SystemUnderTest = {
    get api() {
      return api;
    },
    key,
    workers,
    pool,
    databaseUrl,
    bus,
    proxy,
    startWorker,
    async restartApi() {
      api.child.kill('SIGKILL');
      if (api.child.exitCode === null) await once(api.child, 'exit');
      api = await startApiProcess(apiEnv);
    },
    async health() {
      const response = await fetch(`${api.url}/health`, { signal: AbortSignal.timeout(5000) });
      return (await response.json()) as ApiHealth;
    },
    stop() {
      stopped ??= stopAll();
      return stopped;
    },
  };
  // kill -9: by teardown the scenario has counted everything, and a graceful stop only costs time.
  const stopAll = async () => {
    const children = [api.child, ...workers.map((worker) => worker.child)].filter(
      (child) => child.exitCode === null && child.signalCode === null,
    );
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(children.map((child) => once(child, 'exit')));
  };
  removals.push({ what: 'kill the processes', run: () => system.stop() });
  return system;
}

/** How long one teardown step may take, in ms. */
const TEARDOWN_STEP_MS = 60_000;

/**
 * Runs one teardown step, failing with its name if it takes longer than {@link TEARDOWN_STEP_MS}. The
 * timer also keeps the event loop alive: a step awaiting something that holds no handle would otherwise
 * let the test runner see an empty loop and cancel every scenario still to come.
 */
function withDeadline(what: string, run: () => unknown): Promise<unknown> {
  return withTimeout(
    Promise.resolve().then(run),
    TEARDOWN_STEP_MS,
    `"${what}" took over ${TEARDOWN_STEP_MS / 1000} s`,
  );
}

/**
 * Resolves once every worker started so far says it is consuming (subscribed to every queue). Its log
 * line, not the management API's consumer count, which lags by up to its 5 s statistics interval.
 */
export async function waitForConsumers(workers: readonly WorkerProcess[]): Promise<void> {
  await waitUntil(
    'the workers to subscribe',
    () => workers.every((worker) => worker.output().includes('telemetry-bus worker consuming')),
    60_000,
    { intervalMs: 50 },
  );
}

/** A name unique to one scenario run: correlation ids and model ids start with it. */
export function scenarioPrefix(scenario: number): string {
  return `fm${scenario}-${randomUUID().slice(0, 8)}`;
}
