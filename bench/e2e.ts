/**
 * The end-to-end benchmark: the whole system, as separate processes, driven over HTTP, with every event
 * followed from the request that emitted it to the commit of each consumer that applied it.
 *
 *   npm run bench -- [--duration 20] [--rates 1000,2500,5000] [--max-connections 50] [--quick] …
 *   npx telemetry-bus bench …   (the same script)
 *
 * Every option also reads an environment variable (see --help); the flag wins.
 *
 * What runs, all on 127.0.0.1 and on a database and RabbitMQ vhost made for the run and dropped after it:
 *   API     `bin/telemetry-bus.js start`, CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, its own DATA_DIR
 *   worker  `bin/telemetry-bus.js worker --consumers <every consumer of this build>` (audit, analytics,
 *           logging, dlq, and metrics where the build has it), its own DATA_DIR
 *   bus-off API  the same `start` with TELEMETRY_ENABLED=false on a database of its own, for the API's
 *           latency without the bus at the comparison rate (stopped after its phase)
 *   load    autocannon in this process, the request mix of bench/support/e2e-mix.ts (reads, filters,
 *           registrations, updates, deactivations, intended 404s and 400s)
 *
 * The phases, in order: the raw broker ceiling (bench/support/raw-ceiling.ts, in a vhost of its own, before
 * the system starts), a warm-up of both APIs, bus off at the comparison rate, then bus on at each fixed rate
 * and at the maximum `max-connections` connections give. After every bus-on phase the benchmark waits (for
 * `settle-timeout` s at most) until the loss ledger says every event is confirmed and applied by every
 * consumer, then reads from PostgreSQL, for the events emitted in the phase (by their timestamps):
 *   - end-to-end latency per consumer: `applied_events.applied_at` (a view: consumer_applied_events, and
 *     for the audit consumer, which de-duplicates in its own table, audit_records.recorded_at) − the
 *     event's timestamp (`audit_records.occurred_at`, every event of the mix is audited). applied_at is
 *     `now()` in the consumer's transaction, i.e. when the transaction that applied the event began: the
 *     commit follows by that batch's apply time, so these are lower bounds by that much; the event's
 *     timestamp is whole milliseconds (truncated), which adds up to 1 ms;
 *   - "e2e" latency: per event, the slowest of the consumers it is routed to;
 *   - events/s applied end to end: the phase's events ÷ (the last commit of any of them − phase start), so
 *     a backlog that drains after the load stops counts against it.
 * At the end: lost and duplicated events from the ledger and the tables, over the whole run.
 *
 * Everything is bounded in time; the processes are stopped, the databases dropped and the vhosts deleted in
 * a `finally`, also on Ctrl-C (a second Ctrl-C exits at once).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon, { type Client, type Instance, type Options, type Result } from 'autocannon';
import pg from 'pg';
import { toOutboundMessage } from '../src/bus/outbound-message.ts';
import { QUEUES } from '../src/bus/topology.ts';
import { childTraceparent } from '../src/bus/trace-context.ts';
import { CONSUMER_NAMES } from '../src/config.ts';
import { LedgerQuery, type LedgerWindow } from '../src/metrics/ledger/ledger-query.ts';
import { LEDGER_CONSUMERS } from '../src/metrics/ledger/ledger-summary.ts';
import { exampleEvent } from '../test/support/event-examples.ts';
import { type BrokerInfo, brokerAlarms, Environments, purgeQueues, waitForBroker } from './support/broker.ts';
import { type CpuUse, cpuSnapshot, cpuUse, findRabbitmqPid } from './support/cpu.ts';
import { createDatabase, dropDatabase } from './support/databases.ts';
import { BLOCK, BLOCK_EVENT_TYPES, type MixContext, mixRequests, StatusTally } from './support/e2e-mix.ts';
import { apiEvent, recordBytes, recordOf } from './support/events.ts';
import { PeakMemory, statusKib } from './support/memory.ts';
import { databaseTicks, findPostmasterPid, postgresTicks } from './support/postgres-cpu.ts';
import { type RawCeilingResult, rawCeiling } from './support/raw-ceiling.ts';
import {
  commandLine,
  environment,
  environmentText,
  formatDelta,
  formatNumber,
  progress,
  publishResults,
  RESULTS_DIR,
  round,
  type Section,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
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
import { distribution, Samples } from './support/stats.ts';
import { barChartSvg } from './support/svg-chart.ts';
import {
  freePort,
  type ProcessExit,
  runCli,
  type SystemProcess,
  startCli,
  stopProcess,
  waitForHttp,
} from './support/system-process.ts';

const NAME = 'e2e';

/** The issue's goals, on this 2-core machine with everything co-located. */
const GOALS = {
  /** Sustained end-to-end events/s, as a share of the raw broker ceiling measured in the same run. */
  minCeilingShare: 0.6,
  /** Requests/s end to end with nothing lost. */
  minRequestsPerSec: 3000,
  /** At the comparison rate: e2e latency (slowest consumer per event), ms. */
  maxE2eP95Ms: 10,
  maxE2eP99Ms: 25,
  /** At the comparison rate: API p99 with the bus on − off, ms. */
  maxApiP99OverheadMs: 0.5,
  /** Unexpected HTTP errors (intended 4xx excluded), share of requests. */
  maxUnexpectedShare: 0.001,
} as const;

const HELP = `usage: npm run bench -- [options]     (or: npx telemetry-bus bench [options])

  --duration <s>          measured seconds per phase                    (BENCH_DURATION, default 20)
  --rates <list>          fixed rates of the bus-on phases, req/s       (BENCH_RATES, default 1000,2500,5000)
  --compare-rate <n>      rate of the bus-off phase and the latency goals (BENCH_COMPARE_RATE, default 1000)
  --max-connections <n>   connections of the max-rate phase; 0 = none   (BENCH_MAX_CONNECTIONS, default 50)
  --warmup <s>            unmeasured seconds per API before the phases  (BENCH_WARMUP, default 3)
  --models <n>            models seeded in each database                (BENCH_MODELS, default 500)
  --raw-duration <s>      seconds of publishing of the raw ceiling      (BENCH_RAW_DURATION, default = --duration)
  --settle-timeout <s>    wait after a phase for every event applied    (BENCH_SETTLE_TIMEOUT, default 180)
  --quick                 a smoke run: 5 s phases, 1 s warm-up, 200 models
  --pg-url <url>          PostgreSQL server for the databases
                                               (BENCH_PG_URL, default postgres://root@127.0.0.1:5432)
`;

interface Settings {
  durationS: number;
  rates: number[];
  compareRate: number;
  maxConnections: number;
  warmupS: number;
  models: number;
  rawDurationS: number;
  settleTimeoutS: number;
  quick: boolean;
  pgServerUrl: string;
}

function readSettings(argv = process.argv.slice(2)): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      rates: { type: 'string' },
      'compare-rate': { type: 'string' },
      'max-connections': { type: 'string' },
      warmup: { type: 'string' },
      models: { type: 'string' },
      'raw-duration': { type: 'string' },
      'settle-timeout': { type: 'string' },
      quick: { type: 'boolean' },
      'pg-url': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const quick = values.quick === true || process.env.BENCH_QUICK === '1';
  const durationS = positiveInteger(
    '--duration',
    pick(values.duration, 'BENCH_DURATION', quick ? '5' : '20'),
  );
  const rates = pick(values.rates, 'BENCH_RATES', '1000,2500,5000')
    .split(',')
    .map((rate) => positiveInteger('--rates', rate.trim()));
  const compareRate = positiveInteger(
    '--compare-rate',
    pick(values['compare-rate'], 'BENCH_COMPARE_RATE', '1000'),
  );
  if (!rates.includes(compareRate)) {
    throw new UsageError(`--rates must include the comparison rate ${compareRate} (--compare-rate)`);
  }
  return {
    durationS,
    rates: [...new Set(rates)].sort((a, b) => a - b),
    compareRate,
    maxConnections: positiveInteger(
      '--max-connections',
      pick(values['max-connections'], 'BENCH_MAX_CONNECTIONS', '50'),
      true,
    ),
    warmupS: positiveInteger('--warmup', pick(values.warmup, 'BENCH_WARMUP', quick ? '1' : '3'), true),
    models: positiveInteger('--models', pick(values.models, 'BENCH_MODELS', quick ? '200' : '500')),
    rawDurationS: positiveInteger(
      '--raw-duration',
      pick(values['raw-duration'], 'BENCH_RAW_DURATION', String(durationS)),
    ),
    settleTimeoutS: positiveInteger(
      '--settle-timeout',
      pick(values['settle-timeout'], 'BENCH_SETTLE_TIMEOUT', '180'),
    ),
    quick,
    pgServerUrl: pick(values['pg-url'], 'BENCH_PG_URL', 'postgres://root@127.0.0.1:5432').replace(/\/+$/, ''),
  };
}

// ---------------------------------------------------------------------------------------------------
// The system under test

interface Api {
  label: string;
  process: SystemProcess;
  url: string;
  key: string;
  database: string;
  /** Requests the benchmark sent it outside autocannon runs (seeding, checks): each is an event. */
  otherRequests: number;
}

async function startApi(
  label: string,
  database: string,
  env: Record<string, string>,
  settings: Settings,
  /** Where the process goes as soon as it is started, so the cleanup stops it whatever happens next. */
  started: SystemProcess[],
): Promise<Api> {
  const databaseUrl = `${settings.pgServerUrl}/${database}`;
  // The key before the start: `keys create` migrates the fresh database and prints the key alone on stdout.
  const key = (
    await runCli(['keys', 'create', '--role', 'admin', '--name', `bench ${label}`], {
      DATABASE_URL: databaseUrl,
    })
  ).trim();
  const port = await freePort();
  const process_ = startCli(label, ['start'], {
    ...env,
    DATABASE_URL: databaseUrl,
    HOST: '127.0.0.1',
    PORT: String(port),
    CONSUMERS: 'none',
    RATE_LIMIT_PER_MINUTE: '0',
    BOOTSTRAP_ADMIN_KEY: 'false',
    LOG_LEVEL: 'warn',
  });
  started.push(process_);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(process_, `${url}/livez`, 60_000);
  return { label, process: process_, url, key, database, otherRequests: 1 };
}

function assertRunning(...processes: SystemProcess[]): void {
  for (const process_ of processes) {
    if (process_.child.exitCode !== null || process_.child.signalCode !== null) {
      throw new Error(
        `${process_.name} exited (code ${process_.child.exitCode}, signal ${process_.child.signalCode}):\n${process_.tail.join('\n')}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Phases

type PhaseKind = 'bus-off' | 'rate' | 'max';

interface HttpResult {
  targetRate: number | null;
  connections: number;
  durationS: number;
  requests: number;
  requestsPerSec: number;
  /** Every response's time as autocannon measured it (float ms), exact percentiles. */
  latencyMs: { p50: number; p95: number; p99: number; max: number; mean: number };
  statusByKind: Record<string, Record<string, number>>;
  intendedErrors: number;
  unexpectedStatus: number;
  connectionErrors: number;
  timeouts: number;
  /** (unexpected statuses + connection errors) ÷ requests sent. */
  unexpectedShare: number;
}

interface ConsumerLatency {
  consumer: string;
  events: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Applied per second while the load ran. */
  appliedPerSecDuringLoad: number;
}

interface PhaseResult {
  name: string;
  kind: PhaseKind;
  startedAt: string;
  http: HttpResult;
  cpu: CpuUse;
  /** Cores used by the backends of the bench's database. */
  postgresCores: number | null;
  /** Cores of the whole PostgreSQL server (other databases on this shared machine included). */
  postgresServerCores: number | null;
  peakRssMiB: Record<string, number | null>;
  /** Bus-on phases only. */
  bus: {
    events: number;
    settled: boolean;
    settleMs: number;
    /** The last commit of the phase's events, seconds after the load stopped (the backlog's drain). */
    drainedAfterLoadS: number;
    keptUp: boolean;
    e2eEventsPerSec: number;
    e2eLatencyMs: { p50: number; p95: number; p99: number; max: number };
    consumers: ConsumerLatency[];
  } | null;
}

async function runLoad(
  api: Api,
  label: string,
  mix: MixContext,
  connections: number,
  durationS: number,
  rate: number | undefined,
  samples: Samples | undefined,
): Promise<{ result: Result; seconds: number }> {
  let client = 0;
  const options: Options = {
    url: api.url,
    title: label,
    connections,
    duration: durationS,
    timeout: 10,
    headers: { 'x-api-key': api.key },
    requests: mixRequests(mix, 0, connections),
    setupClient: (c: Client) => c.setRequests(mixRequests(mix, client++, connections)),
    ...(rate === undefined ? {} : { overallRate: rate }),
  };
  const instance: Instance = autocannon(options);
  if (samples !== undefined) {
    instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) =>
      samples.push(ms),
    );
  }
  autocannon.track(instance, {
    renderProgressBar: process.stderr.isTTY === true,
    renderResultsTable: false,
    renderLatencyTable: false,
    progressBarString: `${label.padEnd(24)} [:bar] :percent`,
  });
  const started = performance.now();
  const result = await stoppable(
    () => instance.stop(),
    async () => await instance,
  );
  throwIfInterrupted();
  return { result, seconds: (performance.now() - started) / 1000 };
}

function httpResult(
  result: Result,
  samples: Samples,
  tally: StatusTally,
  rate: number | undefined,
  connections: number,
): HttpResult {
  const exact = distribution(samples.sorted(), 1, 3);
  const sorted = samples.sorted();
  const p95 =
    sorted.length === 0
      ? Number.NaN
      : (sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)] as number);
  const requests = tally.total + result.errors;
  return {
    targetRate: rate ?? null,
    connections,
    durationS: result.duration,
    requests,
    requestsPerSec: round(tally.total / result.duration, 1),
    latencyMs: { p50: exact.p50, p95: round(p95, 3), p99: exact.p99, max: exact.max, mean: exact.mean },
    statusByKind: tally.counts,
    intendedErrors: tally.intendedErrors,
    unexpectedStatus: tally.unexpected,
    connectionErrors: result.errors,
    timeouts: result.timeouts,
    unexpectedShare: requests === 0 ? 0 : (tally.unexpected + result.errors) / requests,
  };
}

// ---------------------------------------------------------------------------------------------------
// The ledger and the tables

interface SettleResult {
  settled: boolean;
  ms: number;
  ledger: LedgerWindow;
}

/**
 * Waits until the ledger says every event the API emitted is spooled, confirmed and applied by every
 * running consumer, and the API has counted at least `minEmitted` events (its counts reach PostgreSQL every
 * LEDGER_FLUSH_INTERVAL_MS). Read through LedgerQuery (what GET /telemetry/ledger answers) on the
 * database itself, because every HTTP request would be one more event to wait for.
 */
async function settle(
  ledger: LedgerQuery,
  from: Date,
  consumers: readonly string[],
  minEmitted: number,
  timeoutS: number,
  watch: SystemProcess[],
): Promise<SettleResult> {
  const started = Date.now();
  let lastReport = started;
  for (;;) {
    assertRunning(...watch);
    const window = await ledger.summary({ from, to: new Date(Date.now() + 120_000) });
    const pending = window.consumers.filter((c) => consumers.includes(c.consumer) && c.missing !== 0);
    const done =
      window.emitted >= minEmitted &&
      window.dropped === 0 &&
      window.unconfirmed === 0 &&
      pending.length === 0;
    if (done) return { settled: true, ms: Date.now() - started, ledger: window };
    if (Date.now() - started > timeoutS * 1000)
      return { settled: false, ms: Date.now() - started, ledger: window };
    if (Date.now() - lastReport >= 5000) {
      lastReport = Date.now();
      progress(
        `  settling: emitted ${formatNumber(window.emitted)} (≥ ${formatNumber(minEmitted)}), unconfirmed ${formatNumber(window.unconfirmed)}, missing ${pending.map((c) => `${c.consumer} ${formatNumber(c.missing)}`).join(', ') || 'none'}`,
      );
    }
    await sleep(250);
  }
}

interface LatencyRow {
  consumer: string;
  events: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  last_applied_ms: number;
  during_load: number;
}

/** Latency of the events stamped in [from, to) per consumer, and the slowest consumer per event. */
async function phaseLatency(
  pool: pg.Pool,
  from: Date,
  to: Date,
  loadEnd: Date,
): Promise<{ perConsumer: LatencyRow[]; e2e: LatencyRow; events: number }> {
  const latency = `extract(epoch FROM c.applied_at - a.occurred_at) * 1000`;
  const { rows } = await pool.query<LatencyRow>(
    `SELECT c.consumer,
            count(*)::int AS events,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY ${latency}) AS p50,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY ${latency}) AS p95,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ${latency}) AS p99,
            max(${latency}) AS max,
            extract(epoch FROM max(c.applied_at)) * 1000 AS last_applied_ms,
            count(*) FILTER (WHERE c.applied_at < $3)::int AS during_load
       FROM audit_records a JOIN applied_events c USING (event_id)
      WHERE a.occurred_at >= $1 AND a.occurred_at < $2
      GROUP BY c.consumer ORDER BY c.consumer`,
    [from, to, loadEnd],
  );
  const e2e = await pool.query<LatencyRow>(
    `SELECT 'e2e' AS consumer, count(*)::int AS events,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY l) AS p50,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY l) AS p95,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY l) AS p99,
            max(l) AS max, max(last_ms) AS last_applied_ms, 0 AS during_load
       FROM (SELECT max(${latency}) AS l, extract(epoch FROM max(c.applied_at)) * 1000 AS last_ms
               FROM audit_records a JOIN applied_events c USING (event_id)
              WHERE a.occurred_at >= $1 AND a.occurred_at < $2
              GROUP BY a.event_id) per_event`,
    [from, to],
  );
  const audited = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM audit_records WHERE occurred_at >= $1 AND occurred_at < $2',
    [from, to],
  );
  const number = (row: LatencyRow): LatencyRow => ({
    ...row,
    p50: round(Number(row.p50), 2),
    p95: round(Number(row.p95), 2),
    p99: round(Number(row.p99), 2),
    max: round(Number(row.max), 2),
    last_applied_ms: Number(row.last_applied_ms),
  });
  return {
    perConsumer: rows.map(number),
    e2e: number(e2e.rows[0] as LatencyRow),
    events: audited.rows[0]?.n ?? 0,
  };
}

interface TableChecks {
  appliedRows: Record<string, number>;
  auditRecords: number;
  auditDistinctEvents: number;
  modelQueriedAudited: number;
  analyticsQueries: number;
}

async function tableChecks(pool: pg.Pool): Promise<TableChecks> {
  const applied = await pool.query<{ consumer: string; n: number }>(
    'SELECT consumer, count(*)::int AS n FROM applied_events GROUP BY consumer',
  );
  const audit = await pool.query<{ n: number; d: number; q: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS d,
            count(*) FILTER (WHERE event_type = 'model.queried')::int AS q FROM audit_records`,
  );
  const analytics = await pool.query<{ n: string | null }>(
    'SELECT sum(queries) AS n FROM analytics_model_queries',
  );
  const row = audit.rows[0] as { n: number; d: number; q: number };
  return {
    appliedRows: Object.fromEntries(applied.rows.map((r) => [r.consumer, r.n])),
    auditRecords: row.n,
    auditDistinctEvents: row.d,
    modelQueriedAudited: row.q,
    analyticsQueries: Number(analytics.rows[0]?.n ?? 0),
  };
}

// ---------------------------------------------------------------------------------------------------
// The raw ceiling's messages

/** Distinct messages of the mix's event types, in the mix's proportions, as the publisher sends them. */
function rawMessages(count: number) {
  const now = Date.now();
  const messages = [];
  for (let i = 0; i < count; i++) {
    const type = BLOCK_EVENT_TYPES[i % BLOCK_EVENT_TYPES.length] as (typeof BLOCK_EVENT_TYPES)[number];
    const event =
      type === 'model.queried' || type === 'filter.executed' || type === 'api.error'
        ? apiEvent(type, i, now)
        : exampleEvent(type, {
            event_id: randomUUID(),
            correlation_id: randomUUID(),
            timestamp: new Date(now).toISOString(),
          });
    const record = recordOf({ event, traceparent: childTraceparent(undefined), timestampMs: now });
    messages.push(toOutboundMessage(recordBytes(record)));
  }
  return messages;
}

// ---------------------------------------------------------------------------------------------------
// Main

const ms = (value: number | null | undefined, digits = 2) =>
  value === null || value === undefined || Number.isNaN(value) ? 'n/a' : formatNumber(value, digits);
const cores = (value: number | null | undefined) =>
  value === null || value === undefined ? 'n/a' : value.toFixed(2);
const mib = (value: number | null | undefined) =>
  value === null || value === undefined ? 'n/a' : formatNumber(value, 0);

async function main(): Promise<number> {
  const settings = readSettings();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const tag = randomBytes(4).toString('hex');
  const databases = { on: `tb_bench_e2e_${tag}`, off: `tb_bench_e2e_${tag}_off` };
  const created: string[] = [];
  const dirs: string[] = [];
  const processes: SystemProcess[] = [];
  const exits: Record<string, ProcessExit> = {};
  const phases: PhaseResult[] = [];
  const consumers = [...CONSUMER_NAMES] as string[];
  /** The consumers the ledger follows that run here (the dlq consumer applies only dead letters). */
  const followed = consumers.filter((name) => name in LEDGER_CONSUMERS);
  const hasMetrics = consumers.includes('metrics');
  let broker: BrokerInfo | undefined;
  let raw: RawCeilingResult | undefined;
  let finalLedger: LedgerWindow | undefined;
  let finalSettle: SettleResult | undefined;
  let httpLedger: unknown;
  let tables: TableChecks | undefined;
  let apiHwmMiB: number | null = null;
  let workerHwmMiB: number | null = null;
  let alarmsAfter: string[] = [];
  let stoppedEarly: string | null = null;
  let pool: pg.Pool | undefined;
  let failure: unknown;
  let expectedEmitted = 0;

  try {
    broker = await waitForBroker();
    const rabbitPid = findRabbitmqPid();
    const postmaster = findPostmasterPid();
    progress(
      `consumers in this build: ${consumers.join(', ')}${hasMetrics ? '' : ' (no metrics consumer: metrics.updates is purged after each phase)'}`,
    );

    // 1. The raw broker ceiling, in a vhost of its own, before anything else runs.
    const consumedQueues = followed.map((name) => LEDGER_CONSUMERS[name as keyof typeof LEDGER_CONSUMERS]);
    {
      const rawEnv = await environments.create();
      progress(
        `raw broker ceiling: amqplib confirm publish → consume ${consumedQueues.join(', ')} for ${settings.rawDurationS} s`,
      );
      raw = await interruptible(
        rawCeiling({
          url: rawEnv.env.RABBITMQ_URL,
          messages: rawMessages(2000),
          queues: consumedQueues,
          durationS: settings.rawDurationS,
          pids: { rabbitmq: rabbitPid },
          onProgress: (published, least) =>
            process.stderr.isTTY &&
            process.stderr.write(
              `\r  published ${formatNumber(published)}, all queues received ${formatNumber(least)}   `,
            ),
        }),
      );
      if (process.stderr.isTTY) process.stderr.write('\n');
      progress(
        `  ${formatNumber(raw.messagesPerSec)} messages/s (${formatNumber(raw.published)} in ${raw.seconds} s), RabbitMQ ${cores(raw.cpu.processes.rabbitmq?.cores)} cores`,
      );
      await environments.remove(rawEnv);
    }

    // 2. The system.
    const busEnv = await environments.create();
    const workerDir = mkdtempSync(path.join(os.tmpdir(), 'tb-bench-e2e-worker-'));
    const offDir = mkdtempSync(path.join(os.tmpdir(), 'tb-bench-e2e-off-'));
    dirs.push(workerDir, offDir);
    for (const name of [databases.on, databases.off]) {
      await createDatabase(settings.pgServerUrl, name);
      created.push(name);
    }
    progress(`databases ${databases.on}, ${databases.off}; vhost ${busEnv.vhost.vhost}`);
    const api = await startApi(
      'api',
      databases.on,
      { ...busEnv.env, TELEMETRY_ENABLED: 'true' },
      settings,
      processes,
    );
    const worker = startCli(
      'worker',
      ['worker', '--consumers', consumers.join(',')],
      {
        DATABASE_URL: `${settings.pgServerUrl}/${databases.on}`,
        RABBITMQ_URL: busEnv.env.RABBITMQ_URL,
        DATA_DIR: workerDir,
        LOG_LEVEL: 'info',
      },
      // The logging consumer's error log goes to stdout too: its lines are output, not warnings.
      (entry) => typeof entry.event_id === 'string' && typeof entry.error_type === 'string',
    );
    processes.push(worker);
    await worker.waitForLine((entry) => entry.msg === 'telemetry-bus worker consuming', 60_000);
    const off = await startApi(
      'api-bus-off',
      databases.off,
      { RABBITMQ_URL: busEnv.env.RABBITMQ_URL, DATA_DIR: offDir, TELEMETRY_ENABLED: 'false' },
      settings,
      processes,
    );
    progress(
      `API pid ${api.process.pid} at ${api.url}, worker pid ${worker.pid}, bus-off API pid ${off.process.pid}`,
    );

    pool = new pg.Pool({ connectionString: `${settings.pgServerUrl}/${databases.on}`, max: 2 });
    pool.on('error', () => {});
    const ledger = new LedgerQuery(pool);
    // The ledger counts per minute of the events' timestamps: from the minute before anything was sent.
    const ledgerFrom = new Date(Date.now() - 60_000);

    const seeded = await Promise.all(
      [api, off].map((target) =>
        seedModels(target.url, target.key, settings.models, { throwIfInterrupted, interruptible }),
      ),
    );
    api.otherRequests += settings.models;
    const seededIds = { on: seeded[0] as string[], off: seeded[1] as string[] };
    progress(`seeded ${settings.models} models in each database`);
    const mixOf = (phase: string, bus: 'on' | 'off'): MixContext => ({
      seededIds: seededIds[bus],
      tag: `${tag}-${phase}`,
      tally: new StatusTally(),
      registered: { next: 0 },
    });

    if (settings.warmupS > 0) {
      for (const [target, bus] of [
        [api, 'on'],
        [off, 'off'],
      ] as const) {
        const mix = mixOf(`warmup-${bus}`, bus);
        await runLoad(
          target,
          `warm-up bus ${bus}`,
          mix,
          10,
          settings.warmupS,
          settings.compareRate,
          undefined,
        );
        if (bus === 'on') api.otherRequests += mix.tally.total;
      }
    }
    // Nothing of the warm-up (or the seeding) may still be in transit when the first phase starts.
    const warm = await settle(ledger, ledgerFrom, followed, api.otherRequests, settings.settleTimeoutS, [
      api.process,
      worker,
    ]);
    if (!warm.settled)
      throw new Error(`the warm-up's events did not settle within ${settings.settleTimeoutS} s`);
    if (!hasMetrics) await purgeQueues(busEnv.env.RABBITMQ_URL, [QUEUES.metrics]);
    expectedEmitted = api.otherRequests;

    const phasePlan: Array<{ name: string; kind: PhaseKind; rate: number | undefined; connections: number }> =
      [
        {
          name: `bus off, ${formatNumber(settings.compareRate)}/s`,
          kind: 'bus-off',
          rate: settings.compareRate,
          connections: Math.max(10, Math.ceil(settings.compareRate / 100)),
        },
        ...settings.rates.map((rate) => ({
          name: `${formatNumber(rate)}/s`,
          kind: 'rate' as const,
          rate,
          connections: Math.max(10, Math.ceil(rate / 100)),
        })),
        ...(settings.maxConnections > 0
          ? [{ name: 'max', kind: 'max' as const, rate: undefined, connections: settings.maxConnections }]
          : []),
      ];

    for (const plan of phasePlan) {
      const target = plan.kind === 'bus-off' ? off : api;
      assertRunning(api.process, worker, ...(plan.kind === 'bus-off' ? [off.process] : []));
      await waitForBroker();
      const mix = mixOf(plan.name.replace(/[^a-z0-9]+/gi, ''), plan.kind === 'bus-off' ? 'off' : 'on');
      const samples = new Samples((plan.rate ?? 10_000) * settings.durationS + 1000);
      const memory = new PeakMemory({
        processes: { api: target.process.pid, worker: worker.pid, rabbitmq: rabbitPid },
        postgres: { postmaster, database: target.database },
      });
      const pids = { api: target.process.pid, worker: worker.pid, rabbitmq: rabbitPid };
      progress(
        `phase ${plan.name}: ${plan.rate === undefined ? 'as fast as' : `${formatNumber(plan.rate)} req/s over`} ${plan.connections} connections, ${settings.durationS} s`,
      );
      const cpuBefore = cpuSnapshot(pids);
      const pgBefore = postgresTicks(postmaster, target.database);
      const phaseStart = new Date();
      const { result } = await runLoad(
        target,
        plan.name,
        mix,
        plan.connections,
        settings.durationS,
        plan.rate,
        samples,
      );
      const loadEnd = new Date();
      const cpuAfter = cpuSnapshot(pids);
      const pgAfter = postgresTicks(postmaster, target.database);
      const cpu = cpuUse(cpuBefore, cpuAfter);
      const dbTicks = databaseTicks(pgBefore, pgAfter);
      const elapsedTicks = cpu.elapsedS * 100;
      const postgresCores =
        dbTicks === undefined ? null : round((dbTicks.user + dbTicks.system) / elapsedTicks, 2);
      const postgresServerCores =
        pgBefore === undefined || pgAfter === undefined
          ? null
          : round(
              (pgAfter.server.user + pgAfter.server.system - pgBefore.server.user - pgBefore.server.system) /
                elapsedTicks,
              2,
            );
      const http = httpResult(result, samples, mix.tally, plan.rate, plan.connections);
      progress(
        `  ${formatNumber(http.requestsPerSec)} req/s, API p50 ${ms(http.latencyMs.p50)} p99 ${ms(http.latencyMs.p99)} ms, unexpected ${http.unexpectedStatus + http.connectionErrors}`,
      );
      let bus: PhaseResult['bus'] = null;
      if (plan.kind === 'bus-off') {
        const peak = memory.stop();
        phases.push({
          name: plan.name,
          kind: plan.kind,
          startedAt: phaseStart.toISOString(),
          http,
          cpu,
          postgresCores,
          postgresServerCores,
          peakRssMiB: { ...peak, worker: null },
          bus,
        });
        exits[off.label] = await stopProcess(off.process);
        progress('  bus-off API stopped');
        continue;
      }
      // Every response is an event; requests cut off by the end of the run may be events too.
      expectedEmitted += mix.tally.total;
      const settled = await settle(ledger, ledgerFrom, followed, expectedEmitted, settings.settleTimeoutS, [
        api.process,
        worker,
      ]);
      const peak = memory.stop();
      const nextStart = new Date();
      const latency = await phaseLatency(pool, phaseStart, nextStart, loadEnd);
      const lastApplied = Math.max(
        ...latency.perConsumer.map((row) => row.last_applied_ms),
        phaseStart.getTime(),
      );
      const drainedAfterLoadS = round(Math.max(0, lastApplied - loadEnd.getTime()) / 1000, 2);
      const loadSeconds = (loadEnd.getTime() - phaseStart.getTime()) / 1000;
      bus = {
        events: latency.events,
        settled: settled.settled,
        settleMs: settled.ms,
        drainedAfterLoadS,
        keptUp: drainedAfterLoadS <= Math.max(2, settings.durationS * 0.1),
        e2eEventsPerSec: round(latency.events / ((lastApplied - phaseStart.getTime()) / 1000), 0),
        e2eLatencyMs: {
          p50: latency.e2e.p50,
          p95: latency.e2e.p95,
          p99: latency.e2e.p99,
          max: latency.e2e.max,
        },
        consumers: latency.perConsumer.map((row) => ({
          consumer: row.consumer,
          events: row.events,
          p50: row.p50,
          p95: row.p95,
          p99: row.p99,
          max: row.max,
          appliedPerSecDuringLoad: round(row.during_load / loadSeconds, 0),
        })),
      };
      phases.push({
        name: plan.name,
        kind: plan.kind,
        startedAt: phaseStart.toISOString(),
        http,
        cpu,
        postgresCores,
        postgresServerCores,
        peakRssMiB: peak,
        bus,
      });
      progress(
        `  ${formatNumber(bus.events)} events, e2e ${formatNumber(bus.e2eEventsPerSec)} events/s, e2e p50 ${ms(bus.e2eLatencyMs.p50)} p95 ${ms(bus.e2eLatencyMs.p95)} p99 ${ms(bus.e2eLatencyMs.p99)} ms, drained ${bus.drainedAfterLoadS} s after the load${settled.settled ? '' : ' — NOT SETTLED'}`,
      );
      if (!hasMetrics) await purgeQueues(busEnv.env.RABBITMQ_URL, [QUEUES.metrics]);
      if (!settled.settled) {
        stoppedEarly = `phase ${plan.name} did not settle within ${settings.settleTimeoutS} s: later phases skipped`;
        progress(stoppedEarly);
        break;
      }
    }

    // 3. Loss and duplicates over the whole run.
    finalSettle = await settle(
      ledger,
      ledgerFrom,
      followed,
      expectedEmitted,
      stoppedEarly === null ? 30 : 5,
      [api.process, worker],
    );
    finalLedger = finalSettle.ledger;
    tables = await tableChecks(pool);
    const response = await fetch(
      `${api.url}/telemetry/ledger?from=${encodeURIComponent(ledgerFrom.toISOString())}`,
      { headers: { 'x-api-key': api.key }, signal: AbortSignal.timeout(10_000) },
    );
    httpLedger = { status: response.status, body: await response.json() };
    apiHwmMiB = round((statusKib(api.process.pid, 'VmHWM') ?? Number.NaN) / 1024, 1);
    workerHwmMiB = round((statusKib(worker.pid, 'VmHWM') ?? Number.NaN) / 1024, 1);
    alarmsAfter = await brokerAlarms();
  } catch (error) {
    failure = error;
  } finally {
    for (const process_ of [...processes].reverse()) {
      if (exits[process_.name] !== undefined) continue;
      progress(`stopping ${process_.name} (SIGTERM)`);
      exits[process_.name] = await stopProcess(process_);
    }
    await pool?.end().catch(() => {});
    for (const name of created) {
      try {
        await dropDatabase(settings.pgServerUrl, name);
      } catch (error) {
        process.stderr.write(`[bench] could not drop database ${name}: ${String(error)}\n`);
      }
    }
    if (created.length > 0) progress(`dropped databases ${created.join(', ')}`);
    await environments.removeAll();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
  if (failure !== undefined) throw failure;

  // ---------------------------------------------------------------------------------------------------
  // Verdicts

  const busPhases = phases.filter((phase) => phase.bus !== null);
  const offPhase = phases.find((phase) => phase.kind === 'bus-off');
  const comparePhase = phases.find(
    (phase) => phase.kind === 'rate' && phase.http.targetRate === settings.compareRate,
  );
  const ledgerNow = finalLedger as LedgerWindow;
  const tablesNow = tables as TableChecks;
  const followedLedger = ledgerNow.consumers.filter((c) => followed.includes(c.consumer));
  const lost =
    ledgerNow.dropped +
    ledgerNow.unconfirmed +
    followedLedger.reduce((sum, c) => sum + Math.max(0, c.missing), 0);
  const duplicateChecks = {
    /** Ledger 'applied' beyond the distinct events recorded as applied, per consumer. */
    ledgerOverRows: Object.fromEntries(
      followedLedger.map((c) => [c.consumer, c.applied - (tablesNow.appliedRows[c.consumer] ?? 0)]),
    ),
    auditRowsOverDistinct: tablesNow.auditRecords - tablesNow.auditDistinctEvents,
    analyticsOverAudited: tablesNow.analyticsQueries - tablesNow.modelQueriedAudited,
  };
  const duplicates =
    Object.values(duplicateChecks.ledgerOverRows).reduce((sum, n) => sum + Math.abs(n), 0) +
    Math.abs(duplicateChecks.auditRowsOverDistinct) +
    Math.abs(duplicateChecks.analyticsOverAudited);
  const auditExpected = followedLedger.find((c) => c.consumer === 'audit');
  const totalRequests = phases.reduce((sum, phase) => sum + phase.http.requests, 0);
  const totalUnexpected = phases.reduce(
    (sum, phase) => sum + phase.http.unexpectedStatus + phase.http.connectionErrors,
    0,
  );
  const unexpectedShare = totalRequests === 0 ? 0 : totalUnexpected / totalRequests;
  const best = busPhases.reduce<PhaseResult | undefined>(
    (top, phase) =>
      top === undefined || (phase.bus?.e2eEventsPerSec ?? 0) > (top.bus?.e2eEventsPerSec ?? 0) ? phase : top,
    undefined,
  );
  const bestE2e = best?.bus?.e2eEventsPerSec ?? 0;
  const ceilingShare = raw === undefined ? Number.NaN : bestE2e / raw.messagesPerSec;
  /** Requests/s carried end to end: the lower of what the API served and what the consumers applied. */
  const carried = busPhases.map((phase) => ({
    phase: phase.name,
    requestsPerSec: Math.min(phase.http.requestsPerSec, phase.bus?.e2eEventsPerSec ?? 0),
  }));
  const bestCarried = carried.reduce((top, c) => (c.requestsPerSec > top.requestsPerSec ? c : top), {
    phase: 'none',
    requestsPerSec: 0,
  });
  const p99Overhead =
    comparePhase !== undefined && offPhase !== undefined
      ? round(comparePhase.http.latencyMs.p99 - offPhase.http.latencyMs.p99, 3)
      : Number.NaN;
  const verdict = (met: boolean) => (met ? 'MET' : 'NOT MET');
  const goals = {
    ceilingShare: {
      met: ceilingShare >= GOALS.minCeilingShare && lost === 0,
      value: round(ceilingShare, 3),
      text: `sustained end-to-end ≥ ${GOALS.minCeilingShare * 100}% of the raw broker ceiling: ${formatNumber(bestE2e)} events/s (${best?.name ?? 'n/a'}) vs ${formatNumber(raw?.messagesPerSec ?? 0)} messages/s raw = ${formatNumber(100 * ceilingShare, 0)}%`,
    },
    requestsPerSec: {
      met: bestCarried.requestsPerSec >= GOALS.minRequestsPerSec && lost === 0,
      value: bestCarried.requestsPerSec,
      text: `≥ ${formatNumber(GOALS.minRequestsPerSec)} requests/s end to end with 0 lost: ${formatNumber(bestCarried.requestsPerSec)} req/s served and applied (${bestCarried.phase}), ${lost} lost`,
    },
    e2eLatency: {
      met:
        comparePhase?.bus !== null &&
        comparePhase?.bus !== undefined &&
        comparePhase.bus.e2eLatencyMs.p95 < GOALS.maxE2eP95Ms &&
        comparePhase.bus.e2eLatencyMs.p99 < GOALS.maxE2eP99Ms,
      value: comparePhase?.bus?.e2eLatencyMs ?? null,
      text: `at ${formatNumber(settings.compareRate)} req/s, e2e p95 < ${GOALS.maxE2eP95Ms} ms and p99 < ${GOALS.maxE2eP99Ms} ms: p95 ${ms(comparePhase?.bus?.e2eLatencyMs.p95)} ms, p99 ${ms(comparePhase?.bus?.e2eLatencyMs.p99)} ms (slowest consumer per event)`,
    },
    apiOverhead: {
      met: p99Overhead <= GOALS.maxApiP99OverheadMs,
      value: p99Overhead,
      text: `at ${formatNumber(settings.compareRate)} req/s, API p99 within ${GOALS.maxApiP99OverheadMs} ms of bus off: ${ms(comparePhase?.http.latencyMs.p99, 3)} vs ${ms(offPhase?.http.latencyMs.p99, 3)} ms (${formatDelta(p99Overhead, 3)} ms)`,
    },
    lost: { met: lost === 0, value: lost, text: `events lost: ${lost} (must be 0)` },
    duplicates: {
      met: duplicates === 0,
      value: duplicates,
      text: `duplicates applied: ${duplicates} (must be 0)`,
    },
    unexpected: {
      met: unexpectedShare < GOALS.maxUnexpectedShare,
      value: unexpectedShare,
      text: `unexpected HTTP errors (intended 4xx excluded): ${totalUnexpected} of ${formatNumber(totalRequests)} = ${formatNumber(100 * unexpectedShare, 3)}% (must be < ${GOALS.maxUnexpectedShare * 100}%)`,
    },
  };

  // ---------------------------------------------------------------------------------------------------
  // Tables, chart, files

  const sections: Section[] = [
    {
      title:
        'Phases (API latency: every response, exact; e2e: emit → the transaction of the slowest consumer per event)',
      columns: [
        'phase',
        'req/s',
        'API p50 ms',
        'API p95 ms',
        'API p99 ms',
        'e2e events/s',
        'e2e p50 ms',
        'e2e p95 ms',
        'e2e p99 ms',
        'drained after',
        'unexpected errors',
      ],
      rows: phases.map((phase) => [
        phase.name,
        formatNumber(phase.http.requestsPerSec),
        ms(phase.http.latencyMs.p50),
        ms(phase.http.latencyMs.p95),
        ms(phase.http.latencyMs.p99),
        phase.bus === null ? '(bus off)' : formatNumber(phase.bus.e2eEventsPerSec),
        ms(phase.bus?.e2eLatencyMs.p50),
        ms(phase.bus?.e2eLatencyMs.p95),
        ms(phase.bus?.e2eLatencyMs.p99),
        phase.bus === null ? '' : `${phase.bus.drainedAfterLoadS} s`,
        `${phase.http.unexpectedStatus + phase.http.connectionErrors} (${formatNumber(100 * phase.http.unexpectedShare, 3)}%)`,
      ]),
    },
    {
      title: "End-to-end latency per consumer (emit → the consumer's transaction), ms",
      columns: ['phase', 'consumer', 'events', 'applied/s under load', 'p50', 'p95', 'p99', 'max'],
      rows: busPhases.flatMap((phase) =>
        (phase.bus?.consumers ?? []).map((c) => [
          phase.name,
          c.consumer,
          formatNumber(c.events),
          formatNumber(c.appliedPerSecDuringLoad),
          ms(c.p50),
          ms(c.p95),
          ms(c.p99),
          ms(c.max),
        ]),
      ),
    },
    {
      title: 'Resources during each phase (cores: 1 = one core busy; RSS: peak, MiB, sampled every 250 ms)',
      columns: [
        'phase',
        'API cores',
        'worker cores',
        'RabbitMQ cores',
        'PostgreSQL cores (bench db / server)',
        'load generator cores',
        'others cores',
        'API RSS',
        'worker RSS',
        'RabbitMQ RSS',
        'PostgreSQL backends',
      ],
      rows: phases.map((phase) => {
        const known =
          (phase.cpu.processes.api?.cores ?? 0) +
          (phase.kind === 'bus-off' ? 0 : (phase.cpu.processes.worker?.cores ?? 0)) +
          (phase.cpu.processes.rabbitmq?.cores ?? 0) +
          (phase.postgresServerCores ?? 0) +
          phase.cpu.self.cores;
        const others =
          phase.cpu.machine === null ? null : Math.max(0, phase.cpu.machine.busy * env.cpus - known);
        return [
          phase.name,
          cores(phase.cpu.processes.api?.cores),
          cores(phase.cpu.processes.worker?.cores),
          cores(phase.cpu.processes.rabbitmq?.cores),
          `${cores(phase.postgresCores)} / ${cores(phase.postgresServerCores)}`,
          cores(phase.cpu.self.cores),
          cores(others),
          mib(phase.peakRssMiB.api),
          mib(phase.peakRssMiB.worker),
          mib(phase.peakRssMiB.rabbitmq),
          mib(phase.peakRssMiB.postgres),
        ];
      }),
    },
    {
      title: 'Raw broker ceiling (same run, before the system started)',
      columns: ['what', 'messages', 'seconds', 'messages/s', 'RabbitMQ cores', 'queues consumed'],
      rows: [
        [
          `amqplib confirm publish (window ${raw?.window}) → consume (prefetch ${raw?.prefetch}, acks)`,
          formatNumber(raw?.published ?? 0),
          String(raw?.seconds ?? 'n/a'),
          formatNumber(raw?.messagesPerSec ?? 0),
          cores(raw?.cpu.processes.rabbitmq?.cores),
          Object.keys(raw?.received ?? {}).join(', '),
        ],
      ],
    },
    {
      title: 'Loss and duplicates over the whole run (ledger after settling, and the tables)',
      columns: ['check', 'value'],
      rows: [
        [
          'ledger emitted / spooled / confirmed',
          `${formatNumber(ledgerNow.emitted)} / ${formatNumber(ledgerNow.spooled)} / ${formatNumber(ledgerNow.confirmed)}`,
        ],
        ['ledger dropped, unconfirmed', `${ledgerNow.dropped}, ${ledgerNow.unconfirmed}`],
        ...followedLedger.map((c) => [
          `${c.consumer}: expected / applied / missing; rows in applied_events`,
          `${formatNumber(c.expected)} / ${formatNumber(c.applied)} / ${c.missing}; ${formatNumber(tablesNow.appliedRows[c.consumer] ?? 0)}`,
        ]),
        [
          'audit_records rows / distinct event ids',
          `${formatNumber(tablesNow.auditRecords)} / ${formatNumber(tablesNow.auditDistinctEvents)}${auditExpected === undefined ? '' : ` (ledger expects ${formatNumber(auditExpected.expected)})`}`,
        ],
        [
          'analytics model queries counted / model.queried audited',
          `${formatNumber(tablesNow.analyticsQueries)} / ${formatNumber(tablesNow.modelQueriedAudited)}`,
        ],
        [
          'HTTP responses to the bus-on API (events it must have emitted, at least)',
          formatNumber(expectedEmitted),
        ],
        ['lost', String(lost)],
        ['duplicates applied', String(duplicates)],
      ],
    },
  ];
  const verdictLines = [
    `Goal: ${goals.ceilingShare.text} — ${verdict(goals.ceilingShare.met)}`,
    `Goal: ${goals.requestsPerSec.text} — ${verdict(goals.requestsPerSec.met)}`,
    `Goal: ${goals.e2eLatency.text} — ${verdict(goals.e2eLatency.met)}`,
    `Goal: ${goals.apiOverhead.text} — ${verdict(goals.apiOverhead.met)}`,
    `Check: ${goals.lost.text} — ${verdict(goals.lost.met)}; ${goals.duplicates.text} — ${verdict(goals.duplicates.met)}; ${goals.unexpected.text} — ${verdict(goals.unexpected.met)}`,
    ...(stoppedEarly === null ? [] : [`Stopped early: ${stoppedEarly}`]),
  ];
  const mixText = `mix per 20 requests: ${Object.entries(
    BLOCK.reduce<Record<string, number>>((counts, kind) => {
      counts[kind] = (counts[kind] ?? 0) + 1;
      return counts;
    }, {}),
  )
    .map(([kind, n]) => `${n} ${kind}`)
    .join(', ')} (bench/support/e2e-mix.ts)`;
  const settingsText = [
    `${settings.quick ? 'QUICK smoke run: ' : ''}${settings.durationS} s per phase; fixed rates ${settings.rates.map((r) => formatNumber(r)).join(', ')} req/s over max(10, rate/100) connections (autocannon overallRate: a per-connection quota per second, so requests come in bursts); max phase ${settings.maxConnections} connections; ${settings.warmupS} s warm-up per API; ${settings.models} seeded models`,
    mixText,
    `system: API = \`telemetry-bus start\` (CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn), worker = \`telemetry-bus worker --consumers ${consumers.join(',')}\`, separate processes on one database and one RabbitMQ vhost made for the run; bus-off API the same start with TELEMETRY_ENABLED=false on its own database (stopped after its phase)${hasMetrics ? '' : '; this build has no metrics consumer, so metrics.updates was purged after each phase and the metrics queue is not in the raw ceiling'}`,
    "e2e latency: applied_events.applied_at (audit: audit_records.recorded_at) − audit_records.occurred_at for the events stamped in the phase; applied_at is now() in the consumer's transaction (its start: the commit follows by the batch's apply time, so these are lower bounds by that much); occurred_at is whole ms, truncated (up to +1 ms)",
    'e2e events/s: the phase\'s events ÷ (last commit of any of them − phase start): a backlog drained after the load stopped counts against it; "drained after" is that last commit − the end of the load',
    `raw ceiling: ${raw === undefined ? 'n/a' : `${formatNumber(raw.published)} messages of the same event types in the same proportions, published for ${settings.rawDurationS} s with confirms through the real topology (quorum queues, persistent), consumed with acks every 100 (multiple) from ${Object.keys(raw.received).join(', ')}; rate = messages ÷ (first publish → last queue fully acknowledged)`}`,
    'CPU: /proc ticks of each process over the load (not the drain); PostgreSQL = backends of the bench database / the whole server (other databases of this shared machine included); "others" = the machine\'s busy cores minus all of these',
    `SHARED MACHINE: other sessions run tests and benchmarks on the same ${env.cpus} cores; load average at start ${env.loadAverageAtStart.join(' ')}`,
    environmentText(env, broker === undefined ? '' : `, RabbitMQ ${broker.version}`),
  ];
  const checks = [
    `process exits: ${Object.entries(exits)
      .map(
        ([name, exit]) =>
          `${name} code ${exit.code} after ${exit.stopMs} ms${exit.clean ? '' : ' (NOT CLEAN)'}`,
      )
      .join(', ')}`,
    `peak RSS over the process lifetime (VmHWM): API ${ms(apiHwmMiB, 1)} MiB, worker ${ms(workerHwmMiB, 1)} MiB`,
    `warnings logged: ${processes.map((p) => `${p.name} ${p.warnings.length}`).join(', ')}`,
    `GET /telemetry/ledger at the end: HTTP ${(httpLedger as { status?: number } | undefined)?.status ?? 'n/a'}`,
    `broker alarms after the run: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
  ];
  const chartPhases = phases;
  const svg = barChartSvg({
    title: 'telemetry-bus end to end: latency by phase',
    subtitle: `${settings.quick ? 'quick run, ' : ''}${settings.durationS} s per phase, ${startedAt.toISOString().slice(0, 16)}Z, shared 2-core machine; log scale`,
    groups: chartPhases.map((phase) => phase.name),
    series: [
      { name: 'API p99', color: '#888888', values: chartPhases.map((p) => p.http.latencyMs.p99) },
      { name: 'e2e p50', color: '#9ecae1', values: chartPhases.map((p) => p.bus?.e2eLatencyMs.p50 ?? null) },
      { name: 'e2e p95', color: '#4292c6', values: chartPhases.map((p) => p.bus?.e2eLatencyMs.p95 ?? null) },
      { name: 'e2e p99', color: '#08306b', values: chartPhases.map((p) => p.bus?.e2eLatencyMs.p99 ?? null) },
    ],
    yLabel: 'milliseconds',
    goals: [
      {
        value: GOALS.maxE2eP95Ms,
        label: `e2e p95 goal ${GOALS.maxE2eP95Ms} ms (at ${formatNumber(settings.compareRate)}/s)`,
      },
      { value: GOALS.maxE2eP99Ms, label: `e2e p99 goal ${GOALS.maxE2eP99Ms} ms` },
    ],
  });
  const svgPath = path.join(RESULTS_DIR, 'e2e-latency.svg');
  await publishResults({
    name: NAME,
    title: 'End to end: API → spool → RabbitMQ → consumers → PostgreSQL',
    startedAt,
    sections,
    verdicts: verdictLines,
    notes: { settings: settingsText, checks },
    command: commandLine('bench'),
    report: {
      benchmark: NAME,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      settings,
      environment: { ...env, rabbitmq: broker ?? null, sharedMachine: true },
      consumers,
      goals: { thresholds: GOALS, ...goals },
      rawCeiling: raw ?? null,
      phases,
      ledger: finalLedger ?? null,
      ledgerSettled: finalSettle?.settled ?? false,
      httpLedger: httpLedger ?? null,
      tables: tables ?? null,
      duplicateChecks,
      lost,
      duplicates,
      expectedEmitted,
      peakRssLifetimeMiB: { api: apiHwmMiB, worker: workerHwmMiB },
      processExits: exits,
      warnings: Object.fromEntries(processes.map((p) => [p.name, p.warnings.slice(0, 50)])),
      brokerAlarmsAfter: alarmsAfter,
      stoppedEarly,
    },
  });
  writeFileSync(svgPath, svg);
  progress(`wrote ${svgPath}`);
  const healthy =
    lost === 0 &&
    duplicates === 0 &&
    goals.unexpected.met &&
    stoppedEarly === null &&
    Object.values(exits).every((exit) => exit.clean);
  return healthy ? 0 : 1;
}

runMain(NAME, HELP, main);
