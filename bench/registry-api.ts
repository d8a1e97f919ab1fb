/**
 * Load benchmark of the Model Registry API.
 *
 *   npm run bench:registry -- [--duration 10] [--warmup 3] [--connections 10,50] [--models 1000]
 *                             [--scenario get-model] [--server-cpu-prof DIR]
 *
 * Every option also reads an environment variable (BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS,
 * BENCH_MODELS, BENCH_SCENARIOS, BENCH_SERVER_CPU_PROF, BENCH_PG_URL); the flag wins.
 *
 * It creates a throw-away database, starts the API as a child process (so autocannon does not share its
 * event loop), seeds models over HTTP, runs each scenario at each connection count with autocannon, and
 * always stops the server and drops the database, also on Ctrl-C. Percentiles are autocannon's (HDR
 * histograms); nothing here computes one. Results go to bench/results/.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon, { type Client, type Instance, type Options, type Request, type Result } from 'autocannon';
import pg from 'pg';
import { formatNumber, gitCommit } from './support/report.ts';
import { CONTEXT_WINDOWS, seedModels, TIERS } from './support/seed-models.ts';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const CLI = fileURLToPath(new URL('../bin/telemetry-bus.js', import.meta.url));

/** What the benchmark is judged against: the single-model read at the higher concurrency. */
const GOAL = { scenario: 'get-model', connections: 50, minRequestsPerSec: 15_000, maxP99Ms: 10 } as const;

// ---------------------------------------------------------------------------------------------------
// Settings

const HELP = `usage: npm run bench:registry -- [options]

  --duration <s>        measured seconds per run            (BENCH_DURATION, default 10)
  --warmup <s>          unmeasured seconds before each run  (BENCH_WARMUP, default 3; 0 = none)
  --connections <list>  comma-separated connection counts   (BENCH_CONNECTIONS, default 10,50)
  --models <n>          models seeded before the runs       (BENCH_MODELS, default 1000)
  --scenario <name>     run only this scenario; repeatable  (BENCH_SCENARIOS, comma-separated)
                        one of: get-model, filter-models, create-model
  --server-cpu-prof <dir>  run the server under node --cpu-prof, profiles written to <dir>
                                                            (BENCH_SERVER_CPU_PROF)
  --pg-url <url>        PostgreSQL server to create the database on
                                                            (BENCH_PG_URL, default postgres://root@127.0.0.1:5432)
`;

interface Settings {
  durationS: number;
  warmupS: number;
  connections: number[];
  models: number;
  scenarios: ScenarioName[];
  serverCpuProfDir: string | undefined;
  pgServerUrl: string;
}

class UsageError extends Error {}

function positiveInteger(name: string, raw: string, allowZero = false): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || (value === 0 && !allowZero)) {
    throw new UsageError(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got '${raw}'`,
    );
  }
  return value;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      models: { type: 'string' },
      scenario: { type: 'string', multiple: true },
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
  const env = process.env;
  const pick = (flag: string | undefined, variable: string, fallback: string): string =>
    flag ?? (env[variable] !== undefined && env[variable] !== '' ? env[variable] : fallback);

  const connections = pick(values.connections, 'BENCH_CONNECTIONS', '10,50')
    .split(',')
    .map((part) => positiveInteger('--connections', part));
  const scenarioNames =
    values.scenario ?? (env.BENCH_SCENARIOS ? env.BENCH_SCENARIOS.split(',') : Object.keys(SCENARIOS));
  const scenarios = scenarioNames.map((name) => {
    if (!(name in SCENARIOS)) {
      throw new UsageError(`unknown scenario '${name}'; one of ${Object.keys(SCENARIOS).join(', ')}`);
    }
    return name as ScenarioName;
  });
  return {
    durationS: positiveInteger('--duration', pick(values.duration, 'BENCH_DURATION', '10')),
    warmupS: positiveInteger('--warmup', pick(values.warmup, 'BENCH_WARMUP', '3'), true),
    connections,
    models: positiveInteger('--models', pick(values.models, 'BENCH_MODELS', '1000')),
    scenarios,
    serverCpuProfDir: values['server-cpu-prof'] ?? (env.BENCH_SERVER_CPU_PROF || undefined),
    pgServerUrl: pick(values['pg-url'], 'BENCH_PG_URL', 'postgres://root@127.0.0.1:5432').replace(/\/+$/, ''),
  };
}

// ---------------------------------------------------------------------------------------------------
// Interruption: Ctrl-C (or SIGTERM) stops the current run and falls through to the cleanup.

class Interrupted extends Error {}

const interruption = new AbortController();
let currentRun: Instance | undefined;

function onSignal(signal: NodeJS.Signals): void {
  if (interruption.signal.aborted) {
    process.stderr.write(`\n${signal} again: exiting without cleanup\n`);
    process.exit(130);
  }
  process.stderr.write(`\n${signal}: stopping, cleaning up (again to exit at once)\n`);
  interruption.abort(new Interrupted(`interrupted by ${signal}`));
  currentRun?.stop();
}

function throwIfInterrupted(): void {
  if (interruption.signal.aborted) throw interruption.signal.reason;
}

/** Settles with `promise`, or rejects as soon as the run is interrupted. */
function interruptible<T>(promise: Promise<T>): Promise<T> {
  throwIfInterrupted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(interruption.signal.reason);
    interruption.signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => interruption.signal.removeEventListener('abort', onAbort));
  });
}

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------------
// The database

async function withAdminClient<T>(serverUrl: string, action: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: `${serverUrl}/postgres`, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await action(client);
  } finally {
    await client.end();
  }
}

async function createDatabase(serverUrl: string, name: string): Promise<string> {
  await withAdminClient(serverUrl, (client) => client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`));
  return `${serverUrl}/${name}`;
}

async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  // FORCE ends any session left behind, so the drop cannot hang on a server that did not exit.
  await withAdminClient(serverUrl, (client) =>
    client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  );
}

async function queryOne<T>(databaseUrl: string, text: string): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query(text)).rows[0] as T;
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------------
// The server under test, as a child process

interface ServerHandle {
  child: ChildProcess;
  url: string;
  adminKey: string;
  /** Log lines at warn or above, and anything on stderr, since start. */
  warnings: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const KEY_PATTERN = /\b(tb_[A-Za-z0-9_-]{43})\b/;
/** The bootstrap banner's `curl … <base url>/models`; the JSON "listening" line is info, hidden at warn. */
const BANNER_URL_PATTERN = /(https?:\/\/\S+?)\/models\b/;
const READY_TIMEOUT_MS = 60_000;

async function startServer(databaseUrl: string, cpuProfDir: string | undefined): Promise<ServerHandle> {
  const nodeArgs = cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`];
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'start'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      HOST: '127.0.0.1',
      PORT: '0',
      RATE_LIMIT_PER_MINUTE: '0',
      LOG_LEVEL: 'warn',
      BOOTSTRAP_ADMIN_KEY: 'true',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a terminal's Ctrl-C reaches only the benchmark, which then stops the server
    // with a single SIGTERM (a second signal would make the server exit 1).
    detached: true,
  });
  // Last resort if the benchmark dies without its cleanup running.
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
  let url: string | undefined;
  let adminKey: string | undefined;
  let announce: (() => void) | undefined;

  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let entry: { level?: number; url?: string; msg?: string } | undefined;
    try {
      entry = JSON.parse(line);
    } catch {
      entry = undefined;
    }
    if (entry !== undefined && typeof entry === 'object' && entry !== null) {
      if (typeof entry.url === 'string') url ??= entry.url;
      if (typeof entry.level === 'number' && entry.level >= 40) {
        warnings.push(line);
        process.stderr.write(`[server] ${line}\n`);
      }
    } else {
      // The bootstrap banner: the key is deliberately never logged, only printed here.
      adminKey ??= KEY_PATTERN.exec(line)?.[1];
      url ??= BANNER_URL_PATTERN.exec(line)?.[1];
    }
    if (url !== undefined && adminKey !== undefined) announce?.();
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    warnings.push(line);
    stderrTail.push(line);
    if (stderrTail.length > 20) stderrTail.shift();
    process.stderr.write(`[server] ${line}\n`);
  });

  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server printed no key and URL within ${READY_TIMEOUT_MS / 1000} s`)),
      READY_TIMEOUT_MS,
    );
    announce = () => {
      clearTimeout(timer);
      resolve();
    };
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(
        new Error(
          `server exited before it was ready (code ${code}, signal ${signal}):\n${stderrTail.join('\n')}`,
        ),
      );
    });
  });
  const handle = { child, warnings, exited, url: '', adminKey: '' };
  try {
    await interruptible(ready);
  } catch (error) {
    await stopServer(handle);
    throw error;
  }
  return { ...handle, url: url as string, adminKey: adminKey as string };
}

interface ServerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Exit code 0 after the one SIGTERM, within the grace period. */
  clean: boolean;
  stopMs: number;
}

/** SIGTERM, then wait for the graceful shutdown (SHUTDOWN_TIMEOUT_MS defaults to 10 s); SIGKILL after 20 s. */
async function stopServer(server: Pick<ServerHandle, 'child' | 'exited'>): Promise<ServerExit> {
  const started = Date.now();
  const { child } = server;
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    child.kill('SIGKILL');
  }, 20_000);
  const { code, signal } = await server.exited;
  clearTimeout(timer);
  return { code, signal, clean: code === 0 && !killed, stopMs: Date.now() - started };
}

// ---------------------------------------------------------------------------------------------------
// Seed data and scenarios

async function seed(server: ServerHandle, count: number): Promise<string[]> {
  return seedModels(server.url, server.adminKey, count, { throwIfInterrupted, interruptible });
}

interface ScenarioContext {
  modelIds: string[];
  /** Unique per benchmark run, so created model ids never collide with seeded or earlier ones. */
  runTag: string;
  /** Models created so far: shared by all create runs (and their warm-ups), so every model_id is new. */
  created: { next: number };
}

interface Scenario {
  /** What the table shows. */
  label: string;
  /** The sequence each connection loops over. */
  requests: (context: ScenarioContext) => Request[];
  /** Adjusts each connection of a run with `connections` connections, e.g. where it starts in the sequence. */
  setupClient?: (context: ScenarioContext, connections: number) => (client: Client) => void;
}

const FILTER_QUERIES = [
  '/models?limit=50',
  '/models?vendor_id=Anthropic&is_active=true&limit=20',
  '/models?capability_tier=Tier_1&function_call_support=true&sort=-context_window&limit=50',
  '/models?min_context_window=128000&max_cost_in_per_mil=5&sort=cost_in_per_mil&limit=100',
];

const SCENARIOS = {
  'get-model': {
    label: 'GET /models/:id',
    // Pre-built requests (no per-request setup cost in the load generator): each connection cycles over
    // every seeded id.
    requests: ({ modelIds }) =>
      modelIds.map((id) => ({ method: 'GET', path: `/models/${encodeURIComponent(id)}` })),
    // ... each from its own offset. Started in lockstep, all connections would ask for the same id at once,
    // and a cold id would be loaded by every one of them; spread out, the warm-up also fills the cache
    // with every id, so the measured run sees the steady state (hits, and a trickle of TTL expiries).
    setupClient: ({ modelIds }, connections) => {
      let index = 0;
      return (client) => {
        const offset = Math.floor(((index++ % connections) * modelIds.length) / connections);
        const rotated = [...modelIds.slice(offset), ...modelIds.slice(0, offset)];
        client.setRequests(
          rotated.map((id) => ({ method: 'GET', path: `/models/${encodeURIComponent(id)}` })),
        );
      };
    },
  },
  'filter-models': {
    label: 'GET /models?…',
    requests: () => FILTER_QUERIES.map((path) => ({ method: 'GET', path })),
  },
  'create-model': {
    label: 'POST /models',
    requests: ({ runTag, created }) => {
      return [
        {
          method: 'POST',
          path: '/models',
          headers: { 'content-type': 'application/json' },
          // setupRequest rather than idReplacement: autocannon 8.0.0 sizes Content-Length for a 33-character
          // `[<id>]` replacement but inserts 24–29 characters (mcollina/autocannon#539), so the server would
          // wait for body bytes that never come. Here the body is built first and measured by autocannon.
          setupRequest: (request) => {
            const n = created.next++;
            request.body = JSON.stringify({
              model_id: `bench-${runTag}/created-${n}`,
              vendor_id: 'BenchVendor',
              capability_tier: TIERS[n % TIERS.length],
              context_window: CONTEXT_WINDOWS[n % CONTEXT_WINDOWS.length],
              cost_in_per_mil: 1.5,
              cost_out_per_mil: 6,
              function_call_support: n % 2 === 0,
            });
            return request;
          },
        },
      ];
    },
  },
} satisfies Record<string, Scenario>;

type ScenarioName = keyof typeof SCENARIOS;

// ---------------------------------------------------------------------------------------------------
// Runs

interface RunSummary {
  scenario: ScenarioName;
  label: string;
  connections: number;
  durationS: number;
  /** Mean of autocannon's one-second samples. */
  requestsPerSec: number;
  requestsPerSecStddev: number;
  totalRequests: number;
  latencyMs: { average: number; p50: number; p90: number; p99: number; p99_9: number; max: number };
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  warmup: {
    durationS: number;
    requests: number;
    non2xx: number;
    errors: number;
    statusCodes: Record<string, number>;
  } | null;
  /** CPU used during the measured run (Linux /proc; null elsewhere). */
  cpu: CpuUse | null;
}

// CPU accounting: which process had the cores during a run. On a shared 2-core machine the server, the
// load generator and PostgreSQL compete, so req/s alone does not say where the limit was.

interface CpuSnapshot {
  server: { user: number; system: number } | undefined;
  bench: NodeJS.CpuUsage;
  machine: { busy: number; total: number; steal: number } | undefined;
  at: number;
}

interface ProcessCpu {
  /** Share of one core, 1 = a whole core. */
  cores: number;
  userUsPerRequest: number;
  systemUsPerRequest: number;
}

interface CpuUse {
  server: ProcessCpu | null;
  loadGenerator: ProcessCpu;
  /** Busy share of all cores, whoever used them (steal = taken by the hypervisor). */
  machine: { busy: number; steal: number } | null;
}

const CLOCK_TICK_US = 10_000; // USER_HZ is 100 on Linux

function processTicks(pid: number | undefined): { user: number; system: number } | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]), system: Number(fields[12]) };
  } catch {
    return undefined;
  }
}

function machineTicks(): { busy: number; total: number; steal: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
    // cpu  user nice system idle iowait irq softirq steal …
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    const total = ticks.reduce((sum, value) => sum + value, 0);
    return { busy: total - idle, total, steal: ticks[7] ?? 0 };
  } catch {
    return undefined;
  }
}

function cpuSnapshot(serverPid: number | undefined): CpuSnapshot {
  return {
    server: processTicks(serverPid),
    bench: process.cpuUsage(),
    machine: machineTicks(),
    at: performance.now(),
  };
}

function cpuUse(before: CpuSnapshot, after: CpuSnapshot, requests: number): CpuUse {
  const elapsedUs = (after.at - before.at) * 1000;
  const perRequest = (us: number) => Math.round((10 * us) / Math.max(requests, 1)) / 10;
  const share = (us: number) => Math.round((100 * us) / elapsedUs) / 100;
  const server =
    before.server === undefined || after.server === undefined
      ? null
      : (() => {
          const user = (after.server.user - before.server.user) * CLOCK_TICK_US;
          const system = (after.server.system - before.server.system) * CLOCK_TICK_US;
          return {
            cores: share(user + system),
            userUsPerRequest: perRequest(user),
            systemUsPerRequest: perRequest(system),
          };
        })();
  const benchUser = after.bench.user - before.bench.user;
  const benchSystem = after.bench.system - before.bench.system;
  const machine =
    before.machine === undefined || after.machine === undefined
      ? null
      : {
          busy:
            Math.round(
              (100 * (after.machine.busy - before.machine.busy)) /
                (after.machine.total - before.machine.total),
            ) / 100,
          steal:
            Math.round(
              (100 * (after.machine.steal - before.machine.steal)) /
                (after.machine.total - before.machine.total),
            ) / 100,
        };
  return {
    server,
    loadGenerator: {
      cores: share(benchUser + benchSystem),
      userUsPerRequest: perRequest(benchUser),
      systemUsPerRequest: perRequest(benchSystem),
    },
    machine,
  };
}

function statusCounts(result: Result): Record<string, number> {
  return Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]));
}

function summarize(
  scenario: ScenarioName,
  connections: number,
  result: Result,
  warmup?: Result,
): Omit<RunSummary, 'cpu'> {
  const { latency, requests } = result;
  return {
    scenario,
    label: SCENARIOS[scenario].label,
    connections,
    durationS: result.duration,
    requestsPerSec: requests.average,
    requestsPerSecStddev: requests.stddev,
    totalRequests: latency.totalCount,
    latencyMs: {
      average: latency.average,
      p50: latency.p50,
      p90: latency.p90,
      p99: latency.p99,
      p99_9: latency.p99_9,
      max: latency.max,
    },
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: statusCounts(result),
    warmup:
      warmup === undefined
        ? null
        : {
            durationS: warmup.duration,
            requests: warmup.latency.totalCount,
            non2xx: warmup.non2xx,
            errors: warmup.errors,
            statusCodes: statusCounts(warmup),
          },
  };
}

/** One autocannon run that Ctrl-C can stop (it then resolves with what it measured). */
async function measure(options: Options): Promise<Result> {
  const instance = autocannon(options);
  currentRun = instance;
  try {
    const result = await instance;
    throwIfInterrupted();
    return result;
  } finally {
    currentRun = undefined;
  }
}

/**
 * A warm-up run, then the measured one, at the same concurrency. (Two plain runs rather than autocannon's
 * `warmup` option, whose returned instance cannot be stopped.)
 */
async function runScenario(
  server: ServerHandle,
  settings: Settings,
  scenario: ScenarioName,
  connections: number,
  context: ScenarioContext,
): Promise<RunSummary> {
  const definition: Scenario = SCENARIOS[scenario];
  const options = (durationS: number, phase: string): Options => ({
    url: server.url,
    title: `${scenario} c=${connections} ${phase}`,
    connections,
    duration: durationS,
    timeout: 10,
    headers: { 'x-api-key': server.adminKey },
    requests: definition.requests(context),
    ...(definition.setupClient === undefined
      ? {}
      : { setupClient: definition.setupClient(context, connections) }),
  });
  const warmup = settings.warmupS > 0 ? await measure(options(settings.warmupS, 'warm-up')) : undefined;
  const before = cpuSnapshot(server.child.pid);
  const result = await measure(options(settings.durationS, 'measured'));
  const after = cpuSnapshot(server.child.pid);
  const cpu =
    before.machine === undefined && before.server === undefined
      ? null
      : cpuUse(before, after, result.latency.totalCount);
  return { ...summarize(scenario, connections, result, warmup), cpu };
}

// ---------------------------------------------------------------------------------------------------
// Reporting

/**
 * autocannon's latency histogram counts whole milliseconds (a 0.7 ms response is recorded as 0), so a
 * percentile of N means "under N + 1 ms", and 0 is shown as "<1".
 */
const formatLatency = (ms: number) => (ms === 0 ? '<1' : formatNumber(ms));

/** Errors and non-2xx responses, warm-up included: all must be 0. */
const problems = (run: RunSummary) =>
  run.errors + run.non2xx + (run.warmup?.errors ?? 0) + (run.warmup?.non2xx ?? 0);

function problemText(run: RunSummary): string {
  if (problems(run) === 0) return '0';
  const describe = (errors: number, non2xx: number, statusCodes: Record<string, number>) => {
    const codes = Object.entries(statusCodes)
      .filter(([code]) => !code.startsWith('2'))
      .map(([code, count]) => `${count}×${code}`)
      .join(' ');
    return `${errors} err, ${non2xx} non-2xx${codes === '' ? '' : ` (${codes})`}`;
  };
  const measured = describe(run.errors, run.non2xx, run.statusCodes);
  const { warmup } = run;
  if (warmup === null || warmup.errors + warmup.non2xx === 0) return measured;
  return `${measured}; warm-up ${describe(warmup.errors, warmup.non2xx, warmup.statusCodes)}`;
}

const COLUMNS = ['scenario', 'connections', 'req/s', 'p50 ms', 'p99 ms', 'errors/non-2xx'];

function tableRows(runs: RunSummary[]): string[][] {
  return runs.map((run) => [
    run.label,
    String(run.connections),
    formatNumber(run.requestsPerSec),
    formatLatency(run.latencyMs.p50),
    formatLatency(run.latencyMs.p99),
    problemText(run),
  ]);
}

const CPU_COLUMNS = [
  'scenario',
  'connections',
  'server cores',
  'server µs/req (user+sys)',
  'load generator cores',
  'machine busy (2 = all)',
];

/** Where the CPU went in each measured run: a server below one core was waiting, not working. */
function cpuRows(runs: RunSummary[]): string[][] {
  const cores = (value: number | undefined) => (value === undefined ? 'n/a' : value.toFixed(2));
  return runs.map((run) => {
    const server = run.cpu?.server ?? undefined;
    const machine = run.cpu?.machine ?? undefined;
    return [
      run.label,
      String(run.connections),
      cores(server?.cores),
      server === undefined
        ? 'n/a'
        : `${formatNumber(server.userUsPerRequest + server.systemUsPerRequest)} (${formatNumber(server.userUsPerRequest)}+${formatNumber(server.systemUsPerRequest)})`,
      cores(run.cpu?.loadGenerator.cores),
      machine === undefined ? 'n/a' : (machine.busy * os.availableParallelism()).toFixed(2),
    ];
  });
}

function textTable(columns: string[], body: string[][]): string {
  const rows = [columns, ...body];
  const widths = columns.map((_, column) => Math.max(...rows.map((row) => (row[column] as string).length)));
  const line = (row: string[]) =>
    row
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] as number) : cell.padStart(widths[column] as number),
      )
      .join('  ');
  return [line(columns), widths.map((width) => '-'.repeat(width)).join('  '), ...body.map(line)].join('\n');
}

function markdownTable(columns: string[], body: string[][]): string {
  return [
    `| ${columns.join(' | ')} |`,
    `|${columns.map((_, column) => (column === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...body.map((row) => `| ${row.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`),
  ].join('\n');
}

interface GoalVerdict {
  description: string;
  measured: { requestsPerSec: number; p99Ms: number } | null;
  met: boolean | null;
}

function judgeGoal(runs: RunSummary[]): GoalVerdict {
  const description = `${SCENARIOS[GOAL.scenario].label} at ${GOAL.connections} connections: ≥ ${formatNumber(GOAL.minRequestsPerSec)} req/s and p99 < ${GOAL.maxP99Ms} ms, without errors`;
  const run = runs.find(
    (candidate) => candidate.scenario === GOAL.scenario && candidate.connections === GOAL.connections,
  );
  if (run === undefined) return { description, measured: null, met: null };
  return {
    description,
    measured: { requestsPerSec: run.requestsPerSec, p99Ms: run.latencyMs.p99 },
    met:
      run.requestsPerSec >= GOAL.minRequestsPerSec &&
      run.latencyMs.p99 < GOAL.maxP99Ms &&
      problems(run) === 0,
  };
}

function goalText(goal: GoalVerdict): string {
  if (goal.met === null || goal.measured === null)
    return `Goal (${goal.description}): not measured in this run.`;
  const { requestsPerSec, p99Ms } = goal.measured;
  return `Goal (${goal.description}): ${goal.met ? 'MET' : 'NOT MET'} — ${formatNumber(requestsPerSec)} req/s, p99 ${formatNumber(p99Ms)} ms.`;
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const settings = readSettings();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const startedAt = new Date();
  const environment = {
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    loadAverageAtStart: os.loadavg().map((load) => Math.round(load * 100) / 100),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    gitCommit: gitCommit(),
    autocannon: '8',
  };
  const databaseName = `tb_bench_${randomBytes(6).toString('hex')}`;
  const runs: RunSummary[] = [];
  let server: ServerHandle | undefined;
  let serverExit: ServerExit | undefined;
  let databaseCreated = false;
  let rowCheck: { seeded: number; created201: number; rows: number; ok: boolean } | undefined;
  let postgresVersion = 'unknown';
  let failure: unknown;

  try {
    const databaseUrl = await interruptible(createDatabase(settings.pgServerUrl, databaseName));
    databaseCreated = true;
    progress(`created database ${databaseName}`);
    postgresVersion = (await queryOne<{ server_version: string }>(databaseUrl, 'SHOW server_version'))
      .server_version;

    server = await startServer(databaseUrl, settings.serverCpuProfDir);
    progress(`server pid ${server.child.pid} listening on ${server.url}`);

    const seedStarted = Date.now();
    const modelIds = await seed(server, settings.models);
    progress(`seeded ${modelIds.length} models in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`);
    const probe = await fetch(`${server.url}/models/${encodeURIComponent(modelIds[0] as string)}`, {
      headers: { 'x-api-key': server.adminKey },
    });
    if (probe.status !== 200) throw new Error(`GET of a seeded model answered ${probe.status}`);

    const context: ScenarioContext = {
      modelIds,
      runTag: randomBytes(4).toString('hex'),
      created: { next: 0 },
    };
    for (const scenario of settings.scenarios) {
      for (const connections of settings.connections) {
        progress(
          `${SCENARIOS[scenario].label}, ${connections} connections: ${settings.warmupS} s warm-up + ${settings.durationS} s`,
        );
        const run = await runScenario(server, settings, scenario, connections, context);
        runs.push(run);
        progress(
          `  ${formatNumber(run.requestsPerSec)} req/s, p50 ${run.latencyMs.p50} ms, p99 ${run.latencyMs.p99} ms, ${problemText(run)} errors/non-2xx`,
        );
      }
    }

    const created = runs
      .filter((run) => run.scenario === 'create-model')
      .reduce((sum, run) => sum + (run.statusCodes['201'] ?? 0) + (run.warmup?.statusCodes['201'] ?? 0), 0);
    const { count } = await queryOne<{ count: number }>(
      databaseUrl,
      'SELECT count(*)::int AS count FROM models',
    );
    // A POST cut off when a run stops may still commit, so a few rows more than 201s is fine; fewer is not.
    rowCheck = {
      seeded: modelIds.length,
      created201: created,
      rows: count,
      ok: count >= modelIds.length + created,
    };
  } catch (error) {
    failure = error;
  } finally {
    if (server !== undefined) {
      progress('stopping the server (SIGTERM)');
      serverExit = await stopServer(server);
      progress(
        `server exited with code ${serverExit.code}${serverExit.signal ? ` (signal ${serverExit.signal})` : ''} after ${serverExit.stopMs} ms`,
      );
    }
    if (databaseCreated) {
      try {
        await dropDatabase(settings.pgServerUrl, databaseName);
        progress(`dropped database ${databaseName}`);
      } catch (error) {
        process.stderr.write(`[bench] could not drop database ${databaseName}: ${String(error)}\n`);
      }
    }
  }

  if (failure !== undefined) {
    if (failure instanceof Interrupted) {
      process.stderr.write(`[bench] ${failure.message}; no results written\n`);
      return 130;
    }
    throw failure;
  }

  const goal = judgeGoal(runs);
  const totalProblems = runs.reduce((sum, run) => sum + problems(run), 0);
  const serverWarnings = server?.warnings.length ?? 0;
  const settingsText = [
    `duration ${settings.durationS} s per run after ${settings.warmupS} s warm-up; connections ${settings.connections.join(', ')}; ${settings.models} seeded models; pipelining 1`,
    `server: child process, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn, other settings default (DB_POOL_MAX 10, CACHE_TTL_MS 30000, API_KEY_CACHE_TTL_MS 5000)${settings.serverCpuProfDir ? `, under --cpu-prof (${settings.serverCpuProfDir})` : ''}`,
    `node ${environment.node}, ${environment.cpus} CPUs (${environment.cpuModel}), load average at start ${environment.loadAverageAtStart.join(' ')}, PostgreSQL ${postgresVersion}, git ${environment.gitCommit}`,
    'load generator: autocannon 8 in the benchmark process, on the same machine as the server and PostgreSQL; latency resolution 1 ms',
  ];
  const checksText = [
    `errors/non-2xx over all runs: ${totalProblems}${totalProblems === 0 ? '' : ' (must be 0)'}`,
    `server warnings/errors logged: ${serverWarnings}`,
    rowCheck === undefined
      ? 'rows check: not run'
      : `rows check: ${rowCheck.rows} rows for ${rowCheck.seeded} seeded + ${rowCheck.created201} created (201) — ${rowCheck.ok ? 'ok' : 'MISSING ROWS'}`,
    `server stop: exit code ${serverExit?.code ?? 'n/a'} after ${serverExit?.stopMs ?? 'n/a'} ms — ${serverExit?.clean ? 'clean' : 'NOT CLEAN'}`,
  ];

  process.stdout.write(
    [
      '',
      textTable(COLUMNS, tableRows(runs)),
      '',
      'CPU during the measured runs:',
      textTable(CPU_COLUMNS, cpuRows(runs)),
      '',
      goalText(goal),
      '',
      ...settingsText.map((line) => `settings: ${line}`),
      ...checksText.map((line) => `check: ${line}`),
      '',
    ].join('\n'),
  );

  const date = startedAt.toISOString().slice(0, 10);
  await mkdir(RESULTS_DIR, { recursive: true });
  const jsonPath = `${RESULTS_DIR}registry-api-${date}.json`;
  const markdownPath = `${RESULTS_DIR}registry-api-latest.md`;
  const report = {
    benchmark: 'registry-api',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    settings: {
      durationS: settings.durationS,
      warmupS: settings.warmupS,
      connections: settings.connections,
      seededModels: settings.models,
      scenarios: settings.scenarios,
      serverEnv: { RATE_LIMIT_PER_MINUTE: '0', LOG_LEVEL: 'warn' },
      serverCpuProf: settings.serverCpuProfDir ?? null,
      filterQueries: FILTER_QUERIES,
    },
    environment: { ...environment, postgres: postgresVersion },
    goal: { ...GOAL, ...goal },
    runs,
    checks: {
      errorsAndNon2xx: totalProblems,
      serverWarnings: server?.warnings ?? [],
      rows: rowCheck ?? null,
    },
    serverExit: serverExit ?? null,
  };
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(
    markdownPath,
    [
      `# Registry API benchmark — ${startedAt.toISOString()}`,
      '',
      markdownTable(COLUMNS, tableRows(runs)),
      '',
      'CPU during the measured runs:',
      '',
      markdownTable(CPU_COLUMNS, cpuRows(runs)),
      '',
      `**${goalText(goal)}**`,
      '',
      ...settingsText.map((line) => `- ${line}`),
      ...checksText.map((line) => `- ${line}`),
      '',
      `Command: \`npm run bench:registry${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`. Full results: \`bench/results/registry-api-${date}.json\`.`,
      '',
    ].join('\n'),
  );
  progress(`wrote ${jsonPath} and ${markdownPath}`);

  const healthy = totalProblems === 0 && serverExit?.clean === true && rowCheck?.ok !== false;
  return healthy ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`registry-api bench: ${error.message}\n\n${HELP}`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(
      `registry-api bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exitCode = 1;
  },
);
