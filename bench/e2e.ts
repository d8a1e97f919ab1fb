/**
 * The end-to-end benchmark: the whole system, as separate processes, driven over HTTP, with every event
 * followed from the request that emitted it to the commit of each consumer that applied it. It prints
 * issue 15's goals table ("Half the CPU per event downstream") and writes it as the results' `goals`.
 *
 *   npm run bench -- [--duration 15] [--rate 1000] [--max-connections 50] [--quick] …
 *   npx telemetry-bus bench …   (the same script; --help lists every option and its variable)
 *
 * What runs, all on 127.0.0.1 and on databases and RabbitMQ vhosts made for the run and dropped after it:
 *   API          `telemetry-bus start`, CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, its own DATA_DIR
 *   worker       `telemetry-bus worker --consumers <every consumer of this build>`
 *   bus-off API  the same `start` with TELEMETRY_ENABLED=false on a database of its own (stopped after
 *                its phases)
 *   load         in this process, the request mix of bench/support/e2e-mix.ts: the paced open-model
 *                generator for the fixed-rate phases, autocannon for the maximum ones
 *
 * The phases, in order: the raw broker ceiling (bench/support/raw-ceiling.ts, in a vhost of its own,
 * before the system starts), a warm-up of both APIs, then
 *   1. bus on, maximum (autocannon, `max-connections`), and bus off, maximum: the share of the API's
 *      capacity the bus costs;
 *   2. bus off and bus on, paced at the comparison rate: `rate` (1,000/s), or 60% of the bus-on maximum
 *      where the machine cannot sustain it end to end (as issue 15's goals allow).
 * After every bus-on phase the benchmark waits (for `settle-timeout` s at most) until the loss ledger says
 * every event is confirmed and applied by every consumer. Per phase: API latency; µs of CPU per event per
 * process (API, worker, RabbitMQ, PostgreSQL backends, load generator) and per API thread; publish latency
 * (the API's telemetry_publish_latency_seconds); event age per consumer (the worker's
 * telemetry_consumer_event_age_seconds, and from PostgreSQL: applied_events.applied_at − the event's
 * timestamp, a lower bound by the batch's apply time); events/s applied end to end (the phase's events ÷
 * the last commit of any of them − phase start, so a backlog drained after the load counts against it).
 * The bus cost per event is the bus-on total − the bus-off total at the same paced rate; the raw ceiling's
 * CPU per message is its publishing process (which also runs its bare consumers) + RabbitMQ.
 * At the end: lost and duplicated events from the ledger and the tables, over the whole run.
 *
 * Everything is bounded in time; the processes are stopped, the databases dropped and the vhosts deleted in
 * a `finally`, also on Ctrl-C (a second Ctrl-C exits at once).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { QUEUES } from '../src/bus/topology.ts';
import { CONSUMER_NAMES } from '../src/config.ts';
import { LedgerQuery, type LedgerWindow } from '../src/ledger/ledger-query.ts';
import { LEDGER_CONSUMERS } from '../src/ledger/ledger-summary.ts';
import { type BrokerInfo, brokerAlarms, Environments, purgeQueues, waitForBroker } from './support/broker.ts';
import { findRabbitmqPid } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent, formatUs } from './support/cpu-per-event.ts';
import { createDatabase, dropDatabase } from './support/databases.ts';
import { BLOCK, type MixContext, mixRequests, StatusTally } from './support/e2e-mix.ts';
import { type Goal, judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { PeakMemory, statusKib } from './support/memory.ts';
import { mixMessages } from './support/mix-messages.ts';
import { commandLine, integer, option, toggle, url } from './support/options.ts';
import { findPostmasterPid } from './support/postgres-cpu.ts';
import { type RawCeilingResult, rawCeiling } from './support/raw-ceiling.ts';
import {
  environment,
  environmentText,
  formatDelta,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  type Section,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
import { ServiceHistograms, type ServiceLatencies, slowestConsumer } from './support/service-histograms.ts';
import { handleSignals, interruptible, runMain, sleep, throwIfInterrupted } from './support/settings.ts';
import { barChartSvg } from './support/svg-chart.ts';
import {
  type Api,
  assertRunning,
  type ProcessExit,
  type SystemProcess,
  startApi,
  startWorker,
  stopSystem,
} from './support/system-under-test.ts';

const NAME = 'e2e';

const cli = commandLine({
  script: 'bench',
  summary:
    "The whole system end to end (API → spool → RabbitMQ → consumers → PostgreSQL), bus on vs off, paced and\nat the maximum, with µs of CPU per event per process; prints issue 15's goals table.",
  options: {
    quick: toggle({
      flag: 'quick',
      env: 'BENCH_QUICK',
      help: 'a smoke run: 5 s phases, 1 s warm-up, 200 models',
    }),
    durationS: option({
      flag: 'duration',
      env: 'BENCH_DURATION',
      arg: '<s>',
      default: (earlier) => (earlier.quick === true ? '5' : '15'),
      parse: integer(1),
      help: 'measured seconds per phase',
    }),
    rate: option({
      flag: 'rate',
      env: 'BENCH_RATE',
      arg: '<n>',
      default: '1000',
      parse: integer(1),
      help: 'paced rate of the bus on/off comparison, req/s (60% of the bus-on maximum if that is lower)',
    }),
    maxConnections: option({
      flag: 'max-connections',
      env: 'BENCH_MAX_CONNECTIONS',
      arg: '<n>',
      default: '50',
      parse: integer(0),
      help: 'autocannon connections of the maximum phases; 0 = none',
    }),
    warmupS: option({
      flag: 'warmup',
      env: 'BENCH_WARMUP',
      arg: '<s>',
      default: (earlier) => (earlier.quick === true ? '1' : '3'),
      parse: integer(0),
      help: 'unmeasured seconds per API before the phases',
    }),
    models: option({
      flag: 'models',
      env: 'BENCH_MODELS',
      arg: '<n>',
      default: (earlier) => (earlier.quick === true ? '200' : '500'),
      parse: integer(20),
      help: 'models seeded in each database',
    }),
    rawDurationS: option({
      flag: 'raw-duration',
      env: 'BENCH_RAW_DURATION',
      arg: '<s>',
      default: (earlier) => String(Math.min(10, earlier.durationS as number)),
      parse: integer(1),
      help: 'seconds of publishing of the raw ceiling (default: the duration, 10 at most)',
    }),
    settleTimeoutS: option({
      flag: 'settle-timeout',
      env: 'BENCH_SETTLE_TIMEOUT',
      arg: '<s>',
      default: '180',
      parse: integer(1),
      help: 'wait after a phase for every event applied',
    }),
    pgServerUrl: option({
      flag: 'pg-url',
      env: 'BENCH_PG_URL',
      arg: '<url>',
      default: 'postgres://root@127.0.0.1:5432',
      parse: url,
      help: 'PostgreSQL server for the databases',
    }),
  },
});
type Settings = ReturnType<typeof cli.read>;

/** Issue 15's goals, named as its table names them. */
const GOALS = {
  busCost: {
    name: 'bus cost per event (all processes, bus on − bus off at the same rate) ÷ raw ceiling’s CPU per message',
    threshold: 2,
    comparison: '<=',
    unit: 'ratio',
    issue: 15,
  },
  sustained: {
    name: 'sustained end to end, everything on one machine, ÷ raw ceiling',
    threshold: 0.35,
    comparison: '>=',
    unit: 'ratio',
    issue: 15,
  },
  ageP95: {
    name: 'event age at the slowest consumer, p95, at 1,000 events/s (or at 60% of the maximum)',
    threshold: 50,
    comparison: '<',
    unit: 'ms',
    issue: 15,
  },
  ageP99: {
    name: 'event age at the slowest consumer, p99, at 1,000 events/s (or at 60% of the maximum)',
    threshold: 100,
    comparison: '<',
    unit: 'ms',
    issue: 15,
  },
  consumers: {
    name: 'each consumer (bench:consumers) ÷ the bare batched insert loop',
    threshold: 0.7,
    comparison: '>=',
    unit: 'ratio',
    issue: 15,
  },
  lost: { name: 'lost', threshold: 0, comparison: '=', unit: 'events', issue: 15 },
  duplicated: { name: 'duplicated', threshold: 0, comparison: '=', unit: 'events', issue: 15 },
  unexpected: { name: 'unexpected HTTP errors', threshold: 0.1, comparison: '<', unit: '%', issue: 15 },
} as const;

type PhaseKind = 'max' | 'paced';
type Bus = 'on' | 'off';

interface HttpResult extends LoadResult {
  statusByKind: Record<string, Record<string, number>>;
  intendedErrors: number;
  unexpectedStatus: number;
  /** (unexpected statuses + connection errors + time-outs) ÷ requests sent. */
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
  bus: Bus;
  startedAt: string;
  http: HttpResult;
  cpu: CpuPerEvent;
  peakRssMiB: Record<string, number | null>;
  /** The service's histograms over the phase (bus on). */
  service: ServiceLatencies | null;
  /** Bus-on phases only. */
  e2e: {
    events: number;
    settled: boolean;
    settleMs: number;
    /** The last commit of the phase's events, seconds after the load stopped (the backlog's drain). */
    drainedAfterLoadS: number;
    e2eEventsPerSec: number;
    /** Per event, the slowest consumer (from PostgreSQL). */
    e2eLatencyMs: { p50: number; p95: number; p99: number; max: number };
    consumers: ConsumerLatency[];
  } | null;
}

interface Target {
  api: Api;
  database: string;
  /** Requests the benchmark sent it outside measured phases (seeding, warm-up): each is an event. */
  otherRequests: number;
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
// Main

const ms = (value: number | null | undefined, digits = 2) =>
  value === null || value === undefined || Number.isNaN(value) ? 'n/a' : formatNumber(value, digits);
const mib = (value: number | null | undefined) =>
  value === null || value === undefined ? 'n/a' : formatNumber(value, 0);

function httpResult(load: LoadResult, tally: StatusTally): HttpResult {
  const requests = load.responses + load.errors + load.timeouts;
  const unexpected = tally.unexpected + load.errors + load.timeouts;
  return {
    ...load,
    statusByKind: tally.counts,
    intendedErrors: tally.intendedErrors,
    unexpectedStatus: tally.unexpected,
    unexpectedShare: requests === 0 ? 0 : unexpected / requests,
  };
}

async function main(): Promise<number> {
  const settings: Settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const tag = randomBytes(4).toString('hex');
  const databases: Record<Bus, string> = { on: `tb_bench_e2e_${tag}`, off: `tb_bench_e2e_${tag}_off` };
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
  let compareRate = settings.rate;

  try {
    broker = await waitForBroker();
    const rabbitPid = findRabbitmqPid();
    const postmaster = findPostmasterPid();
    progress(`consumers in this build: ${consumers.join(', ')}`);

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
          messages: mixMessages(2000),
          queues: consumedQueues,
          durationS: settings.rawDurationS,
          pids: { rabbitmq: rabbitPid },
        }),
      );
      progress(
        `  ${formatNumber(raw.messagesPerSec)} messages/s (${formatNumber(raw.published)} in ${raw.seconds} s), RabbitMQ ${raw.cpu.processes.rabbitmq?.cores ?? 'n/a'} cores`,
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
    const on: Target = {
      api: await startApi(
        {
          label: 'api',
          databaseUrl: `${settings.pgServerUrl}/${databases.on}`,
          env: { ...busEnv.env, TELEMETRY_ENABLED: 'true' },
        },
        processes,
      ),
      database: databases.on,
      otherRequests: 1,
    };
    const worker = await startWorker(
      {
        label: 'worker',
        databaseUrl: on.api.databaseUrl,
        rabbitmqUrl: busEnv.env.RABBITMQ_URL,
        consumers,
        env: { DATA_DIR: workerDir },
      },
      processes,
    );
    const off: Target = {
      api: await startApi(
        {
          label: 'api-bus-off',
          databaseUrl: `${settings.pgServerUrl}/${databases.off}`,
          env: { RABBITMQ_URL: busEnv.env.RABBITMQ_URL, DATA_DIR: offDir, TELEMETRY_ENABLED: 'false' },
        },
        processes,
      ),
      database: databases.off,
      otherRequests: 0,
    };
    progress(
      `API pid ${on.api.pid} at ${on.api.url}, worker pid ${worker.pid}, bus-off API pid ${off.api.pid}`,
    );

    pool = new pg.Pool({ connectionString: on.api.databaseUrl, max: 2 });
    pool.on('error', () => {});
    const ledger = new LedgerQuery(pool);
    // The ledger counts per minute of the events' timestamps: from the minute before anything was sent.
    const ledgerFrom = new Date(Date.now() - 60_000);

    const seeded = await Promise.all(
      [on, off].map((target) =>
        seedModels(target.api.url, target.api.key, settings.models, { throwIfInterrupted, interruptible }),
      ),
    );
    on.otherRequests += settings.models;
    const seededIds: Record<Bus, string[]> = { on: seeded[0] as string[], off: seeded[1] as string[] };
    progress(`seeded ${settings.models} models in each database`);
    const mixOf = (phase: string, bus: Bus): MixContext => ({
      seededIds: seededIds[bus],
      tag: `${tag}-${phase}`,
      tally: new StatusTally(),
      registered: { next: 0 },
    });

    if (settings.warmupS > 0) {
      for (const [target, bus] of [
        [on, 'on'],
        [off, 'off'],
      ] as const) {
        const mix = mixOf(`warmup-${bus}`, bus);
        await runLoad({
          url: target.api.url,
          key: target.api.key,
          durationS: settings.warmupS,
          rate: settings.rate,
          requests: (lane, lanes) => mixRequests(mix, lane, lanes),
        });
        target.otherRequests += mix.tally.total;
      }
    }
    const settleNow = (minEmitted: number, timeoutS: number) =>
      settle(ledger, ledgerFrom, followed, minEmitted, timeoutS, [on.api.process, worker.process]);
    // Nothing of the warm-up (or the seeding) may still be in transit when the first phase starts.
    const warm = await settleNow(on.otherRequests, settings.settleTimeoutS);
    if (!warm.settled)
      throw new Error(`the warm-up's events did not settle within ${settings.settleTimeoutS} s`);
    if (!hasMetrics) await purgeQueues(busEnv.env.RABBITMQ_URL, [QUEUES.metrics]);
    expectedEmitted = on.otherRequests;

    const runPhase = async (name: string, kind: PhaseKind, bus: Bus, rate?: number): Promise<PhaseResult> => {
      const target = bus === 'on' ? on : off;
      assertRunning(target.api.process, worker.process);
      await waitForBroker();
      const mix = mixOf(name.replace(/[^a-z0-9]+/gi, ''), bus);
      const pids = {
        api: target.api.pid,
        ...(bus === 'on' ? { worker: worker.pid } : {}),
        rabbitmq: rabbitPid,
      };
      const memory = new PeakMemory({ processes: pids, postgres: { postmaster, database: target.database } });
      const meter = new CpuMeter({
        processes: pids,
        postgres: { postmaster, database: target.database },
        threadsOf: ['api'],
      });
      const histograms = bus === 'on' ? new ServiceHistograms({ api: on.api, worker }) : undefined;
      await histograms?.start();
      progress(`phase ${name}`);
      const phaseStart = new Date();
      meter.start();
      const load = await runLoad({
        url: target.api.url,
        key: target.api.key,
        durationS: settings.durationS,
        requests: (lane, lanes) => mixRequests(mix, lane, lanes),
        label: name,
        ...(kind === 'paced' ? { rate } : { connections: settings.maxConnections }),
      });
      const loadEnd = new Date();
      const cpu = meter.stop(load.responses);
      const http = httpResult(load, mix.tally);
      progress(
        `  ${formatNumber(http.requestsPerSec)} req/s, API p50 ${ms(http.latencyMs.p50)} p99 ${ms(http.latencyMs.p99)} ms, ${formatUs(cpu.totalUsPerEvent)} µs CPU/event, unexpected ${http.unexpectedStatus + http.errors + http.timeouts}`,
      );
      if (bus === 'off') {
        return {
          name,
          kind,
          bus,
          startedAt: phaseStart.toISOString(),
          http,
          cpu,
          peakRssMiB: { ...memory.stop(), worker: null },
          service: null,
          e2e: null,
        };
      }
      // Every response is an event; requests cut off by the end of the run may be events too.
      expectedEmitted += mix.tally.total;
      const settled = await settleNow(expectedEmitted, settings.settleTimeoutS);
      const service = (await histograms?.stop()) ?? null;
      const peak = memory.stop();
      const latency = await phaseLatency(pool as pg.Pool, phaseStart, new Date(), loadEnd);
      const lastApplied = Math.max(
        ...latency.perConsumer.map((row) => row.last_applied_ms),
        phaseStart.getTime(),
      );
      const loadSeconds = (loadEnd.getTime() - phaseStart.getTime()) / 1000;
      const phase: PhaseResult = {
        name,
        kind,
        bus,
        startedAt: phaseStart.toISOString(),
        http,
        cpu,
        peakRssMiB: peak,
        service,
        e2e: {
          events: latency.events,
          settled: settled.settled,
          settleMs: settled.ms,
          drainedAfterLoadS: round(Math.max(0, lastApplied - loadEnd.getTime()) / 1000, 2),
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
        },
      };
      progress(
        `  ${formatNumber(latency.events)} events, e2e ${formatNumber(phase.e2e?.e2eEventsPerSec ?? 0)} events/s, p95 ${ms(latency.e2e.p95)} ms, drained ${phase.e2e?.drainedAfterLoadS} s after the load${settled.settled ? '' : ' — NOT SETTLED'}`,
      );
      if (!hasMetrics) await purgeQueues(busEnv.env.RABBITMQ_URL, [QUEUES.metrics]);
      if (!settled.settled) {
        stoppedEarly = `phase ${name} did not settle within ${settings.settleTimeoutS} s: later phases skipped`;
        progress(stoppedEarly);
      }
      return phase;
    };

    // 3. The phases: the maxima, then bus off and on at the same paced rate.
    if (settings.maxConnections > 0) {
      const maxOn = await runPhase('bus on, max', 'max', 'on');
      phases.push(maxOn);
      if (stoppedEarly === null) phases.push(await runPhase('bus off, max', 'max', 'off'));
      const sustained = maxOn.e2e?.e2eEventsPerSec ?? 0;
      if (sustained > 0 && sustained < settings.rate) {
        compareRate = Math.max(1, Math.round(0.6 * sustained));
        progress(
          `the machine sustained ${formatNumber(sustained)} events/s at most: the paced phases run at 60% of it, ${formatNumber(compareRate)}/s`,
        );
      }
    }
    if (stoppedEarly === null) {
      phases.push(await runPhase(`bus off, ${formatNumber(compareRate)}/s`, 'paced', 'off', compareRate));
      await stopSystem([off.api.process], exits);
      phases.push(await runPhase(`bus on, ${formatNumber(compareRate)}/s`, 'paced', 'on', compareRate));
    }

    // 4. Loss and duplicates over the whole run.
    finalSettle = await settleNow(expectedEmitted, stoppedEarly === null ? 30 : 5);
    finalLedger = finalSettle.ledger;
    tables = await tableChecks(pool);
    const response = await fetch(
      `${on.api.url}/telemetry/ledger?from=${encodeURIComponent(ledgerFrom.toISOString())}`,
      { headers: { 'x-api-key': on.api.key }, signal: AbortSignal.timeout(10_000) },
    );
    httpLedger = { status: response.status, body: await response.json() };
    apiHwmMiB = round((statusKib(on.api.pid, 'VmHWM') ?? Number.NaN) / 1024, 1);
    workerHwmMiB = round((statusKib(worker.pid, 'VmHWM') ?? Number.NaN) / 1024, 1);
    alarmsAfter = await brokerAlarms();
  } catch (error) {
    failure = error;
  } finally {
    await stopSystem(processes, exits);
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
  // Loss, duplicates, goals

  const ledgerNow = finalLedger as LedgerWindow;
  const tablesNow = tables as TableChecks;
  const followedLedger = ledgerNow.consumers.filter((c) => followed.includes(c.consumer));
  const lost =
    ledgerNow.dropped +
    ledgerNow.unconfirmed +
    followedLedger.reduce((sum, c) => sum + Math.max(0, c.missing), 0);
  const duplicateChecks = {
    /**
     * Ledger 'applied' beyond the distinct events recorded as applied, for the consumers that keep a row
     * per applied event (those that de-duplicate by producer stream keep none: their copies are caught by
     * the table checks below).
     */
    ledgerOverRows: Object.fromEntries(
      followedLedger
        .filter((c) => (tablesNow.appliedRows[c.consumer] ?? 0) > 0)
        .map((c) => [c.consumer, c.applied - (tablesNow.appliedRows[c.consumer] ?? 0)]),
    ),
    auditRowsOverDistinct: tablesNow.auditRecords - tablesNow.auditDistinctEvents,
    analyticsOverAudited: tablesNow.analyticsQueries - tablesNow.modelQueriedAudited,
  };
  const duplicates =
    Object.values(duplicateChecks.ledgerOverRows).reduce((sum, n) => sum + Math.abs(n), 0) +
    Math.abs(duplicateChecks.auditRowsOverDistinct) +
    Math.abs(duplicateChecks.analyticsOverAudited);
  const auditExpected = followedLedger.find((c) => c.consumer === 'audit');
  const totalRequests = phases.reduce(
    (sum, p) => sum + p.http.responses + p.http.errors + p.http.timeouts,
    0,
  );
  const totalUnexpected = phases.reduce(
    (sum, p) => sum + p.http.unexpectedStatus + p.http.errors + p.http.timeouts,
    0,
  );
  const unexpectedShare = totalRequests === 0 ? 0 : totalUnexpected / totalRequests;
  const find = (kind: PhaseKind, bus: Bus) => phases.find((p) => p.kind === kind && p.bus === bus);
  const pacedOn = find('paced', 'on');
  const pacedOff = find('paced', 'off');
  const maxOn = find('max', 'on');
  const maxOff = find('max', 'off');
  const busPhases = phases.filter((p) => p.e2e !== null);
  const best = busPhases.reduce<PhaseResult | undefined>(
    (top, p) =>
      top === undefined || (p.e2e?.e2eEventsPerSec ?? 0) > (top.e2e?.e2eEventsPerSec ?? 0) ? p : top,
    undefined,
  );
  const bestE2e = best?.e2e?.e2eEventsPerSec ?? 0;
  /** The raw ceiling's CPU per message: its publishing (and bare consuming) process + RabbitMQ. */
  const rawSelfUs = raw === undefined ? null : raw.cpu.self.userUs + raw.cpu.self.systemUs;
  const rawBrokerCpu = raw?.cpu.processes.rabbitmq;
  const rawUsPerMessage =
    raw === undefined || rawSelfUs === null || rawBrokerCpu == null || raw.published === 0
      ? null
      : round((rawSelfUs + rawBrokerCpu.userUs + rawBrokerCpu.systemUs) / raw.published, 1);
  const busCostUs =
    pacedOn?.cpu.totalUsPerEvent == null || pacedOff?.cpu.totalUsPerEvent == null
      ? null
      : round(pacedOn.cpu.totalUsPerEvent - pacedOff.cpu.totalUsPerEvent, 1);
  const slowest = slowestConsumer(pacedOn?.service?.eventAgeMs ?? null);
  const slowestSql = (pacedOn?.e2e?.consumers ?? []).reduce<ConsumerLatency | undefined>(
    (top, c) => (top === undefined || c.p95 > top.p95 ? c : top),
    undefined,
  );
  const age =
    slowest !== undefined
      ? {
          consumer: slowest.consumer,
          p95: slowest.age.p95,
          p99: slowest.age.p99,
          source: 'telemetry_consumer_event_age_seconds',
        }
      : slowestSql !== undefined
        ? {
            consumer: slowestSql.consumer,
            p95: slowestSql.p95,
            p99: slowestSql.p99,
            source: 'PostgreSQL applied_at − timestamp (no histogram in this build)',
          }
        : undefined;
  const ageNote =
    age === undefined
      ? 'not measured'
      : `${age.consumer} at ${formatNumber(compareRate)}/s paced (${formatNumber(pacedOn?.http.requestsPerSec ?? 0)} served), ${age.source}`;
  const goals: Goal[] = [
    judge(
      GOALS.busCost,
      busCostUs === null || rawUsPerMessage === null || rawUsPerMessage === 0
        ? null
        : round(busCostUs / rawUsPerMessage, 2),
      `${formatUs(busCostUs)} µs per event (bus on ${formatUs(pacedOn?.cpu.totalUsPerEvent)} − off ${formatUs(pacedOff?.cpu.totalUsPerEvent)} at ${formatNumber(compareRate)}/s) ÷ ${formatUs(rawUsPerMessage)} µs per raw message`,
    ),
    judge(
      GOALS.sustained,
      raw === undefined || lost !== 0 ? null : round(bestE2e / raw.messagesPerSec, 3),
      `${formatNumber(bestE2e)} events/s (${best?.name ?? 'n/a'}) ÷ ${formatNumber(raw?.messagesPerSec ?? 0)} raw messages/s${lost === 0 ? '' : `; ${lost} LOST, so not counted`}`,
    ),
    judge(GOALS.ageP95, age?.p95, ageNote),
    judge(GOALS.ageP99, age?.p99, ageNote),
    judge(GOALS.consumers, null, 'measured by `npm run bench:consumers`, not by this run'),
    judge(GOALS.lost, lost, 'ledger after settling, over the whole run'),
    judge(GOALS.duplicated, duplicates, 'ledger vs tables, over the whole run'),
    judge(
      GOALS.unexpected,
      round(100 * unexpectedShare, 3),
      `${totalUnexpected} of ${formatNumber(totalRequests)} requests (intended 4xx excluded)`,
    ),
  ];

  // ---------------------------------------------------------------------------------------------------
  // Tables, chart, files

  const usOf = (phase: PhaseResult, name: string) => formatUs(phase.cpu.processes[name]?.usPerEvent);
  const sections: Section[] = [
    {
      title:
        'Phases (API latency: paced from each intended send time, max from the send; e2e: emit → the slowest consumer’s transaction; ms)',
      columns: [
        'phase',
        'req/s',
        'API p50',
        'API p95',
        'API p99',
        'publish p50/p95/p99',
        'e2e events/s',
        'e2e p50',
        'e2e p95',
        'e2e p99',
        'drained after',
        'unexpected',
      ],
      rows: phases.map((p) => [
        p.name,
        formatNumber(p.http.requestsPerSec),
        ms(p.http.latencyMs.p50),
        ms(p.http.latencyMs.p95),
        ms(p.http.latencyMs.p99),
        p.service?.publishLatencyMs
          ? `${ms(p.service.publishLatencyMs.p50)}/${ms(p.service.publishLatencyMs.p95)}/${ms(p.service.publishLatencyMs.p99)}`
          : p.bus === 'on'
            ? 'n/a'
            : '',
        p.e2e === null ? '(bus off)' : formatNumber(p.e2e.e2eEventsPerSec),
        ms(p.e2e?.e2eLatencyMs.p50),
        ms(p.e2e?.e2eLatencyMs.p95),
        ms(p.e2e?.e2eLatencyMs.p99),
        p.e2e === null ? '' : `${p.e2e.drainedAfterLoadS} s`,
        `${p.http.unexpectedStatus + p.http.errors + p.http.timeouts} (${formatNumber(100 * p.http.unexpectedShare, 3)}%)`,
      ]),
    },
    {
      title: 'Bus on vs off: the API’s capacity and the bus cost per event',
      columns: ['measure', 'bus on', 'bus off', 'on − off', 'on ÷ off'],
      rows: [
        [
          'maximum req/s (autocannon)',
          formatNumber(maxOn?.http.requestsPerSec ?? 0),
          formatNumber(maxOff?.http.requestsPerSec ?? 0),
          formatDelta((maxOn?.http.requestsPerSec ?? 0) - (maxOff?.http.requestsPerSec ?? 0), 0),
          maxOff === undefined || maxOn === undefined
            ? 'n/a'
            : formatNumber(maxOn.http.requestsPerSec / maxOff.http.requestsPerSec, 2),
        ],
        [
          `API p50 / p99 at ${formatNumber(compareRate)}/s paced, ms`,
          `${ms(pacedOn?.http.latencyMs.p50)} / ${ms(pacedOn?.http.latencyMs.p99)}`,
          `${ms(pacedOff?.http.latencyMs.p50)} / ${ms(pacedOff?.http.latencyMs.p99)}`,
          pacedOn === undefined || pacedOff === undefined
            ? 'n/a'
            : `${formatDelta(pacedOn.http.latencyMs.p50 - pacedOff.http.latencyMs.p50)} / ${formatDelta(pacedOn.http.latencyMs.p99 - pacedOff.http.latencyMs.p99)}`,
          '',
        ],
        [
          `µs of CPU per event, all processes, at ${formatNumber(compareRate)}/s`,
          formatUs(pacedOn?.cpu.totalUsPerEvent),
          formatUs(pacedOff?.cpu.totalUsPerEvent),
          formatUs(busCostUs),
          '',
        ],
        [
          'raw ceiling: µs of CPU per message (publishing process + RabbitMQ)',
          formatUs(rawUsPerMessage),
          '',
          '',
          '',
        ],
      ],
    },
    {
      title: 'µs of CPU per event, per process (PostgreSQL: backends of the phase’s database)',
      columns: [
        'phase',
        'API',
        'API request thread',
        'API other threads',
        'worker',
        'RabbitMQ',
        'PostgreSQL',
        'load generator',
        'total',
        'machine busy',
        'API RSS MiB',
        'worker RSS MiB',
      ],
      rows: phases.map((p) => {
        const threads = p.cpu.threads.api ?? [];
        return [
          p.name,
          usOf(p, 'api'),
          formatUs(threads.find((t) => t.role === 'main')?.usPerEvent),
          formatUs(
            threads.filter((t) => t.role === 'helper').reduce((sum, t) => sum + (t.usPerEvent ?? 0), 0),
          ),
          p.bus === 'on' ? usOf(p, 'worker') : '',
          usOf(p, 'rabbitmq'),
          usOf(p, 'postgres'),
          usOf(p, 'load generator'),
          formatUs(p.cpu.totalUsPerEvent),
          p.cpu.machineBusy === null ? 'n/a' : `${Math.round(p.cpu.machineBusy * 100)}%`,
          mib(p.peakRssMiB.api),
          mib(p.peakRssMiB.worker),
        ];
      }),
    },
    {
      title:
        'Event age per consumer, bus-on phases (ms): the worker’s histogram, and PostgreSQL’s applied_at',
      columns: [
        'phase',
        'consumer',
        'events',
        'histogram p50/p95/p99',
        'PostgreSQL p50/p95/p99',
        'applied/s under load',
      ],
      rows: busPhases.flatMap((p) => {
        // Every consumer either source knows (only some keep a row per event in PostgreSQL).
        const names = [
          ...new Set([
            ...Object.keys(p.service?.eventAgeMs ?? {}),
            ...(p.e2e?.consumers ?? []).map((c) => c.consumer),
          ]),
        ].sort();
        return names.map((consumer) => {
          const h = p.service?.eventAgeMs?.[consumer];
          const c = p.e2e?.consumers.find((row) => row.consumer === consumer);
          return [
            p.name,
            consumer,
            formatNumber(h?.count ?? c?.events ?? 0),
            h === undefined ? 'n/a' : `${ms(h.p50)}/${ms(h.p95)}/${ms(h.p99)}`,
            c === undefined ? 'n/a' : `${ms(c.p50)}/${ms(c.p95)}/${ms(c.p99)}`,
            c === undefined ? 'n/a' : formatNumber(c.appliedPerSecDuringLoad),
          ];
        });
      }),
    },
    {
      title: 'Raw broker ceiling (same run, before the system started)',
      columns: [
        'what',
        'messages',
        'seconds',
        'messages/s',
        'µs CPU/msg (publisher process + RabbitMQ)',
        'queues consumed',
      ],
      rows: [
        [
          `amqplib confirm publish (window ${raw?.window}) → consume (prefetch ${raw?.prefetch}, acks)`,
          formatNumber(raw?.published ?? 0),
          String(raw?.seconds ?? 'n/a'),
          formatNumber(raw?.messagesPerSec ?? 0),
          formatUs(rawUsPerMessage),
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
        ['lost', String(lost)],
        ['duplicates applied', String(duplicates)],
      ],
    },
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
    ...cli.settingsBlock(settings),
    `comparison rate: ${formatNumber(compareRate)}/s${compareRate === settings.rate ? '' : ` (60% of the bus-on maximum; --rate ${formatNumber(settings.rate)} was more than the machine sustained)`}; paced: the open-model generator (evenly spaced, latency from each intended send time); max: autocannon, ${settings.maxConnections} connections`,
    mixText,
    `system: API = \`telemetry-bus start\` (CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn), worker = \`telemetry-bus worker --consumers ${consumers.join(',')}\`, on one database and one RabbitMQ vhost made for the run; bus-off API the same start with TELEMETRY_ENABLED=false on its own database`,
    'CPU: /proc ticks of each process over the load (not the drain) ÷ the phase’s responses; PostgreSQL = backends of the phase’s database; total = API + worker (bus on) + RabbitMQ + PostgreSQL + load generator',
    "e2e latency (PostgreSQL): applied_events.applied_at (audit: audit_records.recorded_at) − audit_records.occurred_at; applied_at is now() at the start of the consumer's transaction, so a lower bound by the batch's apply time",
    `raw ceiling: ${raw === undefined ? 'n/a' : `${formatNumber(raw.published)} messages of the mix, confirmed, through the real topology for ${settings.rawDurationS} s, consumed with acks from ${Object.keys(raw.received).join(', ')}; its CPU per message = this process (publisher and bare consumers) + RabbitMQ`}`,
    `SHARED MACHINE: other sessions use the same ${env.cpus} cores; load average at start ${env.loadAverageAtStart.join(' ')}`,
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
    ...(stoppedEarly === null ? [] : [`STOPPED EARLY: ${stoppedEarly}`]),
  ];
  const ageGoal = GOALS.ageP95.threshold;
  const svg = barChartSvg({
    title: 'telemetry-bus end to end: latency by phase',
    subtitle: `${settings.quick ? 'quick run, ' : ''}${settings.durationS} s per phase, ${startedAt.toISOString().slice(0, 16)}Z, shared 2-core machine; log scale`,
    groups: phases.map((p) => p.name),
    series: [
      { name: 'API p99', color: '#888888', values: phases.map((p) => p.http.latencyMs.p99) },
      {
        name: 'publish p95',
        color: '#74c476',
        values: phases.map((p) => p.service?.publishLatencyMs?.p95 ?? null),
      },
      { name: 'e2e p95', color: '#4292c6', values: phases.map((p) => p.e2e?.e2eLatencyMs.p95 ?? null) },
      { name: 'e2e p99', color: '#08306b', values: phases.map((p) => p.e2e?.e2eLatencyMs.p99 ?? null) },
    ],
    yLabel: 'milliseconds',
    goals: [
      { value: ageGoal, label: `event age p95 goal ${ageGoal} ms (paced)` },
      { value: GOALS.ageP99.threshold, label: `p99 goal ${GOALS.ageP99.threshold} ms` },
    ],
  });
  await publishResults({
    name: NAME,
    title: 'End to end: API → spool → RabbitMQ → consumers → PostgreSQL',
    startedAt,
    goals: { title: 'Goals (issue 15: half the CPU per event downstream)', goals },
    chart: { file: 'e2e-latency.svg', svg, caption: 'End-to-end latency by phase' },
    sections,
    verdicts: [],
    notes: { settings: settingsText, checks },
    command: invocation('bench'),
    report: {
      benchmark: NAME,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      settings,
      compareRate,
      environment: { ...env, rabbitmq: broker ?? null, sharedMachine: true },
      consumers,
      rawCeiling: raw === undefined ? null : { ...raw, usPerMessage: rawUsPerMessage },
      busCostUsPerEvent: busCostUs,
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
  const healthy =
    lost === 0 &&
    duplicates === 0 &&
    unexpectedShare < 0.001 &&
    stoppedEarly === null &&
    Object.values(exits).every((exit) => exit.clean);
  return healthy ? 0 : 1;
}

runMain(NAME, cli.help(), main);
