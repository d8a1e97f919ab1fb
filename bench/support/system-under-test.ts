/**
 * The one way a benchmark starts and stops the system under test: the API (`telemetry-bus start`) and the
 * worker (`telemetry-bus worker`) as child processes (system-process.ts), each with an environment of the
 * benchmark's own, and what a benchmark reads from them: the API's `GET /health`, its Prometheus
 * exposition and its request thread's event-loop delay (loop-delay-probe.ts, preloaded, over IPC), and
 * the worker's Prometheus endpoint (WORKER_METRICS_PORT=0).
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

/** The request thread's event-loop delay, ms. */
export type LoopDelay = Record<'mean' | 'p50' | 'p99' | 'max', number>;

interface Health {
  publisher: {
    confirmed: number;
    resent: number;
    nacked: number;
    thread?: { tid?: number };
  } | null;
  events: { emitted: number; dropped: Record<string, number>; unpublished: number } | null;
}

/** GET `url` with a 10 s time-out; throws unless 200. */
async function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  if (response.status !== 200) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response;
}

export type Api = Awaited<ReturnType<typeof startApi>>;

/**
 * Creates an admin key in the (fresh) database — `keys create` migrates it first — then starts the API
 * on a free port with CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn (each overridable in
 * `env`: RABBITMQ_URL, DATA_DIR, TELEMETRY_ENABLED …) and waits for /livez.
 */
export async function startApi(
  options: { label: string; databaseUrl: string; env: Record<string, string>; nodeArgs?: string[] },
  started?: SystemProcess[],
) {
  const { label, databaseUrl } = options;
  const keyArgs = ['keys', 'create', '--role', 'admin', '--name', `bench ${label}`];
  const key = (await runCli(keyArgs, { DATABASE_URL: databaseUrl })).trim();
  const port = await freePort();
  const env = {
    ...{ CONSUMERS: 'none', RATE_LIMIT_PER_MINUTE: '0', BOOTSTRAP_ADMIN_KEY: 'false', LOG_LEVEL: 'warn' },
    ...options.env,
    ...{ DATABASE_URL: databaseUrl, HOST: '127.0.0.1', PORT: String(port) },
  };
  const nodeArgs = [...(options.nodeArgs ?? []), '--import', 'tsx', '--import', PROBE];
  const process_ = startCli(label, ['start'], env, () => false, { nodeArgs, ipc: true });
  started?.push(process_);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(process_, `${url}/livez`, READY_TIMEOUT_MS);
  return {
    label,
    process: process_,
    pid: process_.pid,
    url,
    /** An admin key made for the benchmark. */
    key,
    databaseUrl,
    /** The request thread's event-loop delay since the previous call (ms); null if it did not answer. */
    loopDelay: () => loopDelay(process_),
    health: async () => (await (await get(`${url}/health`)).json()) as Health,
    /** GET /metrics/prometheus (each scrape is a request, so one more event with the bus on). */
    prometheus: async () => (await get(`${url}/metrics/prometheus`, { accept: 'text/plain' })).text(),
  };
}

function loopDelay({ child }: SystemProcess): Promise<LoopDelay | null> {
  return new Promise((resolve) => {
    const done = (value: LoopDelay | null) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(value);
    };
    const onMessage = ({ type, mean, p50, p99, max }: { type?: string } & LoopDelay) =>
      type === 'loop-delay' && done({ mean, p50, p99, max });
    const timer = setTimeout(() => done(null), 2000);
    child.on('message', onMessage);
    if (!child.connected || !child.send({ type: 'loop-delay' })) done(null);
  });
}

export type Worker = Awaited<ReturnType<typeof startWorker>>;

/**
 * `telemetry-bus worker --consumers …` with its metrics on a free port, and its young generation of
 * 64 MiB semi-spaces as the compose files run it (docs/guides/scaling-out.md); waits until it consumes.
 */
export async function startWorker(
  options: {
    label: string;
    databaseUrl: string;
    rabbitmqUrl: string;
    consumers: readonly string[];
    env?: Record<string, string>;
  },
  started?: SystemProcess[],
) {
  const { label, consumers } = options;
  const env = {
    LOG_LEVEL: 'info',
    ...options.env,
    ...{
      DATABASE_URL: options.databaseUrl,
      RABBITMQ_URL: options.rabbitmqUrl,
      HOST: '127.0.0.1',
      WORKER_METRICS_PORT: '0',
    },
  };
  // The logging consumer's error log goes to stdout too: its lines are output, not warnings.
  const isOutput = (entry: Record<string, unknown>) =>
    typeof entry.event_id === 'string' && typeof entry.error_type === 'string';
  const nodeArgs = ['--max-semi-space-size=64'];
  const process_ = startCli(label, ['worker', '--consumers', consumers.join(',')], env, isOutput, {
    nodeArgs,
  });
  started?.push(process_);
  let metricsUrl = '';
  await process_.waitForLine((entry) => entry.msg === 'telemetry-bus worker consuming', READY_TIMEOUT_MS);
  await process_.waitForLine((entry) => {
    metricsUrl =
      entry.msg === 'worker metrics served' && typeof entry.url === 'string' ? entry.url : metricsUrl;
    return metricsUrl !== '';
  }, 5_000);
  const prometheus = async () => (await get(metricsUrl, { accept: 'text/plain' })).text();
  return { label, process: process_, pid: process_.pid, consumers, metricsUrl, prometheus };
}

/** Throws if any of the processes has exited (with its last output). */
export function assertRunning(...processes: SystemProcess[]): void {
  for (const { name, child, tail } of processes) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${name} exited (code ${child.exitCode}, signal ${child.signalCode}):\n${tail.join('\n')}`,
      );
    }
  }
}

/**
 * Stops every process not stopped yet, last started first (SIGTERM: the graceful shutdown; SIGKILL after
 * 30 s), recording each exit in `exits` by name. Never throws.
 */
export async function stopSystem(processes: readonly SystemProcess[], exits: Record<string, ProcessExit>) {
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
