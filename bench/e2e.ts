/**
 * The end-to-end benchmark (`npm run bench`): the whole system, as separate processes, driven over HTTP,
 * with every event followed from the request that emitted it to the commit of each consumer that applied
 * it; prints issue 15's goals table. Its phases and how each figure is measured: bench/README.md.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { QUEUES } from '../src/bus/topology.ts';
import { CONSUMER_NAMES } from '../src/consumers/consumer-names.ts';
import { LedgerQuery, type LedgerWindow } from '../src/ledger/ledger-query.ts';
import { LEDGER_CONSUMERS } from '../src/ledger/ledger-summary.ts';
import {
  type BrokerInfo,
  type BusEnvironment,
  brokerAlarms,
  purgeQueues,
  waitForBroker,
} from './support/broker.ts';
import { type Bus, BusOnOff, exitsText } from './support/bus-on-off.ts';
import { findRabbitmqPid } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent, cpuColumns, formatUs } from './support/cpu-per-event.ts';
import { BLOCK, type MixContext, mixRequests, StatusTally } from './support/e2e-mix.ts';
import { type Goal, goal, judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { PeakMemory, statusKib } from './support/memory.ts';
import { mixMessages } from './support/mix-messages.ts';
import { commandLine, flag, integer, onOff, url } from './support/options.ts';
import { findPostmasterPid } from './support/postgres-cpu.ts';
import { type RawCeilingResult, rawCeiling } from './support/raw-ceiling.ts';
import {
  environment,
  environmentText,
  formatDelta,
  formatMs,
  formatNumber,
  formatTriple,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  type Section,
  table,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
import { ServiceHistograms, type ServiceLatencies, slowestConsumer } from './support/service-histograms.ts';
import { handleSignals, interruptible, runMain, sleep } from './support/settings.ts';
import { barChartSvg } from './support/svg-chart.ts';
import {
  type Api,
  assertRunning,
  type SystemProcess,
  stopSystem,
  type Worker,
} from './support/system-under-test.ts';

const NAME = 'e2e';

const cli = commandLine({
  script: 'bench',
  summary:
    "The whole system end to end (API → spool → RabbitMQ → consumers → PostgreSQL), bus on vs off, paced and\nat the maximum, with µs of CPU per event per process; prints issue 15's goals table.",
  options: {
    quick: onOff('quick', 'a smoke run: 5 s phases, 1 s warm-up, 200 models'),
    durationS: flag('duration', (e) => (e.quick ? '5' : '15'), integer(1), 'measured seconds per phase', {
      arg: '<s>',
    }),
    rate: flag(
      'rate',
      '1000',
      integer(1),
      'paced rate of the on/off comparison, req/s (60% of the bus-on max if lower)',
    ),
    maxConnections: flag(
      'max-connections',
      '50',
      integer(0),
      'autocannon connections of the max phases; 0 = none',
    ),
    warmupS: flag('warmup', (e) => (e.quick ? '1' : '3'), integer(0), 'unmeasured seconds per API', {
      arg: '<s>',
    }),
    models: flag('models', (e) => (e.quick ? '200' : '500'), integer(20), 'models seeded in each database'),
    rawDurationS: flag(
      'raw-duration',
      (e) => String(Math.min(10, e.durationS as number)),
      integer(1),
      'seconds of the raw ceiling (default: the duration, 10 at most)',
      { arg: '<s>' },
    ),
    settleTimeoutS: flag('settle-timeout', '180', integer(1), 'wait after a phase for every event applied', {
      arg: '<s>',
    }),
    pgServerUrl: flag('pg-url', 'postgres://root@127.0.0.1:5432', url, 'PostgreSQL server', { arg: '<url>' }),
  },
});
type Settings = ReturnType<typeof cli.read>;

/** Issue 15's goals, named as its table names them. */
const GOALS = {
  busCost: goal(
    15,
    '<=',
    2,
    'ratio',
    'bus cost per event (all processes, bus on − bus off at the same rate) ÷ raw ceiling’s CPU per message',
  ),
  sustained: goal(15, '>=', 0.35, 'ratio', 'sustained end to end, everything on one machine, ÷ raw ceiling'),
  ageP95: goal(
    15,
    '<',
    50,
    'ms',
    'event age at the slowest consumer, p95, at 1,000 events/s (or at 60% of the maximum)',
  ),
  ageP99: goal(
    15,
    '<',
    100,
    'ms',
    'event age at the slowest consumer, p99, at 1,000 events/s (or at 60% of the maximum)',
  ),
  consumers: goal(15, '>=', 0.7, 'ratio', 'each consumer (bench:consumers) ÷ the bare batched insert loop'),
  lost: goal(15, '=', 0, 'events', 'lost'),
  duplicated: goal(15, '=', 0, 'events', 'duplicated'),
  unexpected: goal(15, '<', 0.1, '%', 'unexpected HTTP errors'),
};

type PhaseKind = 'max' | 'paced';

interface HttpResult extends LoadResult {
  statusByKind: Record<string, Record<string, number>>;
  intendedErrors: number;
  unexpectedStatus: number;
  /** (unexpected statuses + connection errors + time-outs) ÷ requests sent. */
  unexpectedShare: number;
}

/** A consumer's latency over a phase (PostgreSQL), and what it applied per second while the load ran. */
type ConsumerLatency = Omit<LatencyRow, 'last_applied_ms' | 'during_load'> & {
  appliedPerSecDuringLoad: number;
};

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
    // Applied but not yet counted by the API (it writes its counts every LEDGER_FLUSH_INTERVAL_MS): the
    // last requests' events, e.g. the phase's closing Prometheus scrape, are not settled until counted.
    const pending = window.consumers.filter(
      (c) => consumers.includes(c.consumer) && (c.missing !== 0 || c.applied_unflushed !== 0),
    );
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
  /** The last commit, ms since the epoch. */
  last_applied_ms: number;
  /** Applied before the load ended. */
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
  const system = new BusOnOff(settings.pgServerUrl, `e2e_${randomBytes(4).toString('hex')}`);
  const { environments, processes, exits } = system;
  const tag = system.databases.on;
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
    const system_ = await system.start(consumers);
    const busEnv = system.busEnv as BusEnvironment;
    const worker = system_.worker as Worker;
    const on: Target = { api: system_.on, database: system.databases.on, otherRequests: 1 };
    const off: Target = { api: system_.off, database: system.databases.off, otherRequests: 0 };

    pool = new pg.Pool({ connectionString: on.api.databaseUrl, max: 2 });
    pool.on('error', () => {});
    const ledger = new LedgerQuery(pool);
    // The ledger counts per minute of the events' timestamps: from the minute before anything was sent.
    const ledgerFrom = new Date(Date.now() - 60_000);

    const seeded = await Promise.all(
      [on, off].map((target) => seedModels(target.api.url, target.api.key, settings.models)),
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
      const postgres = { postmaster, database: target.database };
      const memory = new PeakMemory({ processes: pids, postgres });
      const meter = new CpuMeter({ processes: pids, postgres, threadsOf: ['api'] });
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
        `  ${formatNumber(http.requestsPerSec)} req/s, API p50 ${formatMs(http.latencyMs.p50)} p99 ${formatMs(http.latencyMs.p99)} ms, ${formatUs(cpu.totalUsPerEvent)} µs CPU/event, unexpected ${http.unexpectedStatus + http.errors + http.timeouts}`,
      );
      const base = { name, kind, bus, startedAt: phaseStart.toISOString(), http, cpu };
      if (bus === 'off') {
        return { ...base, peakRssMiB: { ...memory.stop(), worker: null }, service: null, e2e: null };
      }
      // Every response is an event; requests cut off by the end of the run may be events too.
      expectedEmitted += mix.tally.total;
      const settled = await settleNow(expectedEmitted, settings.settleTimeoutS);
      const service = (await histograms?.stop()) ?? null;
      const peakRssMiB = memory.stop();
      const latency = await phaseLatency(pool as pg.Pool, phaseStart, new Date(), loadEnd);
      const lastApplied = Math.max(
        ...latency.perConsumer.map((row) => row.last_applied_ms),
        phaseStart.getTime(),
      );
      const loadSeconds = (loadEnd.getTime() - phaseStart.getTime()) / 1000;
      const { p50, p95, p99, max } = latency.e2e;
      const phase: PhaseResult = {
        ...base,
        peakRssMiB,
        service,
        e2e: {
          events: latency.events,
          settled: settled.settled,
          settleMs: settled.ms,
          drainedAfterLoadS: round(Math.max(0, lastApplied - loadEnd.getTime()) / 1000, 2),
          e2eEventsPerSec: round(latency.events / ((lastApplied - phaseStart.getTime()) / 1000), 0),
          e2eLatencyMs: { p50, p95, p99, max },
          consumers: latency.perConsumer.map(({ last_applied_ms: _, during_load, ...row }) => ({
            ...row,
            appliedPerSecDuringLoad: round(during_load / loadSeconds, 0),
          })),
        },
      };
      progress(
        `  ${formatNumber(latency.events)} events, e2e ${formatNumber(phase.e2e?.e2eEventsPerSec ?? 0)} events/s, p95 ${formatMs(latency.e2e.p95)} ms, drained ${phase.e2e?.drainedAfterLoadS} s after the load${settled.settled ? '' : ' — NOT SETTLED'}`,
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
  } finally {
    await pool?.end().catch(() => {});
    await system.close();
  }

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
    /** Applied beyond the API's counts once settled, for the consumers that keep no row per event. */
    ledgerOverSpooled: Object.fromEntries(
      followedLedger
        .filter((c) => (tablesNow.appliedRows[c.consumer] ?? 0) === 0)
        .map((c) => [c.consumer, c.applied_unflushed]),
    ),
    auditRowsOverDistinct: tablesNow.auditRecords - tablesNow.auditDistinctEvents,
    analyticsOverAudited: tablesNow.analyticsQueries - tablesNow.modelQueriedAudited,
  };
  const duplicates =
    Object.values(duplicateChecks.ledgerOverRows).reduce((sum, n) => sum + Math.abs(n), 0) +
    Object.values(duplicateChecks.ledgerOverSpooled).reduce((sum, n) => sum + n, 0) +
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
  const rawUsPerMessage = raw?.cpu.totalUsPerEvent ?? null;
  const busCostUs =
    pacedOn?.cpu.totalUsPerEvent == null || pacedOff?.cpu.totalUsPerEvent == null
      ? null
      : round(pacedOn.cpu.totalUsPerEvent - pacedOff.cpu.totalUsPerEvent, 1);
  const slowest = slowestConsumer(pacedOn?.service?.eventAgeMs ?? null);
  // The worker's own histogram; PostgreSQL's applied_at (in the tables) is a lower bound by the batch's apply time.
  const age = slowest && { consumer: slowest.consumer, p95: slowest.age.p95, p99: slowest.age.p99 };
  const ageNote =
    age === undefined
      ? 'not measured: no telemetry_consumer_event_age_seconds from the worker'
      : `${age.consumer} at ${formatNumber(compareRate)}/s paced (${formatNumber(pacedOn?.http.requestsPerSec ?? 0)} served), telemetry_consumer_event_age_seconds`;
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
        formatMs(p.http.latencyMs.p50),
        formatMs(p.http.latencyMs.p95),
        formatMs(p.http.latencyMs.p99),
        p.bus === 'on' ? formatTriple(p.service?.publishLatencyMs) : '',
        p.e2e === null ? '(bus off)' : formatNumber(p.e2e.e2eEventsPerSec),
        formatMs(p.e2e?.e2eLatencyMs.p50),
        formatMs(p.e2e?.e2eLatencyMs.p95),
        formatMs(p.e2e?.e2eLatencyMs.p99),
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
          `${formatMs(pacedOn?.http.latencyMs.p50)} / ${formatMs(pacedOn?.http.latencyMs.p99)}`,
          `${formatMs(pacedOff?.http.latencyMs.p50)} / ${formatMs(pacedOff?.http.latencyMs.p99)}`,
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
    table('µs of CPU per event, per process (PostgreSQL: backends of the phase’s database)', phases, {
      phase: (p) => p.name,
      ...cpuColumns((p) => p.cpu),
      'API RSS MiB': (p) => formatMs(p.peakRssMiB.api, 0),
      'worker RSS MiB': (p) => formatMs(p.peakRssMiB.worker, 0),
    }),
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
            formatTriple(h),
            formatTriple(c),
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
    `process exits: ${exitsText(exits)}`,
    `peak RSS over the process lifetime (VmHWM): API ${formatMs(apiHwmMiB, 1)} MiB, worker ${formatMs(workerHwmMiB, 1)} MiB`,
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
