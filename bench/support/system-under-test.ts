/**
 * The one way a benchmark starts and stops the system under test: the API (`telemetry-bus start`) and the
 * worker (`telemetry-bus worker`) as child processes, exactly as an operator runs them (system-process.ts),
 * each with an environment of the benchmark's own. What a benchmark reads from them is here too: the
 * API's `GET /health` and Prometheus exposition, its request thread's event-loop delay (a probe preloaded
 * with `--import`, answering over IPC), and the worker's Prometheus endpoint (WORKER_METRICS_PORT=0).
 *
 *   const api = await startApi({ label: 'api', databaseUrl, env: { ...bus.env, TELEMETRY_ENABLED: 'true' } });
 *   const worker = await startWorker({ label: 'worker', databaseUrl, rabbitmqUrl, consumers: ['audit'] });
 *   …
 *   await stopSystem([api.process, worker.process]);   // SIGTERM, graceful; SIGKILL after 30 s
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { progress } from './report.ts';
import {
  freePort,
  type ProcessExit,
  runCli,
  type SystemProcess,
  startCli,
  stopProcess,
  waitForHttp,
} from './system-process.ts';

const PROBE = fileURLToPath(new URL('./loop-delay-probe.ts', import.meta.url));
const READY_TIMEOUT_MS = 60_000;

export interface LoopDelay {
  mean: number;
  p50: number;
  p99: number;
  max: number;
}

export interface Health {
  status?: string;
  publisher: {
    state: string;
    confirmed: number;
    resent: number;
    nacked: number;
    returned: number;
    connects: number;
  } | null;
  events: { emitted: number; dropped: Record<string, number>; unpublished: number } | null;
  [more: string]: unknown;
}

export interface Api {
  label: string;
  process: SystemProcess;
  pid: number;
  url: string;
  /** An admin key made for the benchmark. */
  key: string;
  databaseUrl: string;
  /** The request thread's event-loop delay since the previous call (ms); null if it did not answer. */
  loopDelay(): Promise<LoopDelay | null>;
  health(): Promise<Health>;
  /** GET /metrics/prometheus, as text (each scrape is a request, so one more event with the bus on). */
  prometheus(): Promise<string>;
}

export interface ApiOptions {
  label: string;
  databaseUrl: string;
  /** Added to the environment (RABBITMQ_URL, DATA_DIR, TELEMETRY_ENABLED …). */
  env: Record<string, string>;
  /** Node options for the process, e.g. `--cpu-prof --cpu-prof-dir=…`. */
  nodeArgs?: string[];
}

/**
 * Creates an admin key in the (fresh) database — `keys create` migrates it first — then starts the API
 * on a free port with CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn (each overridable in
 * `env`) and waits for /livez.
 */
export async function startApi(options: ApiOptions, started?: SystemProcess[]): Promise<Api> {
  const { label, databaseUrl } = options;
  const key = (
    await runCli(['keys', 'create', '--role', 'admin', '--name', `bench ${label}`], {
      DATABASE_URL: databaseUrl,
    })
  ).trim();
  const port = await freePort();
  const process_ = startCli(
    label,
    ['start'],
    {
      CONSUMERS: 'none',
      RATE_LIMIT_PER_MINUTE: '0',
      BOOTSTRAP_ADMIN_KEY: 'false',
      LOG_LEVEL: 'warn',
      ...options.env,
      DATABASE_URL: databaseUrl,
      HOST: '127.0.0.1',
      PORT: String(port),
    },
    () => false,
    { nodeArgs: [...(options.nodeArgs ?? []), '--import', 'tsx', '--import', PROBE], ipc: true },
  );
  started?.push(process_);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(process_, `${url}/livez`, READY_TIMEOUT_MS);
  const get = async (route: string, headers: Record<string, string> = {}) => {
    const response = await fetch(`${url}${route}`, { headers, signal: AbortSignal.timeout(10_000) });
    if (response.status !== 200) throw new Error(`GET ${route} of ${label}: HTTP ${response.status}`);
    return response;
  };
  return {
    label,
    process: process_,
    pid: process_.pid,
    url,
    key,
    databaseUrl,
    loopDelay: () => loopDelay(process_),
    health: async () => (await (await get('/health')).json()) as Health,
    prometheus: async () => (await get('/metrics/prometheus', { accept: 'text/plain' })).text(),
  };
}

function loopDelay(process_: SystemProcess): Promise<LoopDelay | null> {
  const { child } = process_;
  return new Promise((resolve) => {
    const done = (value: LoopDelay | null) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(value);
    };
    const onMessage = (message: { type?: string } & LoopDelay) => {
      if (message?.type === 'loop-delay')
        done({ mean: message.mean, p50: message.p50, p99: message.p99, max: message.max });
    };
    const timer = setTimeout(() => done(null), 2000);
    child.on('message', onMessage);
    if (!child.connected || !child.send({ type: 'loop-delay' })) done(null);
  });
}

export interface Worker {
  label: string;
  process: SystemProcess;
  pid: number;
  consumers: readonly string[];
  /** The worker's Prometheus endpoint (`…/metrics`). */
  metricsUrl: string;
  prometheus(): Promise<string>;
}

export interface WorkerOptions {
  label: string;
  databaseUrl: string;
  rabbitmqUrl: string;
  consumers: readonly string[];
  /** Added to the environment (DATA_DIR …). */
  env?: Record<string, string>;
}

/**
 * Node options of the worker, as the compose files run it: a young generation of 64 MiB semi-spaces
 * (docs/guides/scaling-out.md, "Node's young generation").
 */
const WORKER_NODE_ARGS = ['--max-semi-space-size=64'];

/** `telemetry-bus worker --consumers …` with its metrics on a free port; waits until it consumes. */
export async function startWorker(options: WorkerOptions, started?: SystemProcess[]): Promise<Worker> {
  const process_ = startCli(
    options.label,
    ['worker', '--consumers', options.consumers.join(',')],
    {
      LOG_LEVEL: 'info',
      ...options.env,
      DATABASE_URL: options.databaseUrl,
      RABBITMQ_URL: options.rabbitmqUrl,
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
    },
    // The logging consumer's error log goes to stdout too: its lines are output, not warnings.
    (entry) => typeof entry.event_id === 'string' && typeof entry.error_type === 'string',
    { nodeArgs: WORKER_NODE_ARGS },
  );
  started?.push(process_);
  let metricsUrl = '';
  await process_.waitForLine((entry) => entry.msg === 'telemetry-bus worker consuming', READY_TIMEOUT_MS);
  await process_.waitForLine((entry) => {
    if (entry.msg !== 'worker metrics served' || typeof entry.url !== 'string') return false;
    metricsUrl = entry.url;
    return true;
  }, 5_000);
  return {
    label: options.label,
    process: process_,
    pid: process_.pid,
    consumers: options.consumers,
    metricsUrl,
    prometheus: async () => {
      const response = await fetch(metricsUrl, {
        headers: { accept: 'text/plain' },
        signal: AbortSignal.timeout(10_000),
      });
      if (response.status !== 200) throw new Error(`GET ${metricsUrl}: HTTP ${response.status}`);
      return response.text();
    },
  };
}

/** Throws if any of the processes has exited (with its last output). */
export function assertRunning(...processes: SystemProcess[]): void {
  for (const process_ of processes) {
    if (process_.child.exitCode !== null || process_.child.signalCode !== null) {
      throw new Error(
        `${process_.name} exited (code ${process_.child.exitCode}, signal ${process_.child.signalCode}):\n${process_.tail.join('\n')}`,
      );
    }
  }
}

/**
 * Stops every process not stopped yet, last started first (SIGTERM: the graceful shutdown), recording
 * each exit in `exits` by name. Never throws.
 */
export async function stopSystem(
  processes: readonly SystemProcess[],
  exits: Record<string, ProcessExit>,
): Promise<void> {
  for (const process_ of [...processes].reverse()) {
    if (exits[process_.name] !== undefined) continue;
    progress(`stopping ${process_.name} (SIGTERM)`);
    exits[process_.name] = await stopProcess(process_);
  }
}

/** `--cpu-prof` options writing into `<dir>/<label>` (a directory each: tsx's loader thread profiles too). */
export function cpuProfArgs(dir: string | undefined, label: string): string[] {
  return dir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.join(dir, label)}`];
}

export type { ProcessExit, SystemProcess };
