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
import { purgeQueues, waitForBroker } from './support/broker.ts';
import { type Bus, BusOnOff } from './support/bus-on-off.ts';
import { type CpuPerEvent, cpuColumns, formatUs } from './support/cpu-per-event.ts';
import { PG_SERVER_OPTION } from './support/databases.ts';
import { mixRequests, StatusTally } from './support/e2e-mix.ts';
import { goal, judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { statusMiB } from './support/memory.ts';
import { mixMessages } from './support/mix-messages.ts';
import { commandLine, flag, ifQuick, integer, onOff, seconds } from './support/options.ts';
import { type RawCeilingResult, rawCeiling } from './support/raw-ceiling.ts';
import {
  formatDelta,
  formatMs,
  formatNumber,
  formatTriple,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  table,
} from './support/report.ts';
import { type ServiceLatencies, slowestConsumer } from './support/service-histograms.ts';
import { handleSignals, interruptible, runMain, sleep } from './support/settings.ts';
import { barChartSvg } from './support/svg-chart.ts';
import { assertRunning, type SystemProcess, stopSystem, type Worker } from './support/system-under-test.ts';

const cli = commandLine({
  script: 'bench',
  summary:
    "The whole system end to end (API → spool → RabbitMQ → consumers → PostgreSQL), bus on vs off, paced and\nat the maximum, with µs of CPU per event per process; prints issue 15's goals table.",
  options: {
    quick: onOff('quick', 'a smoke run: 5 s phases, 1 s warm-up, 200 models'),
    durationS: seconds('duration', ifQuick('5', '15'), 'measured seconds per phase'),
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
    warmupS: seconds('warmup', ifQuick('1', '3'), 'unmeasured seconds per API', 0),
    models: flag('models', ifQuick('200', '500'), integer(20), 'models seeded in each database'),
    rawDurationS: seconds(
      'raw-duration',
      (e) => String(Math.min(10, e.durationS as number)),
      'seconds of the raw ceiling (default: the duration, 10 at most)',
    ),
    settleTimeoutS: seconds('settle-timeout', '180', 'wait after a phase for every event applied'),
    pgServerUrl: PG_SERVER_OPTION,
  },
});

/** Issue 15's goals, named as its table names them. */
const AT_RATE = 'at 1,000 events/s (or at 60% of the maximum)';
const GOALS = {
  busCost: goal(
    15,
    '<=',
    2,
    'ratio',
    'bus cost per event (all processes, bus on − bus off at the same rate) ÷ raw ceiling’s CPU per message',
  ),
  sustained: goal(15, '>=', 0.35, 'ratio', 'sustained end to end, everything on one machine, ÷ raw ceiling'),
  ageP95: goal(15, '<', 50, 'ms', `event age at the slowest consumer, p95, ${AT_RATE}`),
  ageP99: goal(15, '<', 100, 'ms', `event age at the slowest consumer, p99, ${AT_RATE}`),
  consumers: goal(15, '>=', 0.7, 'ratio', 'each consumer (bench:consumers) ÷ the bare batched insert loop'),
  lost: goal(15, '=', 0, 'events', 'lost'),
  duplicated: goal(15, '=', 0, 'events', 'duplicated'),
  unexpected: goal(15, '<', 0.1, '%', 'unexpected HTTP errors'),
};

type Percentiles = { events: number; p50: number; p95: number; p99: number; max: number };

interface PhaseResult {
  name: string;
  kind: 'max' | 'paced';
  bus: Bus;
  startedAt: string;
  http: LoadResult & { statusByKind: StatusTally['counts']; intendedErrors: number; unexpected: number };
  cpu: CpuPerEvent;
  /** The service's histograms over the phase (bus on). */
  service: ServiceLatencies | null;
  /** Bus-on phases only, from PostgreSQL. */
  e2e: {
    events: number;
    settled: boolean;
    settleMs: number;
    /** The last commit of the phase's events, seconds after the load stopped (the backlog's drain). */
    drainedAfterLoadS: number;
    e2eEventsPerSec: number;
    /** Per event, the slowest consumer. */
    e2eLatencyMs: Percentiles;
    consumers: Array<Percentiles & { consumer: string; appliedPerSecDuringLoad: number }>;
  } | null;
}

/**
 * Waits until the ledger says every event the API emitted (at least `minEmitted`) is confirmed and
 * applied by every consumer followed. Read through LedgerQuery (what GET /telemetry/ledger answers) on
 * the database itself: every HTTP request would be one more event to wait for.
 */
async function settle(
  ledger: LedgerQuery,
  from: Date,
  consumers: string[],
  minEmitted: number,
  timeoutS: number,
  watch: SystemProcess[],
) {
  const started = Date.now();
  for (let polls = 1; ; polls++) {
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
    if (done || Date.now() - started > timeoutS * 1000)
      return { settled: done, ms: Date.now() - started, ledger: window };
    if (polls % 20 === 0) {
      const missing = pending.map((c) => `${c.consumer} ${formatNumber(c.missing)}`).join(', ') || 'none';
      progress(
        `  settling: emitted ${formatNumber(window.emitted)} (≥ ${formatNumber(minEmitted)}), unconfirmed ${window.unconfirmed}, missing ${missing}`,
      );
    }
    await sleep(250);
  }
}

/** Latency (ms) of the events stamped in [from, to): per consumer, and per event at the slowest one. */
async function phaseLatency(pool: pg.Pool, from: Date, to: Date, loadEnd: Date) {
  const percentiles = (of: string) =>
    `count(*)::int AS events, max(${of}) AS max,
     ${['p50', 'p95', 'p99'].map((p) => `percentile_cont(0.${p.slice(1)}) WITHIN GROUP (ORDER BY ${of}) AS ${p}`).join(', ')}`;
  const joined = `FROM audit_records a JOIN applied_events c USING (event_id) WHERE a.occurred_at >= $1 AND a.occurred_at < $2`;
  const latency = 'extract(epoch FROM c.applied_at - a.occurred_at) * 1000';
  type Row = Percentiles & { consumer: string; last_ms: number; during_load: number };
  const perConsumer = await pool.query<Row>(
    `SELECT c.consumer, ${percentiles(latency)}, extract(epoch FROM max(c.applied_at)) * 1000 AS last_ms,
            count(*) FILTER (WHERE c.applied_at < $3)::int AS during_load
       ${joined} GROUP BY c.consumer ORDER BY c.consumer`,
    [from, to, loadEnd],
  );
  const perEvent = await pool.query<Row>(
    `SELECT ${percentiles('l')} FROM (SELECT max(${latency}) AS l ${joined} GROUP BY a.event_id) per_event`,
    [from, to],
  );
  const audited = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM audit_records WHERE occurred_at >= $1 AND occurred_at < $2',
    [from, to],
  );
  const numbers = <R extends Percentiles>(row: R): R => ({
    ...row,
    ...Object.fromEntries(
      ['p50', 'p95', 'p99', 'max'].map((p) => [p, round(Number(row[p as keyof Percentiles]), 2)]),
    ),
  });
  return {
    perConsumer: perConsumer.rows.map(numbers),
    e2e: numbers(perEvent.rows[0] as Row),
    events: audited.rows[0]?.n ?? 0,
  };
}

/** What the consumers' tables hold over the whole run, to count duplicates against the ledger. */
async function tableChecks(pool: pg.Pool) {
  const applied = await pool.query<{ consumer: string; n: number }>(
    'SELECT consumer, count(*)::int AS n FROM applied_events GROUP BY consumer',
  );
  const { rows } = await pool.query<{ n: number; d: number; q: number; a: string | null }>(
    `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS d,
            count(*) FILTER (WHERE event_type = 'model.queried')::int AS q,
            (SELECT sum(queries) FROM analytics_model_queries) AS a
       FROM audit_records`,
  );
  const row = rows[0] as { n: number; d: number; q: number; a: string | null };
  return {
    appliedRows: Object.fromEntries(applied.rows.map((r) => [r.consumer, r.n])) as Record<string, number>,
    auditRecords: row.n,
    auditDistinctEvents: row.d,
    modelQueriedAudited: row.q,
    analyticsQueries: Number(row.a ?? 0),
  };
}

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const system = new BusOnOff(settings.pgServerUrl, `e2e_${randomBytes(4).toString('hex')}`);
  const tag = system.databases.on;
  const phases: PhaseResult[] = [];
  const consumers = [...CONSUMER_NAMES] as string[];
  /** The consumers the ledger follows (the dlq consumer applies only dead letters). */
  const followed = consumers.filter((name) => name in LEDGER_CONSUMERS);
  let raw: RawCeilingResult | undefined;
  let final: Awaited<ReturnType<typeof settle>> | undefined;
  let tables: Awaited<ReturnType<typeof tableChecks>> | undefined;
  let httpLedgerStatus: number | undefined;
  let lifetimeRssMiB: Record<string, number | null> = {};
  let stoppedEarly: string | null = null;
  let pool: pg.Pool | undefined;
  let expectedEmitted = 0;
  let compareRate = settings.rate;

  try {
    await waitForBroker();
    // 1. The raw broker ceiling, in a vhost of its own, before anything else runs.
    const queues = followed.map((name) => LEDGER_CONSUMERS[name as keyof typeof LEDGER_CONSUMERS]);
    const rawEnv = await system.environments.create();
    progress(
      `raw broker ceiling: confirm publish → consume ${queues.join(', ')} for ${settings.rawDurationS} s`,
    );
    raw = await interruptible(
      rawCeiling({
        url: rawEnv.env.RABBITMQ_URL,
        messages: mixMessages(2000),
        queues,
        durationS: settings.rawDurationS,
        pids: { rabbitmq: system.rabbitmqPid },
      }),
    );
    progress(
      `  ${formatNumber(raw.messagesPerSec)} messages/s, ${formatUs(raw.cpu.totalUsPerEvent)} µs CPU per message`,
    );
    await system.environments.remove(rawEnv);

    // 2. The system, seeded and warmed up.
    progress(`consumers in this build: ${consumers.join(', ')}`);
    await system.start({ consumers, models: settings.models });
    const { apis } = system;
    const worker = system.worker as Worker;
    const rabbitmqUrl = system.busEnv?.env.RABBITMQ_URL as string;
    pool = new pg.Pool({ connectionString: apis.on.databaseUrl, max: 2 });
    pool.on('error', () => {});
    const ledger = new LedgerQuery(pool);
    // The ledger counts per minute of the events' timestamps: from the minute before anything was sent.
    const ledgerFrom = new Date(Date.now() - 60_000);
    const settleNow = (timeoutS: number) =>
      settle(ledger, ledgerFrom, followed, expectedEmitted, timeoutS, [apis.on.process, worker.process]);
    // The metrics consumer may be missing from a build: then its queue only fills, and is emptied.
    const purgeUnconsumed = () =>
      consumers.includes('metrics') ? 0 : purgeQueues(rabbitmqUrl, [QUEUES.metrics]);
    const load = async (
      name: string,
      bus: Bus,
      durationS: number,
      pace: { rate?: number; connections?: number },
    ) => {
      const tally = new StatusTally();
      const mix = {
        seededIds: system.seeded[bus],
        tag: `${tag}-${name.replace(/[^a-z0-9]+/gi, '')}`,
        tally,
        registered: { next: 0 },
      };
      const api = apis[bus];
      const result = await runLoad({
        url: api.url,
        key: api.key,
        durationS,
        requests: (lane, lanes) => mixRequests(mix, lane, lanes),
        label: name,
        ...pace,
      });
      // Every response is an event with the bus on; so are the seeding's and the health checks'.
      if (bus === 'on') expectedEmitted += tally.total;
      return {
        ...result,
        statusByKind: tally.counts,
        intendedErrors: tally.intendedErrors,
        unexpected: tally.unexpected + result.errors + result.timeouts,
      };
    };
    expectedEmitted = settings.models + 1;
    for (const bus of settings.warmupS > 0 ? (['on', 'off'] as const) : []) {
      await load(`warmup-${bus}`, bus, settings.warmupS, { rate: settings.rate });
    }
    // Nothing of the warm-up (or the seeding) may still be in transit when the first phase starts.
    if (!(await settleNow(settings.settleTimeoutS)).settled)
      throw new Error(`the warm-up's events did not settle within ${settings.settleTimeoutS} s`);
    await purgeUnconsumed();

    const runPhase = async (name: string, kind: PhaseResult['kind'], bus: Bus, rate?: number) => {
      assertRunning(apis[bus].process, worker.process);
      await waitForBroker();
      const measure = await system.phase(bus);
      progress(`phase ${name}`);
      const phaseStart = new Date();
      const http = await load(
        name,
        bus,
        settings.durationS,
        kind === 'paced' ? { rate } : { connections: settings.maxConnections },
      );
      const loadEnd = new Date();
      const cpu = measure.cpu(http.responses);
      progress(
        `  ${formatNumber(http.requestsPerSec)} req/s, API p50 ${formatMs(http.latencyMs.p50)} p99 ${formatMs(http.latencyMs.p99)} ms, ${formatUs(cpu.totalUsPerEvent)} µs CPU/event, unexpected ${http.unexpected}`,
      );
      const phase: PhaseResult = {
        name,
        kind,
        bus,
        startedAt: phaseStart.toISOString(),
        http,
        cpu,
        service: null,
        e2e: null,
      };
      phases.push(phase);
      if (bus === 'off') return phase;
      const settled = await settleNow(settings.settleTimeoutS);
      phase.service = await measure.service();
      const latency = await phaseLatency(pool as pg.Pool, phaseStart, new Date(), loadEnd);
      const lastApplied = Math.max(...latency.perConsumer.map((row) => row.last_ms), phaseStart.getTime());
      const loadSeconds = (loadEnd.getTime() - phaseStart.getTime()) / 1000;
      phase.e2e = {
        events: latency.events,
        settled: settled.settled,
        settleMs: settled.ms,
        drainedAfterLoadS: round(Math.max(0, lastApplied - loadEnd.getTime()) / 1000, 2),
        e2eEventsPerSec: round(latency.events / ((lastApplied - phaseStart.getTime()) / 1000), 0),
        e2eLatencyMs: latency.e2e,
        consumers: latency.perConsumer.map(({ last_ms: _, during_load, ...row }) => ({
          ...row,
          appliedPerSecDuringLoad: round(during_load / loadSeconds, 0),
        })),
      };
      progress(
        `  ${formatNumber(latency.events)} events, ${formatNumber(phase.e2e.e2eEventsPerSec)} events/s end to end, p95 ${formatMs(latency.e2e.p95)} ms, drained ${phase.e2e.drainedAfterLoadS} s after the load`,
      );
      await purgeUnconsumed();
      if (!settled.settled) {
        stoppedEarly = `phase ${name} did not settle within ${settings.settleTimeoutS} s: later phases skipped`;
        progress(stoppedEarly);
      }
      return phase;
    };

    // 3. The phases: the maxima, then bus off and on at the same paced rate.
    if (settings.maxConnections > 0) {
      const sustained = (await runPhase('bus on, max', 'max', 'on')).e2e?.e2eEventsPerSec ?? 0;
      if (stoppedEarly === null) await runPhase('bus off, max', 'max', 'off');
      if (sustained > 0 && sustained < settings.rate) {
        compareRate = Math.max(1, Math.round(0.6 * sustained));
        progress(
          `the machine sustained ${formatNumber(sustained)} events/s at most: the paced phases run at 60% of it, ${formatNumber(compareRate)}/s`,
        );
      }
    }
    if (stoppedEarly === null) {
      await runPhase(`bus off, ${formatNumber(compareRate)}/s`, 'paced', 'off', compareRate);
      await stopSystem([apis.off.process], system.exits);
      await runPhase(`bus on, ${formatNumber(compareRate)}/s`, 'paced', 'on', compareRate);
    }

    // 4. Loss and duplicates over the whole run.
    final = await settleNow(stoppedEarly === null ? 30 : 5);
    tables = await tableChecks(pool);
    const response = await fetch(
      `${apis.on.url}/telemetry/ledger?from=${encodeURIComponent(ledgerFrom.toISOString())}`,
      {
        headers: { 'x-api-key': apis.on.key },
        signal: AbortSignal.timeout(10_000),
      },
    );
    httpLedgerStatus = response.status;
    lifetimeRssMiB = { api: statusMiB(apis.on.pid, 'VmHWM'), worker: statusMiB(worker.pid, 'VmHWM') };
  } finally {
    await pool?.end().catch(() => {});
    await system.close();
  }

  // Loss, duplicates, goals.
  const ledger = (final as NonNullable<typeof final>).ledger as LedgerWindow;
  const counted = tables as NonNullable<typeof tables>;
  const followedLedger = ledger.consumers.filter((c) => followed.includes(c.consumer));
  const lost =
    ledger.dropped + ledger.unconfirmed + followedLedger.reduce((sum, c) => sum + Math.max(0, c.missing), 0);
  const duplicateChecks = {
    /** Ledger 'applied' beyond the rows of the consumers that keep one per applied event. */
    ledgerOverRows: Object.fromEntries(
      followedLedger
        .filter((c) => (counted.appliedRows[c.consumer] ?? 0) > 0)
        .map((c) => [c.consumer, c.applied - (counted.appliedRows[c.consumer] ?? 0)]),
    ),
    /** Applied beyond the API's counts once settled, for the consumers that keep no row per event. */
    ledgerOverSpooled: Object.fromEntries(
      followedLedger
        .filter((c) => (counted.appliedRows[c.consumer] ?? 0) === 0)
        .map((c) => [c.consumer, c.applied_unflushed]),
    ),
    auditRowsOverDistinct: counted.auditRecords - counted.auditDistinctEvents,
    analyticsOverAudited: counted.analyticsQueries - counted.modelQueriedAudited,
  };
  const duplicates =
    [
      ...Object.values(duplicateChecks.ledgerOverRows),
      duplicateChecks.auditRowsOverDistinct,
      duplicateChecks.analyticsOverAudited,
    ].reduce((sum, n) => sum + Math.abs(n), 0) +
    Object.values(duplicateChecks.ledgerOverSpooled).reduce((sum, n) => sum + n, 0);
  const totalRequests = phases.reduce(
    (sum, p) => sum + p.http.responses + p.http.errors + p.http.timeouts,
    0,
  );
  const totalUnexpected = phases.reduce((sum, p) => sum + p.http.unexpected, 0);
  const unexpectedShare = totalRequests === 0 ? 0 : totalUnexpected / totalRequests;
  const find = (kind: PhaseResult['kind'], bus: Bus) => phases.find((p) => p.kind === kind && p.bus === bus);
  const [pacedOn, pacedOff, maxOn, maxOff] = [
    find('paced', 'on'),
    find('paced', 'off'),
    find('max', 'on'),
    find('max', 'off'),
  ];
  const busPhases = phases.filter((p) => p.e2e !== null);
  const best = busPhases.toSorted((a, b) => (b.e2e?.e2eEventsPerSec ?? 0) - (a.e2e?.e2eEventsPerSec ?? 0))[0];
  const bestE2e = best?.e2e?.e2eEventsPerSec ?? 0;
  /** The raw ceiling's CPU per message: its publishing (and bare consuming) process + RabbitMQ. */
  const rawUs = raw?.cpu.totalUsPerEvent ?? null;
  const [onUs, offUs] = [pacedOn?.cpu.totalUsPerEvent, pacedOff?.cpu.totalUsPerEvent];
  const busCostUs = onUs == null || offUs == null ? null : round(onUs - offUs, 1);
  // Judged on the worker's histogram; PostgreSQL's applied_at (in the tables) is a lower bound.
  const slowest = slowestConsumer(pacedOn?.service?.eventAgeMs ?? null);
  const ageNote =
    slowest === undefined
      ? 'not measured: no telemetry_consumer_event_age_seconds from the worker'
      : `${slowest.consumer} at ${formatNumber(compareRate)}/s paced (${formatNumber(pacedOn?.http.requestsPerSec ?? 0)} served), telemetry_consumer_event_age_seconds`;
  const goals = [
    judge(
      GOALS.busCost,
      busCostUs === null || !rawUs ? null : round(busCostUs / rawUs, 2),
      `${formatUs(busCostUs)} µs per event (bus on ${formatUs(onUs)} − off ${formatUs(offUs)} at ${formatNumber(compareRate)}/s) ÷ ${formatUs(rawUs)} µs per raw message`,
    ),
    judge(
      GOALS.sustained,
      raw === undefined || lost !== 0 ? null : round(bestE2e / raw.messagesPerSec, 3),
      `${formatNumber(bestE2e)} events/s (${best?.name ?? 'n/a'}) ÷ ${formatNumber(raw?.messagesPerSec ?? 0)} raw messages/s${lost === 0 ? '' : `; ${lost} LOST, so not counted`}`,
    ),
    judge(GOALS.ageP95, slowest?.age.p95, ageNote),
    judge(GOALS.ageP99, slowest?.age.p99, ageNote),
    judge(GOALS.consumers, null, 'measured by `npm run bench:consumers`, not by this run'),
    judge(GOALS.lost, lost, 'ledger after settling, over the whole run'),
    judge(GOALS.duplicated, duplicates, 'ledger vs tables, over the whole run'),
    judge(
      GOALS.unexpected,
      round(100 * unexpectedShare, 3),
      `${totalUnexpected} of ${formatNumber(totalRequests)} requests (intended 4xx excluded)`,
    ),
  ];

  // Tables, chart, files.
  const paced = `at ${formatNumber(compareRate)}/s paced`;
  const rps = (p?: PhaseResult) => p?.http.requestsPerSec ?? 0;
  const both = (cell: (p: PhaseResult) => string, on?: PhaseResult, off?: PhaseResult) =>
    [on, off].map((p) => (p === undefined ? 'n/a' : cell(p)));
  const p50p99 = (p: PhaseResult) => `${formatMs(p.http.latencyMs.p50)} / ${formatMs(p.http.latencyMs.p99)}`;
  const latencyDelta = (q: 'p50' | 'p99') =>
    pacedOn && pacedOff ? formatDelta(pacedOn.http.latencyMs[q] - pacedOff.http.latencyMs[q]) : 'n/a';
  const comparison = [
    [
      'maximum req/s (autocannon)',
      ...both((p) => formatNumber(rps(p)), maxOn, maxOff),
      formatDelta(rps(maxOn) - rps(maxOff), 0),
      maxOn && maxOff ? formatNumber(rps(maxOn) / rps(maxOff), 2) : 'n/a',
    ],
    [
      `API p50 / p99 ${paced}, ms`,
      ...both(p50p99, pacedOn, pacedOff),
      `${latencyDelta('p50')} / ${latencyDelta('p99')}`,
      '',
    ],
    [
      `µs of CPU per event, all processes, ${paced}`,
      ...both((p) => formatUs(p.cpu.totalUsPerEvent), pacedOn, pacedOff),
      formatUs(busCostUs),
      '',
    ],
    [
      `raw ceiling (same run): messages/s; µs of CPU per message (publishing process + RabbitMQ)`,
      `${formatNumber(raw?.messagesPerSec ?? 0)}; ${formatUs(rawUs)}`,
      ...['', '', ''],
    ],
  ];
  const ageRows = busPhases.flatMap((p) =>
    // Every consumer either source knows (only some keep a row per event in PostgreSQL).
    [
      ...new Set([
        ...Object.keys(p.service?.eventAgeMs ?? {}),
        ...(p.e2e?.consumers ?? []).map((c) => c.consumer),
      ]),
    ]
      .sort()
      .map((consumer) => ({
        p,
        consumer,
        h: p.service?.eventAgeMs?.[consumer],
        c: p.e2e?.consumers.find((row) => row.consumer === consumer),
      })),
  );
  const checks: Array<[string, string]> = [
    [
      'ledger emitted / spooled / confirmed',
      [ledger.emitted, ledger.spooled, ledger.confirmed].map((n) => formatNumber(n)).join(' / '),
    ],
    ['ledger dropped, unconfirmed', `${ledger.dropped}, ${ledger.unconfirmed}`],
    ...followedLedger.map((c): [string, string] => [
      `${c.consumer}: expected / applied / missing; rows in applied_events`,
      `${formatNumber(c.expected)} / ${formatNumber(c.applied)} / ${c.missing}; ${formatNumber(counted.appliedRows[c.consumer] ?? 0)}`,
    ]),
    [
      'audit_records rows / distinct event ids',
      `${formatNumber(counted.auditRecords)} / ${formatNumber(counted.auditDistinctEvents)}`,
    ],
    [
      'analytics model queries counted / model.queried audited',
      `${formatNumber(counted.analyticsQueries)} / ${formatNumber(counted.modelQueriedAudited)}`,
    ],
    ['lost', String(lost)],
    ['duplicates applied', String(duplicates)],
  ];
  const sections = [
    table(
      'Phases (API latency: paced from each intended send time, max from the send; e2e: emit → the slowest consumer’s transaction; ms)',
      phases,
      {
        phase: (p) => p.name,
        'req/s': (p) => formatNumber(p.http.requestsPerSec),
        'API p50': (p) => formatMs(p.http.latencyMs.p50),
        'API p95': (p) => formatMs(p.http.latencyMs.p95),
        'API p99': (p) => formatMs(p.http.latencyMs.p99),
        'publish p50/p95/p99': (p) => (p.bus === 'on' ? formatTriple(p.service?.publishLatencyMs) : ''),
        'e2e events/s': (p) => (p.e2e === null ? '(bus off)' : formatNumber(p.e2e.e2eEventsPerSec)),
        'e2e p50': (p) => formatMs(p.e2e?.e2eLatencyMs.p50),
        'e2e p95': (p) => formatMs(p.e2e?.e2eLatencyMs.p95),
        'e2e p99': (p) => formatMs(p.e2e?.e2eLatencyMs.p99),
        'drained after': (p) => (p.e2e === null ? '' : `${p.e2e.drainedAfterLoadS} s`),
        unexpected: (p) =>
          `${p.http.unexpected} (${formatNumber((100 * p.http.unexpected) / Math.max(1, p.http.responses + p.http.errors + p.http.timeouts), 3)}%)`,
      },
    ),
    {
      title: 'Bus on vs off: the API’s capacity and the bus cost per event',
      columns: ['measure', 'bus on', 'bus off', 'on − off', 'on ÷ off'],
      rows: comparison,
    },
    table('µs of CPU per event, per process (PostgreSQL: backends of the phase’s database)', phases, {
      phase: (p) => p.name,
      ...cpuColumns((p) => p.cpu),
    }),
    table(
      'Event age per consumer, bus-on phases (ms): the worker’s histogram, and PostgreSQL’s applied_at',
      ageRows,
      {
        phase: (row) => row.p.name,
        consumer: (row) => row.consumer,
        events: (row) => formatNumber(row.h?.count ?? row.c?.events ?? 0),
        'histogram p50/p95/p99': (row) => formatTriple(row.h),
        'PostgreSQL p50/p95/p99': (row) => formatTriple(row.c),
        'applied/s under load': (row) =>
          row.c === undefined ? 'n/a' : formatNumber(row.c.appliedPerSecDuringLoad),
      },
    ),
    table('Loss and duplicates over the whole run (ledger after settling, and the tables)', checks, {
      check: ([c]) => c,
      value: ([, v]) => v,
    }),
  ];
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
      { value: GOALS.ageP95.threshold, label: `event age p95 goal ${GOALS.ageP95.threshold} ms (paced)` },
      { value: GOALS.ageP99.threshold, label: `p99 goal ${GOALS.ageP99.threshold} ms` },
    ],
  });
  const settingsText = [
    ...cli.settingsBlock(settings),
    `comparison rate: ${formatNumber(compareRate)}/s${compareRate === settings.rate ? '' : ` (60% of the bus-on maximum; --rate ${formatNumber(settings.rate)} was more than the machine sustained)`}; max phases: autocannon, ${settings.maxConnections} connections; consumers ${consumers.join(', ')}`,
    'method (phases, request mix, CPU, latencies, loss and duplicates): bench/README.md',
    ...system.notes(),
  ];
  await publishResults({
    name: 'e2e',
    title: 'End to end: API → spool → RabbitMQ → consumers → PostgreSQL',
    startedAt,
    goals: { title: 'Goals (issue 15: half the CPU per event downstream)', goals },
    chart: { file: 'e2e-latency.svg', svg, caption: 'End-to-end latency by phase' },
    sections,
    notes: {
      settings: settingsText,
      checks: [
        ...system.checks(),
        `peak RSS over the process lifetime (VmHWM): API ${formatMs(lifetimeRssMiB.api, 1)} MiB, worker ${formatMs(lifetimeRssMiB.worker, 1)} MiB`,
        `GET /telemetry/ledger at the end: HTTP ${httpLedgerStatus ?? 'n/a'}`,
        ...(stoppedEarly === null ? [] : [`STOPPED EARLY: ${stoppedEarly}`]),
      ],
    },
    command: invocation('bench'),
    report: {
      settings,
      compareRate,
      consumers,
      rawCeiling: raw === undefined ? null : { ...raw, usPerMessage: rawUs },
      busCostUsPerEvent: busCostUs,
      phases,
      ledger,
      ledgerSettled: final?.settled ?? false,
      tables: counted,
      duplicateChecks,
      lost,
      duplicates,
      expectedEmitted,
      peakRssLifetimeMiB: lifetimeRssMiB,
      stoppedEarly,
      ...system.report(),
    },
  });
  return lost === 0 && duplicates === 0 && unexpectedShare < 0.001 && stoppedEarly === null && system.clean
    ? 0
    : 1;
}

runMain('e2e', cli.help(), main);
