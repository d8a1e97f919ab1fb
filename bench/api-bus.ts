/**
 * What the telemetry bus costs the API: the same API with the bus on and off, in the same run.
 *
 *   npm run bench:api-bus -- [--rate 1000] [--rate-duration 20] [--rate-connections 10]
 *                            [--max-connections 50] [--max-duration 15] [--warmup 3] [--rounds 2]
 *                            [--models 1000] [--scenario get-model] [--mode rate] [--drain-timeout 60]
 *                            [--server-cpu-prof DIR] [--pg-url URL]
 *
 * Every option also reads an environment variable (BENCH_RATE, BENCH_RATE_DURATION, BENCH_RATE_CONNECTIONS,
 * BENCH_MAX_CONNECTIONS, BENCH_MAX_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_MODELS, BENCH_SCENARIOS,
 * BENCH_MODES, BENCH_DRAIN_TIMEOUT, BENCH_SERVER_CPU_PROF, BENCH_PG_URL); the flag wins.
 *
 * Two API processes (bench/support/api-server.ts: the service as `telemetry-bus start` builds it), each a
 * child process so the load generator (autocannon, in this process) shares neither's event loop, with
 * identical configuration except TELEMETRY_ENABLED, each on a database of its own seeded with `models`
 * models; the bus-on one publishes to a RabbitMQ vhost of its own (real topology, quorum queues, no
 * consumers). For each scenario (GET /models/:id; a mix of reads, filters, 404s and writes), each process is
 * warmed up, then each mode runs `rounds` times per process, alternating on, off, on, off… so drift on a
 * shared machine falls on both alike:
 *   rate  a fixed arrival rate (autocannon overallRate) of `rate` req/s for `rate-duration` s
 *   max   as fast as `max-connections` connections go, for `max-duration` s
 *
 * autocannon's fixed rate is a per-connection quota per second: each connection sends its share back to
 * back, then waits for the next second. So `rate` req/s arrive as bursts of `rate-connections` connections
 * going full speed, not evenly spaced; that queueing is in the latencies, for bus on and off alike.
 *
 * Latency: autocannon's own histogram keeps whole milliseconds (and, at a fixed rate, corrects for
 * coordinated omission); to see sub-millisecond differences, every response's time as autocannon measured
 * it (a float, in ms) is also kept and its exact percentiles reported. Both are in the results.
 *
 * After every bus-on run the benchmark waits until GET /health of that process says every event is
 * confirmed (events.unpublished = 0; dropped all 0), checks the depth of `metrics.updates` (bound to every
 * event) against the events emitted, and purges the queues, so the next run starts with no backlog and
 * the broker holds no pile of messages. The servers are stopped (SIGTERM, graceful), the databases dropped,
 * the vhost and data directories removed at the end, also on failure or Ctrl-C.
 *
 * With the defaults this takes about 6 minutes (2 scenarios × (4 × 20 s + 4 × 15 s) of measurement, plus
 * warm-ups and drains); `--scenario get-model --mode rate` alone takes under 2.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon, { type Client, type Instance, type Options, type Request, type Result } from 'autocannon';
import { QUEUES, WORK_QUEUES } from '../src/bus/topology.ts';
import {
  type BrokerInfo,
  type BusEnvironment,
  brokerAlarms,
  Environments,
  purgeQueues,
  queueDepths,
  waitForBroker,
} from './support/broker.ts';
import {
  type CpuUse,
  cpuSnapshot,
  cpuUse,
  findRabbitmqPid,
  formatCores,
  othersCores,
} from './support/cpu.ts';
import { createDatabase, dropDatabase } from './support/databases.ts';
import {
  commandLine,
  environment,
  environmentText,
  formatDelta,
  formatNumber,
  progress,
  publishResults,
  REPO_ROOT,
  round,
  type Section,
} from './support/report.ts';
import { CONTEXT_WINDOWS, seedModels, TIERS } from './support/seed-models.ts';
import {
  handleSignals,
  interruptible,
  pick,
  positiveInteger,
  runMain,
  sleep,
  stoppable,
  throwIfInterrupted,
  UsageError,
} from './support/settings.ts';
import { distribution, mean, Samples } from './support/stats.ts';

const NAME = 'api-bus';
const FIXTURE = fileURLToPath(new URL('./support/api-server.ts', import.meta.url));
/** What the benchmark is judged against: at the fixed rate, p99 with the bus on − off. */
const GOAL = { mode: 'rate', maxP99OverheadMs: 0.2 } as const;

const HELP = `usage: npm run bench:api-bus -- [options]

  --rate <n>              fixed arrival rate of the rate mode, req/s   (BENCH_RATE, default 1000)
  --rate-duration <s>     measured seconds per rate-mode run           (BENCH_RATE_DURATION, default 20)
  --rate-connections <n>  connections sharing that rate                (BENCH_RATE_CONNECTIONS, default 10)
  --max-connections <n>   connections of the max mode                  (BENCH_MAX_CONNECTIONS, default 50)
  --max-duration <s>      measured seconds per max-mode run            (BENCH_MAX_DURATION, default 15)
  --warmup <s>            unmeasured seconds per process and scenario  (BENCH_WARMUP, default 3; 0 = none)
  --rounds <n>            on/off pairs per scenario and mode           (BENCH_ROUNDS, default 2)
  --models <n>            models seeded in each database               (BENCH_MODELS, default 1000)
  --scenario <name>       run only this scenario; repeatable           (BENCH_SCENARIOS, comma-separated)
                          one of: ${Object.keys({ 'get-model': 0, mixed: 0 }).join(', ')}
  --mode <name>           run only this mode; repeatable: rate, max    (BENCH_MODES, comma-separated)
  --drain-timeout <s>     wait for the bus-on process to publish all   (BENCH_DRAIN_TIMEOUT, default 60)
  --server-cpu-prof <dir> run both servers under node --cpu-prof, profiles written to <dir>
                                                                       (BENCH_SERVER_CPU_PROF)
  --pg-url <url>          PostgreSQL server to create the databases on
                                                   (BENCH_PG_URL, default postgres://root@127.0.0.1:5432)
`;

type ScenarioName = 'get-model' | 'mixed';
type Mode = 'rate' | 'max';
type Bus = 'on' | 'off';

interface Settings {
  rate: number;
  rateDurationS: number;
  rateConnections: number;
  maxConnections: number;
  maxDurationS: number;
  warmupS: number;
  rounds: number;
  models: number;
  scenarios: ScenarioName[];
  modes: Mode[];
  drainTimeoutS: number;
  serverCpuProfDir: string | undefined;
  pgServerUrl: string;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string' },
      'rate-duration': { type: 'string' },
      'rate-connections': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-duration': { type: 'string' },
      warmup: { type: 'string' },
      rounds: { type: 'string' },
      models: { type: 'string' },
      scenario: { type: 'string', multiple: true },
      mode: { type: 'string', multiple: true },
      'drain-timeout': { type: 'string' },
      'server-cpu-prof': { type: 'string' },
      'pg-url': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const list = <T extends string>(
    flag: string[] | undefined,
    variable: string,
    all: readonly T[],
    what: string,
  ) => {
    const names = flag ?? (process.env[variable] ? (process.env[variable] as string).split(',') : [...all]);
    return names.map((name) => {
      if (!(all as readonly string[]).includes(name)) {
        throw new UsageError(`unknown ${what} '${name}'; one of ${all.join(', ')}`);
      }
      return name as T;
    });
  };
  return {
    rate: positiveInteger('--rate', pick(values.rate, 'BENCH_RATE', '1000')),
    rateDurationS: positiveInteger(
      '--rate-duration',
      pick(values['rate-duration'], 'BENCH_RATE_DURATION', '20'),
    ),
    rateConnections: positiveInteger(
      '--rate-connections',
      pick(values['rate-connections'], 'BENCH_RATE_CONNECTIONS', '10'),
    ),
    maxConnections: positiveInteger(
      '--max-connections',
      pick(values['max-connections'], 'BENCH_MAX_CONNECTIONS', '50'),
    ),
    maxDurationS: positiveInteger('--max-duration', pick(values['max-duration'], 'BENCH_MAX_DURATION', '15')),
    warmupS: positiveInteger('--warmup', pick(values.warmup, 'BENCH_WARMUP', '3'), true),
    rounds: positiveInteger('--rounds', pick(values.rounds, 'BENCH_ROUNDS', '2')),
    models: positiveInteger('--models', pick(values.models, 'BENCH_MODELS', '1000')),
    scenarios: list<ScenarioName>(values.scenario, 'BENCH_SCENARIOS', ['get-model', 'mixed'], 'scenario'),
    modes: list<Mode>(values.mode, 'BENCH_MODES', ['rate', 'max'], 'mode'),
    drainTimeoutS: positiveInteger(
      '--drain-timeout',
      pick(values['drain-timeout'], 'BENCH_DRAIN_TIMEOUT', '60'),
    ),
    serverCpuProfDir: values['server-cpu-prof'] ?? (process.env.BENCH_SERVER_CPU_PROF || undefined),
    pgServerUrl: pick(values['pg-url'], 'BENCH_PG_URL', 'postgres://root@127.0.0.1:5432').replace(/\/+$/, ''),
  };
}

// ---------------------------------------------------------------------------------------------------
// The API processes

interface ServerHandle {
  bus: Bus;
  child: ChildProcess;
  url: string;
  key: string;
  /** Log lines at warn or above, and anything not JSON on stderr. */
  warnings: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const READY_TIMEOUT_MS = 60_000;

async function startServer(
  bus: Bus,
  env: Record<string, string>,
  cpuProfDir: string | undefined,
): Promise<ServerHandle> {
  // A directory per server: the tsx loader's worker thread writes a profile of its own beside the main one.
  const profiling =
    cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${path.join(cpuProfDir, `bus-${bus}`)}`];
  const child = spawn(process.execPath, [...profiling, '--import', 'tsx', FIXTURE], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    // stdin stays open: the fixture shuts down when it closes, so it never outlives this process.
    // An IPC channel for the event-loop delay figures.
    stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
    // Its own process group: a terminal's Ctrl-C reaches only the benchmark, which stops it with SIGTERM.
    detached: true,
  });
  const killOnExit = () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      process.removeListener('exit', killOnExit);
      resolve({ code, signal });
    });
  });
  const warnings: string[] = [];
  const stderrTail: string[] = [];
  let announce: ((line: { port: number; key: string }) => void) | undefined;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      const entry = JSON.parse(line) as { fixture?: string; port?: number; key?: string };
      if (entry.fixture === 'listening' && typeof entry.port === 'number' && typeof entry.key === 'string') {
        announce?.({ port: entry.port, key: entry.key });
        return;
      }
    } catch {
      // Not the announcement.
    }
    warnings.push(line);
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 20) stderrTail.shift();
    let level = 50;
    try {
      level = (JSON.parse(line) as { level?: number }).level ?? 50;
    } catch {
      // Not JSON: counts as a warning.
    }
    if (level >= 40) {
      warnings.push(line);
      process.stderr.write(`[server ${bus}] ${line}\n`);
    }
  });
  const ready = new Promise<{ port: number; key: string }>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(new Error(`bus-${bus} server did not announce itself within ${READY_TIMEOUT_MS / 1000} s`)),
      READY_TIMEOUT_MS,
    );
    announce = (line) => {
      clearTimeout(timer);
      resolve(line);
    };
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(
          `bus-${bus} server exited before it was ready (code ${code}, signal ${signal}):\n${stderrTail.join('\n')}`,
        ),
      );
    });
  });
  const handle = { bus, child, warnings, exited, url: '', key: '' };
  try {
    const { port, key } = await interruptible(ready);
    return { ...handle, url: `http://127.0.0.1:${port}`, key };
  } catch (error) {
    await stopServer(handle);
    throw error;
  }
}

interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  clean: boolean;
  stopMs: number;
}

/** SIGTERM, then the graceful shutdown; SIGKILL after 30 s. */
async function stopServer(server: Pick<ServerHandle, 'child' | 'exited'>): Promise<ServerExit> {
  const started = Date.now();
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, 30_000);
  const { code, signal } = await server.exited;
  clearTimeout(timer);
  return { code, signal, clean: code === 0 && !killed, stopMs: Date.now() - started };
}

interface Health {
  publisher: {
    state: string;
    confirmed: number;
    resent: number;
    nacked: number;
    returned: number;
    connects: number;
  } | null;
  events: { emitted: number; dropped: Record<string, number>; unpublished: number } | null;
}

interface LoopDelay {
  mean: number;
  p50: number;
  p99: number;
  max: number;
}

/** The server's event-loop delay since the previous call (ms), or null if it does not answer in time. */
function loopDelay(server: ServerHandle): Promise<LoopDelay | null> {
  const { child } = server;
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

async function health(server: ServerHandle): Promise<Health> {
  const response = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(5000) });
  if (response.status !== 200) throw new Error(`GET /health of bus-${server.bus}: HTTP ${response.status}`);
  return (await response.json()) as Health;
}

// ---------------------------------------------------------------------------------------------------
// Seed data and scenarios (the seed is bench/registry-api.ts's)

async function seed(server: ServerHandle, count: number): Promise<string[]> {
  return seedModels(server.url, server.key, count, { throwIfInterrupted, interruptible });
}

const FILTER_QUERIES = [
  '/models?limit=50',
  '/models?vendor_id=Anthropic&is_active=true&limit=20',
  '/models?capability_tier=Tier_1&function_call_support=true&sort=-context_window&limit=50',
  '/models?min_context_window=128000&max_cost_in_per_mil=5&sort=cost_in_per_mil&limit=100',
];

interface ScenarioContext {
  modelIds: string[];
  /** Unique per process and benchmark run, so created model ids never collide. */
  runTag: string;
  /** Models created so far, in this process's database. */
  created: { next: number };
  updated: { next: number };
}

interface Scenario {
  label: string;
  description: string;
  /** Status codes that are part of the scenario; any other counts as a problem. */
  expected: readonly number[];
  /** Each connection's sequence, given its index among `connections`. */
  requests: (context: ScenarioContext, client: number, connections: number) => Request[];
}

const getPath = (id: string) => `/models/${encodeURIComponent(id)}`;

/** The seeded ids, starting at this connection's share, so connections do not ask for the same id at once. */
function rotated(ids: string[], client: number, connections: number): string[] {
  const offset = Math.floor(((client % connections) * ids.length) / connections);
  return [...ids.slice(offset), ...ids.slice(0, offset)];
}

const SCENARIOS: Record<ScenarioName, Scenario> = {
  'get-model': {
    label: 'GET /models/:id',
    description: 'GET /models/:id over every seeded id (model.queried events)',
    expected: [200],
    requests: ({ modelIds }, client, connections) =>
      rotated(modelIds, client, connections).map((id) => ({ method: 'GET', path: getPath(id) })),
  },
  mixed: {
    label: 'mix',
    description:
      'per 20 requests: 13 GET /models/:id, 4 filters (GET /models?…), 1 GET of a missing id (404 → api.error), 1 POST /models, 1 PATCH /models/:id',
    expected: [200, 201, 404],
    requests: (context, client, connections) => {
      const ids = rotated(context.modelIds, client, connections);
      const sequence: Request[] = [];
      for (let i = 0; i < ids.length; i += 13) {
        const block = ids.slice(i, i + 13);
        if (block.length < 13) break;
        for (const [k, id] of block.entries()) {
          sequence.push({ method: 'GET', path: getPath(id) });
          if (k % 3 === 2) sequence.push({ method: 'GET', path: FILTER_QUERIES[(i + k) % 4] as string });
        }
        sequence.push({ method: 'GET', path: getPath(`missing/bench-${client}-${i}`) });
        sequence.push({
          method: 'POST',
          path: '/models',
          headers: { 'content-type': 'application/json' },
          // setupRequest, not idReplacement (see bench/registry-api.ts): the body is built, then measured.
          setupRequest: (request) => {
            const n = context.created.next++;
            request.body = JSON.stringify({
              model_id: `bench-${context.runTag}/created-${n}`,
              vendor_id: 'BenchVendor',
              capability_tier: TIERS[n % TIERS.length],
              context_window: CONTEXT_WINDOWS[n % CONTEXT_WINDOWS.length],
              cost_in_per_mil: 1.5,
              cost_out_per_mil: 6,
              function_call_support: n % 2 === 0,
            });
            return request;
          },
        });
        const target = block[5] as string;
        sequence.push({
          method: 'PATCH',
          path: getPath(target),
          headers: { 'content-type': 'application/json' },
          setupRequest: (request) => {
            const n = context.updated.next++;
            request.body = JSON.stringify({
              cost_in_per_mil: Math.round((1 + (n % 500) * 0.01) * 100) / 100,
            });
            return request;
          },
        });
      }
      return sequence;
    },
  },
};

// ---------------------------------------------------------------------------------------------------
// Runs

interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
  mean: number;
}

interface RunSummary {
  scenario: ScenarioName;
  mode: Mode;
  bus: Bus;
  round: number;
  connections: number;
  targetRate: number | null;
  durationS: number;
  requestsPerSec: number;
  totalResponses: number;
  /** Every response's time as autocannon measured it (float ms), exact percentiles. */
  latencyMs: LatencySummary;
  /** autocannon's histogram: whole ms; at a fixed rate, corrected for coordinated omission. */
  autocannonLatencyMs: LatencySummary;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  unexpected: number;
  cpu: CpuUse;
  /** The server's event-loop delay during the run (ms): what waited for the loop, e.g. behind the publisher. */
  loopDelayMs: LoopDelay | null;
  /** Bus-on runs: what GET /health said once every event was confirmed. */
  bus_check: BusCheck | null;
}

interface BusCheck {
  emittedInRun: number;
  drainedMs: number;
  unpublished: number;
  dropped: Record<string, number>;
  confirmedTotal: number;
  emittedTotal: number;
  /** Depth of metrics.updates (every event goes there) at the check, before the purge. */
  metricsQueueDepth: number | null;
  /** Events emitted since the previous purge, at the health snapshot. */
  expectedDepth: number;
  depthOk: boolean;
  publisherState: string;
  connects: number;
  resent: number;
  nacked: number;
  returned: number;
}

function statusCounts(result: Result): Record<string, number> {
  return Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]));
}

async function measure(options: Options, onResponse?: (ms: number) => void): Promise<Result> {
  const instance: Instance = autocannon(options);
  if (onResponse !== undefined) {
    instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) =>
      onResponse(responseTime),
    );
  }
  const result = await stoppable(
    () => instance.stop(),
    async () => await instance,
  );
  throwIfInterrupted();
  return result;
}

function loadOptions(
  server: ServerHandle,
  scenario: Scenario,
  context: ScenarioContext,
  connections: number,
  durationS: number,
  title: string,
  rate: number | undefined,
): Options {
  let client = 0;
  return {
    url: server.url,
    title,
    connections,
    duration: durationS,
    timeout: 10,
    headers: { 'x-api-key': server.key },
    requests: scenario.requests(context, 0, connections),
    setupClient: (c: Client) => c.setRequests(scenario.requests(context, client++, connections)),
    ...(rate === undefined ? {} : { overallRate: rate }),
  };
}

async function runOnce(
  server: ServerHandle,
  settings: Settings,
  scenarioName: ScenarioName,
  mode: Mode,
  roundNumber: number,
  context: ScenarioContext,
  rabbitPid: number | undefined,
): Promise<Omit<RunSummary, 'bus_check'>> {
  const scenario = SCENARIOS[scenarioName];
  const connections = mode === 'rate' ? settings.rateConnections : settings.maxConnections;
  const durationS = mode === 'rate' ? settings.rateDurationS : settings.maxDurationS;
  const rate = mode === 'rate' ? settings.rate : undefined;
  const samples = new Samples(mode === 'rate' ? settings.rate * durationS + 1000 : 200_000);
  await loopDelay(server);
  const before = cpuSnapshot({ server: server.child.pid, rabbitmq: rabbitPid });
  const result = await measure(
    loadOptions(
      server,
      scenario,
      context,
      connections,
      durationS,
      `${scenarioName} ${mode} ${server.bus}`,
      rate,
    ),
    (ms) => samples.push(ms),
  );
  const after = cpuSnapshot({ server: server.child.pid, rabbitmq: rabbitPid });
  const delay = await loopDelay(server);
  const exact = distribution(samples.sorted(), 1, 3);
  const statusCodes = statusCounts(result);
  const unexpected = Object.entries(statusCodes)
    .filter(([code]) => !scenario.expected.includes(Number(code)))
    .reduce((sum, [, count]) => sum + count, 0);
  const { latency } = result;
  return {
    scenario: scenarioName,
    mode,
    bus: server.bus,
    round: roundNumber,
    connections,
    targetRate: rate ?? null,
    durationS: result.duration,
    requestsPerSec: round(exact.count / result.duration, 1),
    totalResponses: exact.count,
    latencyMs: {
      p50: exact.p50,
      p90: exact.p90,
      p99: exact.p99,
      p99_9: exact.p99_9,
      max: exact.max,
      mean: exact.mean,
    },
    autocannonLatencyMs: {
      p50: latency.p50,
      p90: latency.p90,
      p99: latency.p99,
      p99_9: latency.p99_9,
      max: latency.max,
      mean: latency.mean,
    },
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
    unexpected,
    cpu: cpuUse(before, after),
    loopDelayMs: delay,
  };
}

/**
 * Waits until the bus-on process has every event confirmed, checks the queue against the events emitted
 * since the last purge, and purges. `baseline` is the emitted count at the previous purge; returns the new one.
 */
async function drainAndCheck(
  server: ServerHandle,
  busEnv: BusEnvironment,
  settings: Settings,
  emittedBefore: number,
  baseline: number,
): Promise<{ check: BusCheck; baseline: number }> {
  const started = Date.now();
  let last = await health(server);
  while ((last.events?.unpublished ?? 0) > 0) {
    if (Date.now() - started > settings.drainTimeoutS * 1000) {
      throw new Error(
        `bus-on process still has ${last.events?.unpublished} events unpublished after ${settings.drainTimeoutS} s`,
      );
    }
    await sleep(200);
    last = await health(server);
  }
  const drainedMs = Date.now() - started;
  const events = last.events as NonNullable<Health['events']>;
  const publisher = last.publisher as NonNullable<Health['publisher']>;
  let depth: number | null = null;
  try {
    depth = (await queueDepths(busEnv.env.RABBITMQ_URL, [QUEUES.metrics]))[QUEUES.metrics] ?? null;
  } catch (error) {
    progress(`  could not read the depth of ${QUEUES.metrics}: ${String(error)}`);
  }
  const expectedDepth = events.emitted - baseline;
  // The last GET /health emits an event of its own after its snapshot, which may already be in the queue.
  const depthOk = depth === null || (depth >= expectedDepth && depth <= expectedDepth + 1);
  await purgeQueues(busEnv.env.RABBITMQ_URL, [...WORK_QUEUES, QUEUES.deadLetters]);
  return {
    check: {
      emittedInRun: events.emitted - emittedBefore,
      drainedMs,
      unpublished: events.unpublished,
      dropped: events.dropped,
      confirmedTotal: publisher.confirmed,
      emittedTotal: events.emitted,
      metricsQueueDepth: depth,
      expectedDepth,
      depthOk,
      publisherState: publisher.state,
      connects: publisher.connects,
      resent: publisher.resent,
      nacked: publisher.nacked,
      returned: publisher.returned,
    },
    // Events emitted after the snapshot (that health request's own) may have been purged or not: ± 1.
    baseline: events.emitted,
  };
}

// ---------------------------------------------------------------------------------------------------
// Reporting

const ms = (value: number, digits = 2) => formatNumber(value, digits);

interface Comparison {
  scenario: ScenarioName;
  mode: Mode;
  on: { requestsPerSec: number; p50: number; p99: number; serverCores: number | null; runs: number };
  off: { requestsPerSec: number; p50: number; p99: number; serverCores: number | null; runs: number };
  p99OverheadMs: number;
  p50OverheadMs: number;
  requestsPerSecChange: number;
  /** p99 on − off of each round, in run order. */
  p99OverheadPerRoundMs: number[];
}

function compare(runs: RunSummary[]): Comparison[] {
  const keys = [...new Set(runs.map((run) => `${run.scenario}|${run.mode}`))];
  return keys.map((key) => {
    const [scenario, mode] = key.split('|') as [ScenarioName, Mode];
    const of = (bus: Bus) =>
      runs.filter((run) => run.scenario === scenario && run.mode === mode && run.bus === bus);
    const summary = (bus: Bus) => {
      const selected = of(bus);
      const cores = selected.map((run) => run.cpu.processes.server?.cores).filter((c) => c !== undefined);
      return {
        requestsPerSec: round(mean(selected.map((run) => run.requestsPerSec)), 1),
        p50: round(mean(selected.map((run) => run.latencyMs.p50)), 3),
        p99: round(mean(selected.map((run) => run.latencyMs.p99)), 3),
        serverCores: cores.length === 0 ? null : round(mean(cores as number[]), 2),
        runs: selected.length,
      };
    };
    const on = summary('on');
    const off = summary('off');
    const onRuns = of('on');
    const offRuns = of('off');
    return {
      scenario,
      mode,
      on,
      off,
      p99OverheadMs: round(on.p99 - off.p99, 3),
      p50OverheadMs: round(on.p50 - off.p50, 3),
      requestsPerSecChange: round(on.requestsPerSec / off.requestsPerSec - 1, 4),
      p99OverheadPerRoundMs: onRuns.map((run, i) =>
        round(run.latencyMs.p99 - (offRuns[i]?.latencyMs.p99 ?? Number.NaN), 3),
      ),
    };
  });
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const settings = readSettings();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const tag = randomBytes(5).toString('hex');
  const databases: Record<Bus, string> = { on: `tb_bench_${tag}_on`, off: `tb_bench_${tag}_off` };
  const created: string[] = [];
  const servers: Partial<Record<Bus, ServerHandle>> = {};
  const exits: Partial<Record<Bus, ServerExit>> = {};
  const runs: RunSummary[] = [];
  const offDataDir = mkdtempSync(path.join(os.tmpdir(), 'tb-bench-off-'));
  let broker: BrokerInfo | undefined;
  let finalHealth: Health | undefined;
  let alarmsAfter: string[] = [];
  let failure: unknown;

  try {
    broker = await waitForBroker();
    const rabbitPid = findRabbitmqPid();
    const busEnv = await environments.create();
    for (const bus of ['on', 'off'] as const) {
      await createDatabase(settings.pgServerUrl, databases[bus]);
      created.push(databases[bus]);
    }
    progress(`created databases ${databases.on} and ${databases.off}, vhost ${busEnv.vhost.vhost}`);
    const common = {
      HOST: '127.0.0.1',
      PORT: '0',
      RATE_LIMIT_PER_MINUTE: '0',
      LOG_LEVEL: 'warn',
      BOOTSTRAP_ADMIN_KEY: 'false',
      RABBITMQ_URL: busEnv.env.RABBITMQ_URL,
    };
    const [on, off] = await Promise.all([
      startServer(
        'on',
        {
          ...common,
          TELEMETRY_ENABLED: 'true',
          DATA_DIR: busEnv.env.DATA_DIR,
          DATABASE_URL: `${settings.pgServerUrl}/${databases.on}`,
        },
        settings.serverCpuProfDir,
      ),
      startServer(
        'off',
        {
          ...common,
          TELEMETRY_ENABLED: 'false',
          DATA_DIR: offDataDir,
          DATABASE_URL: `${settings.pgServerUrl}/${databases.off}`,
        },
        settings.serverCpuProfDir,
      ),
    ]);
    servers.on = on;
    servers.off = off;
    progress(
      `bus-on server pid ${on.child.pid} at ${on.url}; bus-off server pid ${off.child.pid} at ${off.url}`,
    );
    const onHealth = await health(on);
    const offHealth = await health(off);
    if (onHealth.events === null || offHealth.events !== null) {
      throw new Error(
        'the bus-on process must report events and the bus-off one none: check TELEMETRY_ENABLED',
      );
    }

    const seedStarted = Date.now();
    const [onIds, offIds] = await Promise.all([seed(on, settings.models), seed(off, settings.models)]);
    progress(
      `seeded ${onIds.length} models in each database in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`,
    );
    const contexts: Record<Bus, ScenarioContext> = {
      on: { modelIds: onIds, runTag: `${tag}on`, created: { next: 0 }, updated: { next: 0 } },
      off: { modelIds: offIds, runTag: `${tag}off`, created: { next: 0 }, updated: { next: 0 } },
    };

    // Whatever seeding and warm-ups emitted is published and purged before the first measured run.
    let baseline = 0;
    const settle = async () => {
      const drained = await drainAndCheck(on, busEnv, settings, 0, baseline);
      baseline = drained.baseline;
      return drained.check;
    };
    await settle();

    for (const scenarioName of settings.scenarios) {
      const scenario = SCENARIOS[scenarioName];
      if (settings.warmupS > 0) {
        for (const server of [on, off]) {
          progress(
            `${scenario.label}: warm-up of bus-${server.bus}, ${settings.warmupS} s at ${settings.maxConnections} connections`,
          );
          await measure(
            loadOptions(
              server,
              scenario,
              contexts[server.bus],
              settings.maxConnections,
              settings.warmupS,
              'warm-up',
              undefined,
            ),
          );
        }
        await settle();
      }
      for (const mode of settings.modes) {
        for (let roundNumber = 1; roundNumber <= settings.rounds; roundNumber++) {
          for (const server of [on, off]) {
            await waitForBroker();
            const what = `${scenario.label}, ${mode === 'rate' ? `${settings.rate} req/s` : `max (${settings.maxConnections} connections)`}, bus ${server.bus} #${roundNumber}`;
            progress(what);
            const emittedBefore = server.bus === 'on' ? ((await health(on)).events?.emitted ?? 0) : 0;
            const run = await runOnce(
              server,
              settings,
              scenarioName,
              mode,
              roundNumber,
              contexts[server.bus],
              rabbitPid,
            );
            let busCheck: BusCheck | null = null;
            if (server.bus === 'on') {
              const drained = await drainAndCheck(on, busEnv, settings, emittedBefore, baseline);
              baseline = drained.baseline;
              busCheck = drained.check;
            }
            runs.push({ ...run, bus_check: busCheck });
            progress(
              `  ${formatNumber(run.requestsPerSec)} req/s, p50 ${ms(run.latencyMs.p50)} ms, p99 ${ms(run.latencyMs.p99)} ms, server ${formatCores(run.cpu.processes.server)} cores, RabbitMQ ${formatCores(run.cpu.processes.rabbitmq)}${busCheck === null ? '' : `; ${formatNumber(busCheck.emittedInRun)} events, all confirmed ${(busCheck.drainedMs / 1000).toFixed(1)} s after the run`}`,
            );
          }
        }
      }
    }
    finalHealth = await health(on);
    alarmsAfter = await brokerAlarms();
  } catch (error) {
    failure = error;
  } finally {
    for (const bus of ['on', 'off'] as const) {
      const server = servers[bus];
      if (server === undefined) continue;
      progress(`stopping the bus-${bus} server (SIGTERM)`);
      exits[bus] = await stopServer(server);
    }
    for (const name of created) {
      try {
        await dropDatabase(settings.pgServerUrl, name);
      } catch (error) {
        process.stderr.write(`[bench] could not drop database ${name}: ${String(error)}\n`);
      }
    }
    if (created.length > 0) progress(`dropped databases ${created.join(', ')}`);
    await environments.removeAll();
    rmSync(offDataDir, { recursive: true, force: true });
  }
  if (failure !== undefined) throw failure;

  // ---------------------------------------------------------------------------------------------------
  // Report

  const comparisons = compare(runs);
  const goalRows = comparisons.filter((c) => c.mode === GOAL.mode);
  const met = goalRows.length > 0 && goalRows.every((c) => c.p99OverheadMs < GOAL.maxP99OverheadMs);
  const modeLabel = (mode: Mode) =>
    mode === 'rate' ? `${formatNumber(settings.rate)} req/s` : `max, ${settings.maxConnections} conn`;
  const sections: Section[] = [
    {
      title: 'Runs, in the order they ran (latency: every response, exact, ms)',
      columns: [
        'scenario',
        'load',
        'bus',
        'req/s',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'p99.9 ms',
        'autocannon p50/p99 ms',
        'server loop delay p99/max ms',
        'server cores',
        'RabbitMQ cores',
        'others cores',
        'problems',
      ],
      rows: runs.map((run) => [
        SCENARIOS[run.scenario].label,
        modeLabel(run.mode),
        `${run.bus} #${run.round}`,
        formatNumber(run.requestsPerSec),
        ms(run.latencyMs.p50, 3),
        ms(run.latencyMs.p90, 3),
        ms(run.latencyMs.p99, 3),
        ms(run.latencyMs.p99_9, 3),
        `${run.autocannonLatencyMs.p50}/${run.autocannonLatencyMs.p99}`,
        run.loopDelayMs === null ? 'n/a' : `${ms(run.loopDelayMs.p99, 1)}/${ms(run.loopDelayMs.max, 1)}`,
        formatCores(run.cpu.processes.server),
        formatCores(run.cpu.processes.rabbitmq),
        othersCores(run.cpu, env.cpus),
        String(run.errors + run.unexpected),
      ]),
    },
    {
      title: 'Bus on − off (means of the rounds)',
      columns: [
        'scenario',
        'load',
        'req/s on',
        'req/s off',
        'req/s change',
        'p50 on',
        'p50 off',
        'p99 on',
        'p99 off',
        'p99 overhead ms',
        'per round',
        'server cores on/off',
      ],
      rows: comparisons.map((c) => [
        SCENARIOS[c.scenario].label,
        modeLabel(c.mode),
        formatNumber(c.on.requestsPerSec),
        formatNumber(c.off.requestsPerSec),
        `${formatDelta(100 * c.requestsPerSecChange, 1)}%`,
        ms(c.on.p50, 3),
        ms(c.off.p50, 3),
        ms(c.on.p99, 3),
        ms(c.off.p99, 3),
        formatDelta(c.p99OverheadMs, 3),
        c.p99OverheadPerRoundMs.map((value) => formatDelta(value, 3)).join(', '),
        `${c.on.serverCores?.toFixed(2) ?? 'n/a'}/${c.off.serverCores?.toFixed(2) ?? 'n/a'}`,
      ]),
    },
    {
      title: 'Bus-on runs: events, checked on GET /health once all were confirmed',
      columns: [
        'scenario',
        'load',
        'run',
        'emitted',
        'confirmed after',
        'unpublished',
        'dropped',
        'metrics.updates depth',
        'publisher',
      ],
      rows: runs
        .filter((run) => run.bus_check !== null)
        .map((run) => {
          const check = run.bus_check as BusCheck;
          return [
            SCENARIOS[run.scenario].label,
            modeLabel(run.mode),
            `#${run.round}`,
            formatNumber(check.emittedInRun),
            `${(check.drainedMs / 1000).toFixed(1)} s`,
            String(check.unpublished),
            Object.values(check.dropped).every((n) => n === 0) ? '0' : JSON.stringify(check.dropped),
            `${check.metricsQueueDepth === null ? 'n/a' : formatNumber(check.metricsQueueDepth)} (${check.depthOk ? 'ok' : `MISMATCH, expected ${check.expectedDepth}`})`,
            `${check.publisherState}, ${check.connects} connect(s)`,
          ];
        }),
    },
  ];
  const verdicts = [
    `Goal (p99 with the bus on − off < ${GOAL.maxP99OverheadMs} ms at ${formatNumber(settings.rate)} req/s): ${goalRows.length === 0 ? 'not measured' : met ? 'MET' : 'NOT MET'} — ${goalRows.map((c) => `${SCENARIOS[c.scenario].label}: ${formatDelta(c.p99OverheadMs, 3)} ms (p99 ${ms(c.on.p99, 3)} vs ${ms(c.off.p99, 3)} ms)`).join('; ')}.`,
  ];
  const totalProblems = runs.reduce((sum, run) => sum + run.errors + run.unexpected, 0);
  const busChecks = runs.flatMap((run) => (run.bus_check === null ? [] : [run.bus_check]));
  const allConfirmed = busChecks.every(
    (check) => check.unpublished === 0 && Object.values(check.dropped).every((n) => n === 0) && check.depthOk,
  );
  const warnings = (servers.on?.warnings.length ?? 0) + (servers.off?.warnings.length ?? 0);
  const settingsText = [
    `rate mode: ${formatNumber(settings.rate)} req/s (autocannon overallRate) over ${settings.rateConnections} connections for ${settings.rateDurationS} s; max mode: ${settings.maxConnections} connections for ${settings.maxDurationS} s; ${settings.rounds} rounds of on, off per scenario and mode; ${settings.warmupS} s warm-up per process and scenario; ${settings.models} models seeded per database`,
    `rate mode pacing: autocannon's overallRate gives each connection a quota per second (node_modules/autocannon/lib/httpClient.js: it sends its share back to back, then waits for the next second), so ${formatNumber(settings.rate)} req/s arrive as bursts of ${settings.rateConnections} connections at full speed, not evenly spaced: latencies include that queueing, for bus on and off alike`,
    `scenarios: ${settings.scenarios.map((name) => `${SCENARIOS[name].label} = ${SCENARIOS[name].description}`).join('; ')}`,
    'servers: bench/support/api-server.ts child processes (the service as `telemetry-bus start` builds it), RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn, otherwise defaults; identical but for TELEMETRY_ENABLED; own databases; the bus-on one with a vhost of its own (quorum queues, no consumers; drained and purged after each run)',
    ...(settings.serverCpuProfDir === undefined
      ? []
      : [
          `both servers ran under node --cpu-prof (profiles in ${settings.serverCpuProfDir}): slower than without`,
        ]),
    'server loop delay: perf_hooks.monitorEventLoopDelay in the server (1 ms resolution, so ≈ 1 ms when idle): how long ready work waited for the event loop during the run',
    'latency: every response time autocannon measured (float ms), exact percentiles; "autocannon p50/p99" is its own histogram (whole ms, corrected for coordinated omission at a fixed rate); load generator in this process, same machine',
    environmentText(env, `${broker === undefined ? '' : `, RabbitMQ ${broker.version}`}`),
  ];
  const checks = [
    `errors and unexpected status codes over all runs: ${totalProblems}${totalProblems === 0 ? '' : ' (must be 0)'}`,
    `bus-on runs: every event confirmed, none dropped, queue depth = events emitted: ${allConfirmed ? 'yes' : 'NO'} (${formatNumber(busChecks.reduce((sum, check) => sum + check.emittedInRun, 0))} events in the measured runs)`,
    finalHealth?.events && finalHealth.publisher
      ? `bus-on process at the end: emitted ${formatNumber(finalHealth.events.emitted)}, confirmed ${formatNumber(finalHealth.publisher.confirmed)}, unpublished ${finalHealth.events.unpublished}, dropped ${JSON.stringify(finalHealth.events.dropped)}, connects ${finalHealth.publisher.connects}, resent ${finalHealth.publisher.resent}, nacked ${finalHealth.publisher.nacked}, returned ${finalHealth.publisher.returned}`
      : 'bus-on process at the end: n/a',
    `server warnings/errors logged: ${warnings}`,
    `server stops: ${(['on', 'off'] as const).map((bus) => `bus-${bus} exit code ${exits[bus]?.code ?? 'n/a'} after ${exits[bus]?.stopMs ?? 'n/a'} ms${exits[bus]?.clean ? '' : ' (NOT CLEAN)'}`).join(', ')}`,
    `broker alarms after the runs: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
  ];
  await publishResults({
    name: NAME,
    title: 'API with the telemetry bus on vs off',
    startedAt,
    sections,
    verdicts,
    notes: { settings: settingsText, checks },
    command: commandLine('bench:api-bus'),
    report: {
      benchmark: NAME,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      settings: { ...settings, filterQueries: FILTER_QUERIES },
      environment: { ...env, rabbitmq: broker ?? null },
      goal: { ...GOAL, met, comparisons: goalRows },
      comparisons,
      runs,
      finalHealth: finalHealth ?? null,
      serverWarnings: { on: servers.on?.warnings ?? [], off: servers.off?.warnings ?? [] },
      serverExits: exits,
      brokerAlarmsAfter: alarmsAfter,
    },
  });
  const healthy =
    totalProblems === 0 && allConfirmed && exits.on?.clean === true && exits.off?.clean === true;
  return healthy ? 0 : 1;
}

runMain(NAME, HELP, main);
