/**
 * Consumer throughput: events per second each consumer applies to PostgreSQL with its queue pre-filled,
 * against a bare batched `INSERT … ON CONFLICT DO NOTHING` loop of the same rows, in the same run and
 * database. Method (fill, bare loop, consumer, checks, CPU): bench/README.md ("bench:consumers"). For a
 * CPU profile: `node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/consumers.ts --consumers audit …`.
 */
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { OutboundMessage } from '../src/bus/outbound-message.ts';
import { buildTopology, DEFAULT_RETRY_DELAYS_MS, QUEUES } from '../src/bus/topology.ts';
import { analyticsConsumer } from '../src/consumers/analytics/analytics-consumer.ts';
import { auditConsumer } from '../src/consumers/audit/audit-consumer.ts';
import { ConsumerRuntime, type ConsumerStatus } from '../src/consumers/consumer-runtime.ts';
import { loggingConsumer } from '../src/consumers/logging/logging-consumer.ts';
import { metricsConsumer } from '../src/consumers/metrics/metrics-consumer.ts';
import { migrate } from '../src/db/migrate.ts';
import {
  type BrokerInfo,
  type BusEnvironment,
  brokerAlarms,
  Environments,
  onlyQueueFed,
  queueDepths,
  waitForBroker,
} from './support/broker.ts';
import { confirmPublish, withConfirmChannel } from './support/confirm-publish.ts';
import { findRabbitmqPid, othersCores } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent, formatUs } from './support/cpu-per-event.ts';
import { createDatabase, dropDatabase, PG_SERVER_OPTION, withClient } from './support/databases.ts';
import { buildEmitCalls, type MixType, messageOf, mixSequence } from './support/events.ts';
import { goal, judge } from './support/goals.ts';
import {
  commandLine,
  flag,
  integer,
  list,
  oneOf,
  type Settings as SettingsOf,
  seconds,
} from './support/options.ts';
import { findPostmasterPid } from './support/postgres-cpu.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  table,
} from './support/report.ts';
import { bounded, handleSignals, runMain, sleep, UsageError, whenTrue } from './support/settings.ts';

const NAME = 'consumers';
type BenchedConsumer = 'audit' | 'analytics' | 'logging' | 'metrics';
/** The consumers a default run measures; `metrics` has its own benchmark (bench/metrics.ts runs this one). */
const CONSUMERS: readonly BenchedConsumer[] = ['audit', 'analytics', 'logging'];
const ALL_CONSUMERS: readonly BenchedConsumer[] = [...CONSUMERS, 'metrics'];

/** The API's traffic, as the audit trail receives all of it (shares per 100). */
const ALL_KINDS: ReadonlyArray<readonly [MixType, number]> = [
  ['model.queried', 60],
  ['filter.executed', 20],
  ['api.error', 8],
  ['api.error 400', 1],
  ['api.error 500', 1],
  ['model.updated', 5],
  ['model.registered', 3],
  ['model.deactivated', 2],
];

/** Per consumer, the kinds of event its queue receives and their shares (api.error alone is a 404). */
const QUEUE_MIXES: Record<BenchedConsumer, ReadonlyArray<readonly [MixType, number]>> = {
  audit: ALL_KINDS,
  analytics: [
    ['model.queried', 66],
    ['filter.executed', 24],
    ['model.updated', 5],
    ['model.registered', 3],
    ['model.deactivated', 2],
  ],
  logging: [
    ['api.error', 80],
    ['api.error 400', 15],
    ['api.error 500', 5],
  ],
  // metrics.updates takes every event; api.request (health, docs) is left out as rare in real traffic.
  metrics: ALL_KINDS,
};
const LIST = { arg: '<list>' };
const optional = (raw: string, name: string) => (raw === '' ? undefined : integer(1)(raw, name));
function resultsName(raw: string): string {
  if (/^[a-z0-9-]+$/.test(raw)) return raw;
  throw new UsageError(`--name takes lowercase letters, digits and '-'; got '${raw}'`);
}
const mixText = (consumer: BenchedConsumer) =>
  QUEUE_MIXES[consumer].map(([kind, share]) => `${share}% ${kind}`).join(', ');

const cli = commandLine({
  script: 'bench:consumers',
  summary: 'Each consumer against a bare batched INSERT loop of the same events, same run, same database.',
  options: {
    events: flag('events', '30000', integer(1), "events in each consumer's queue"),
    batches: flag('batch', '250,1000', list(integer(1)), 'batch sizes, comma-separated', { arg: '<list>' }),
    prefetch: flag('prefetch', '', optional, 'prefetch of every run (default 2 × batch)'),
    consumers: flag('consumers', CONSUMERS.join(), list(oneOf(ALL_CONSUMERS)), 'a subset of them all', LIST),
    window: flag('window', '1000', integer(1), 'unconfirmed messages while filling the queue'),
    runTimeoutS: seconds('run-timeout', '300', 'a phase taking longer fails the benchmark'),
    pgServerUrl: PG_SERVER_OPTION,
    name: flag('name', NAME, resultsName, 'results file name: bench/results/<name>-…', { arg: '<name>' }),
  },
});
type Settings = SettingsOf<typeof cli.options>;

const NODE = 'load generator';
const PG = 'postgres (server)';

interface StatementTime {
  statement: string;
  count: number;
  ms: number;
}

/** Times every query of a client, by statement (its first words), as seen from node. */
function timeStatements(client: pg.Client | pg.PoolClient, times: Map<string, StatementTime>): void {
  const target = client as unknown as { query: (...args: unknown[]) => unknown };
  const query = target.query.bind(client);
  target.query = (...args: unknown[]) => {
    const started = performance.now();
    const result = query(...args) as Promise<unknown> | undefined;
    if (typeof result?.then !== 'function') return result;
    const sql = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: unknown } | null)?.text);
    const words = sql.replace(/\s+/g, ' ').trim();
    const statement = words.length > 64 ? `${words.slice(0, 61)}…` : words;
    return result.finally(() => {
      const time = times.get(statement) ?? { statement, count: 0, ms: 0 };
      times.set(statement, { statement, count: time.count + 1, ms: time.ms + performance.now() - started });
    });
  };
}
const statementList = (times: Map<string, StatementTime>) =>
  [...times.values()].map((time) => ({ ...time, ms: round(time.ms, 1) })).sort((a, b) => b.ms - a.ms);

/** The queue's events as the publisher sends them, and as rows for the bare loop. */
function prepare(consumer: BenchedConsumer, count: number) {
  // 20 ms apart, ending now, so a long backlog spans some hours (analytics counts by hour).
  const calls = buildEmitCalls(count, mixSequence(QUEUE_MIXES[consumer]), 4096, Date.now(), 20);
  const messages = calls.map(messageOf);
  const byType: Record<string, number> = {};
  for (const { event } of calls) byType[event.event_type] = (byType[event.event_type] ?? 0) + 1;
  return {
    messages,
    ids: calls.map((call) => call.event.event_id),
    envelopes: calls.map((call) => JSON.stringify(call.event)),
    byType,
    bytesPerEvent: Math.round(messages.reduce((sum, message) => sum + message.body.length, 0) / count),
  };
}
type Prepared = ReturnType<typeof prepare>;

/** Publishes the messages as the API's publisher does (confirmed, `window` in flight), into `queue` only. */
async function fill(url: string, queue: string, messages: OutboundMessage[], settings: Settings) {
  const started = performance.now();
  const { nacked, returned } = await withConfirmChannel(
    url,
    onlyQueueFed(buildTopology(), queue),
    (channel) =>
      bounded(
        confirmPublish(channel, { message: (index) => messages[index], window: settings.window }),
        settings.runTimeoutS,
        'filling the queue',
      ),
  );
  const seconds = (performance.now() - started) / 1000;
  if (nacked > 0 || returned > 0) throw new Error(`fill: ${nacked} nacked, ${returned} returned`);
  // Every confirmed message is in the queue: wait until the queue says so.
  let depth = 0;
  for (
    const deadline = Date.now() + 60_000;
    depth < messages.length && Date.now() < deadline;
    await sleep(100)
  ) {
    depth = (await queueDepths(url, [queue]))[queue] ?? 0;
  }
  if (depth !== messages.length)
    throw new Error(`${queue} holds ${depth} messages after the fill, not ${messages.length}`);
  return {
    seconds: round(seconds, 2),
    messagesPerSec: Math.round(messages.length / seconds),
    queueDepth: depth,
  };
}

/** One run: a consumer at a batch size, on its own database and vhost. */
interface Setup {
  consumer: BenchedConsumer;
  batch: number;
  prefetch: number;
  prepared: Prepared;
  env: BusEnvironment['env'];
  database: string;
  databaseUrl: string;
  /** Whose CPU is measured besides this process: RabbitMQ, the PostgreSQL server (and the run's backends). */
  probes: { rabbitmq: number | undefined; postmaster: number | undefined };
  settings: Settings;
}

/** A CpuMeter started on a phase, and its wall clock. */
function phase({ probes, database }: Setup) {
  const meter = new CpuMeter({
    processes: { rabbitmq: probes.rabbitmq },
    postgres: { postmaster: probes.postmaster, database },
  });
  meter.start();
  const started = performance.now();
  return { started, stop: (events: number) => meter.stop(events) };
}

const BARE_TABLE = 'bench_bare_events';

/** The bare loop: the events as rows into a plain table keyed by event_id, a transaction per batch. */
function bare(setup: Setup) {
  const { ids, envelopes } = setup.prepared;
  return withClient(setup.databaseUrl, async (client) => {
    await client.query(
      `CREATE TABLE ${BARE_TABLE} (event_id text COLLATE "C" PRIMARY KEY, envelope jsonb NOT NULL)`,
    );
    await client.query('CHECKPOINT');
    const times = new Map<string, StatementTime>();
    timeStatements(client, times);
    const clock = phase(setup);
    const loop = async () => {
      for (let offset = 0; offset < ids.length; offset += setup.batch) {
        const batch = [
          ids.slice(offset, offset + setup.batch),
          envelopes.slice(offset, offset + setup.batch),
        ];
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO ${BARE_TABLE} (event_id, envelope) SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING`,
          batch,
        );
        await client.query('COMMIT');
      }
    };
    await bounded(loop(), setup.settings.runTimeoutS, 'the bare INSERT loop');
    const seconds = (performance.now() - clock.started) / 1000;
    const cpu = clock.stop(ids.length);
    const statements = statementList(times);
    const { rows } = await client.query<{ count: string }>(`SELECT count(*) FROM ${BARE_TABLE}`);
    return {
      seconds: round(seconds, 3),
      rowsPerSec: Math.round(ids.length / seconds),
      transactions: times.get('BEGIN')?.count ?? 0,
      rows: Number(rows[0]?.count),
      statements,
      cpu,
    };
  });
}

/** What the consumer's tables hold after a run: label, count (an SQL expression), the count expected (null: any). */
function tableChecks({ consumer, prepared, settings }: Setup): Array<[string, string, number | null]> {
  const { events } = settings;
  const of = (...types: string[]) => types.reduce((sum, type) => sum + (prepared.byType[type] ?? 0), 0);
  const count = (from: string, expected: number | null, where = ''): [string, string, number | null] => [
    from,
    `(SELECT count(*) FROM ${from} ${where})`,
    expected,
  ];
  const sum = (from: string, column: string, expected: number): [string, string, number] => [
    `sum of ${from}.${column}`,
    `(SELECT coalesce(sum(${column}), 0) FROM ${from})`,
    expected,
  ];
  const checks: Record<BenchedConsumer, Array<[string, string, number | null]>> = {
    audit: [count('audit_records', events), count('audit_chain_heads', null)],
    analytics: [
      sum('analytics_model_queries', 'queries', of('model.queried')),
      sum('analytics_filter_executions', 'executions', of('filter.executed')),
      sum(
        'analytics_model_lifecycle',
        'events',
        of('model.registered', 'model.updated', 'model.deactivated'),
      ),
    ],
    logging: [],
    metrics: [
      count('metrics_events', events),
      // The consumer appends deltas; the compactor (not running here) moves them into the minute rows.
      [
        "requests (metrics_rollups '1m' and the deltas not moved yet)",
        "(SELECT coalesce(sum(requests), 0) FROM metrics_rollups WHERE granularity = '1m') + (SELECT coalesce(sum(requests), 0) FROM metrics_rollup_deltas)",
        events,
      ],
    ],
  };
  // Stamped events are de-duplicated by their producer stream, without a row each.
  return [count('consumer_applied_events', 0, `WHERE consumer = '${consumer}'`), ...checks[consumer]];
}

/** The consumer in a ConsumerRuntime of its own, timed until it has applied every event; then its checks. */
async function consume(setup: Setup) {
  const { consumer: name, env, settings } = setup;
  const { events } = settings;
  await withClient(setup.databaseUrl, (client) => client.query('CHECKPOINT'));
  const sink = createWriteStream('/dev/null');
  const logging =
    name === 'logging' ? loggingConsumer({ directory: join(env.DATA_DIR, 'logs'), stdout: sink }) : undefined;
  const builders = { audit: auditConsumer, analytics: analyticsConsumer, metrics: metricsConsumer };
  const consumer = logging ?? builders[name as keyof typeof builders]();
  const pool = new pg.Pool({ connectionString: setup.databaseUrl, max: 5 });
  pool.on('error', () => {});
  const times = new Map<string, StatementTime>();
  pool.on('connect', (client) => timeStatements(client, times));
  // Warnings (a lost connection, a pause) explain a slow or failed run: printed, not swallowed.
  const log = (level: string) => (object: unknown, message: string) =>
    progress(`  runtime ${level}: ${message} ${JSON.stringify(object)}`);
  const runtime = new ConsumerRuntime({
    urls: [env.RABBITMQ_URL],
    pool,
    topology: buildTopology(),
    consumers: [consumer],
    retryDelaysMs: DEFAULT_RETRY_DELAYS_MS,
    batchSize: setup.batch,
    prefetch: setup.prefetch,
    logger: { info() {}, warn: log('warning'), error: log('error') },
  });
  try {
    const clock = phase(setup);
    await bounded(runtime.start(), 30, 'starting the consumer runtime');
    const subscribed = performance.now();
    const status = () => runtime.status()[0] as ConsumerStatus;
    const applied = () => {
      const { counters, lastError } = status();
      if (counters.poison + counters.retried + counters.deadLettered + counters.databasePauses > 0) {
        throw new Error(`the ${name} consumer failed messages (${JSON.stringify(counters)}): ${lastError}`);
      }
      return counters.applied + counters.duplicates >= events;
    };
    const done = await bounded(whenTrue(applied), settings.runTimeoutS, `the ${name} consumer`);
    const cpu = clock.stop(events);
    const final = status();
    await runtime.stop(10_000);
    const statements = statementList(times);
    const depths = await queueDepths(env.RABBITMQ_URL, [QUEUES[name]]).catch(() => ({}));
    const queueDepthAfter = (depths as Record<string, number>)[QUEUES[name]] ?? null;
    const tables: Record<string, number> = {};
    const { counters } = final;
    const expected: Array<[string, number | null, number | null]> = [
      ['applied', counters.applied, events],
      ['duplicates', counters.duplicates, 0],
      ['retried', counters.retried, 0],
      ['dead-lettered', counters.deadLettered, 0],
      ['poison', counters.poison, 0],
      ['queue depth after', queueDepthAfter, 0],
      ['lines logged', logging?.counters.logged ?? null, logging === undefined ? null : events],
    ];
    await withClient(setup.databaseUrl, async (client) => {
      for (const [label, sql, count] of tableChecks(setup)) {
        tables[label] = Number((await client.query<{ n: string }>(`SELECT ${sql} AS n`)).rows[0]?.n);
        expected.push([label, tables[label], count]);
      }
    });
    const [seconds, fromStart] = [(done - subscribed) / 1000, (done - clock.started) / 1000];
    return {
      seconds: round(seconds, 3),
      eventsPerSec: Math.round(events / seconds),
      fromStart: { seconds: round(fromStart, 3), eventsPerSec: Math.round(events / fromStart) },
      status: final,
      statements,
      // A batch decided from the runtime's cache is one statement, its own transaction, with no BEGIN.
      transactions: Math.max(
        times.get('BEGIN')?.count ?? 0,
        statements
          .filter((time) => time.statement.startsWith('WITH '))
          .reduce((sum, time) => sum + time.count, 0),
      ),
      queueDepthAfter,
      tables,
      loggedLines: logging?.counters.logged ?? null,
      cpu,
      problems: expected
        .filter(([, actual, want]) => want !== null && actual !== want)
        .map(([what, actual, want]) => `${what} ${actual} ≠ ${want}`),
    };
  } finally {
    await runtime.stop(2000).catch(() => {});
    logging?.close();
    sink.end();
    await pool.end().catch(() => {});
  }
}

/** One run: the queue filled, the bare loop, the consumer, each on the run's own database and vhost. */
async function runOne(setup: Setup) {
  const started = performance.now();
  const queue = QUEUES[setup.consumer];
  const filled = await fill(setup.env.RABBITMQ_URL, queue, setup.prepared.messages, setup.settings);
  const bareResult = await bare(setup);
  const { problems, ...run } = await consume(setup);
  if (bareResult.rows !== setup.settings.events)
    problems.push(`bare rows ${bareResult.rows} ≠ ${setup.settings.events}`);
  const { consumer, batch, prefetch, database, prepared } = setup;
  return {
    consumer,
    batch,
    prefetch,
    database,
    events: setup.settings.events,
    byType: prepared.byType,
    bytesPerEvent: prepared.bytesPerEvent,
    fill: filled,
    bare: bareResult,
    run,
    /** consumer events/s ÷ bare rows/s. */
    ratio: round(run.eventsPerSec / bareResult.rowsPerSec, 3),
    /** The whole run: database migrated, fill, bare loop, consumer, checks. */
    wallSeconds: round((performance.now() - started) / 1000, 1),
    problems,
  };
}
type RunResult = Awaited<ReturnType<typeof runOne>>;

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const tag = Math.random().toString(16).slice(2, 10);
  const runs: RunResult[] = [];
  const broker = await waitForBroker();
  const probes = { rabbitmq: findRabbitmqPid(), postmaster: findPostmasterPid() };
  const postgresVersion = await withClient(`${settings.pgServerUrl}/postgres`, async (client) => {
    const { rows } = await client.query<{ v: string; sc: string }>(
      "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc",
    );
    return `${rows[0]?.v} (synchronous_commit ${rows[0]?.sc})`;
  });
  try {
    for (const batch of settings.batches) {
      const prefetch = settings.prefetch ?? 2 * batch;
      for (const consumer of settings.consumers) {
        progress(
          `${consumer}, batch ${batch}, prefetch ${prefetch}: ${formatNumber(settings.events)} events`,
        );
        const prepared = prepare(consumer, settings.events);
        const database = `tb_bench_consumers_${tag}_${consumer}_${batch}`;
        const databaseUrl = await createDatabase(settings.pgServerUrl, database);
        try {
          await migrate(databaseUrl);
          await waitForBroker();
          const { env } = await environments.create();
          const run = await runOne({
            consumer,
            batch,
            prefetch,
            prepared,
            env,
            database,
            databaseUrl,
            probes,
            settings,
          });
          runs.push(run);
          progress(
            `  ${formatNumber(run.run.eventsPerSec)} events/s, bare ${formatNumber(run.bare.rowsPerSec)} rows/s`,
          );
        } finally {
          await environments.removeAll();
          await dropDatabase(settings.pgServerUrl, database).catch((error: unknown) =>
            progress(`could not drop ${database}: ${String(error)}`),
          );
        }
      }
    }
    await report(settings, startedAt, runs, {
      env,
      broker,
      postgresVersion,
      alarmsAfter: await brokerAlarms(),
    });
  } finally {
    await environments.removeAll();
  }
  return runs.every((run) => run.problems.length === 0) ? 0 : 1;
}

async function report(
  settings: Settings,
  startedAt: Date,
  runs: RunResult[],
  context: {
    env: ReturnType<typeof environment>;
    broker: BrokerInfo;
    postgresVersion: string;
    alarmsAfter: string[];
  },
): Promise<void> {
  const { env, broker, postgresVersion, alarmsAfter } = context;
  const label = (run: RunResult) => `${run.consumer} b${run.batch}`;
  const throughput = table(
    'Throughput (queue pre-filled; bare = INSERT … ON CONFLICT DO NOTHING of the same events, same batches, same database)',
    runs,
    {
      consumer: (run) => run.consumer,
      batch: (run) => String(run.batch),
      prefetch: (run) => String(run.prefetch),
      events: (run) => formatNumber(run.events),
      seconds: (run) => formatNumber(run.run.seconds, 2),
      'events/s': (run) => formatNumber(run.run.eventsPerSec),
      'bare rows/s': (run) => formatNumber(run.bare.rowsPerSec),
      'consumer / bare': (run) => `${formatNumber(100 * run.ratio)}%`,
      transactions: (run) => formatNumber(run.run.transactions),
    },
  );
  type Phase = { name: string; seconds: number; cpu: CpuPerEvent };
  const phases = runs.flatMap((run): Phase[] => [
    { name: `${label(run)} consumer`, seconds: run.run.seconds, cpu: run.run.cpu },
    { name: `${label(run)} bare`, seconds: run.bare.seconds, cpu: run.bare.cpu },
  ]);
  const cores = (name: string) => (p: Phase) => p.cpu.processes[name]?.cores?.toFixed(2) ?? 'n/a';
  const cpu = table('CPU during each timed phase (cores: 1 = one core busy; µs per event)', phases, {
    phase: (p) => p.name,
    seconds: (p) => formatNumber(p.seconds, 2),
    'node cores': cores(NODE),
    'node µs/ev': (p) => formatUs(p.cpu.processes[NODE]?.usPerEvent),
    'PostgreSQL cores': cores(PG),
    'PG µs/ev': (p) => formatUs(p.cpu.processes[PG]?.usPerEvent),
    'PG bench-db backends': cores('postgres'),
    'RabbitMQ cores': cores('rabbitmq'),
    'others cores': (p) => othersCores(p.cpu, env.cpus, [NODE, PG, 'rabbitmq']),
  });
  // Each statement against its phase's wall time; what the consumer's statements leave is node's work.
  const lines = runs.flatMap((run) => {
    const inStatements = run.run.statements.reduce((sum, time) => sum + time.ms, 0);
    const outside = {
      statement: '(outside statements: node work — receive, parse, validate, hash, build, ack — or idle)',
      count: Number.NaN,
      ms: run.run.seconds * 1000 - inStatements,
    };
    return [
      ...[...run.run.statements, outside].map((time) => ({ time, run, phase: run.run, bare: '' })),
      ...run.bare.statements.map((time) => ({ time, run, phase: run.bare, bare: 'bare: ' })),
    ];
  });
  const statements = table(
    "Where each consumer's time goes: its statements, timed from node (round trip and parameter encoding included), against the wall time from subscribed to done",
    lines,
    {
      'run · statement': (l) => `${label(l.run)} · ${l.bare}${l.time.statement}`,
      count: (l) => (Number.isNaN(l.time.count) ? '' : formatNumber(l.time.count)),
      'ms / transaction': (l) => formatNumber(l.time.ms / Math.max(1, l.phase.transactions), 2),
      'µs / event': (l) => formatNumber((1000 * l.time.ms) / l.run.events, 1),
      '% of wall': (l) =>
        `${formatNumber((100 * l.time.ms) / (l.phase.seconds * 1000), 1)}%${l.bare && ' of bare'}`,
    },
  );
  // Judged at the default batch size: ≥ 10,000 events/s for the audit consumer when it was measured (else
  // the first consumer measured), and issue 15's goal, each consumer ÷ the bare loop ≥ 0.7 (the worst).
  const goalConsumer = settings.consumers.includes('audit') ? 'audit' : settings.consumers[0];
  const atGoalBatch = runs.filter((run) => run.batch === 250);
  const goalRun = atGoalBatch.find((run) => run.consumer === goalConsumer);
  const worst = [...atGoalBatch].sort((a, b) => a.ratio - b.ratio)[0];
  const goals = [
    judge(
      {
        name: `the ${goalConsumer} consumer at batch 250`,
        threshold: 10_000,
        comparison: '>=',
        unit: 'events/s',
      },
      goalRun?.run.eventsPerSec,
      goalRun === undefined
        ? 'batch 250 not run'
        : `${formatNumber(100 * goalRun.ratio)}% of the bare INSERT loop's ${formatNumber(goalRun.bare.rowsPerSec)} rows/s`,
    ),
    judge(
      goal(15, '>=', 0.7, 'ratio', 'each consumer (bench:consumers) ÷ the bare batched insert loop'),
      worst?.ratio,
      worst === undefined
        ? 'batch 250 not run'
        : `the lowest at batch 250: ${atGoalBatch.map((run) => `${run.consumer} ${formatNumber(run.ratio, 2)}`).join(', ')}`,
    ),
  ];
  const perRun = (text: (run: RunResult) => string) =>
    runs.map((run) => `${label(run)} ${text(run)}`).join(', ');
  const settingsText = [
    `${formatNumber(settings.events)} events per queue; batch ${settings.batches.join(', ')}; prefetch ${settings.prefetch ?? '2 × batch'}; batch wait 10 ms (default); fill window ${settings.window}`,
    ...settings.consumers.map(
      (consumer) =>
        `${consumer} (${QUEUES[consumer]}): ${mixText(consumer)}; ${runs.find((run) => run.consumer === consumer)?.bytesPerEvent ?? '?'} B per message on average`,
    ),
    `whole benchmark ${formatNumber((Date.now() - startedAt.getTime()) / 1000)} s; per run (build, database, fill, bare, consumer): ${perRun((run) => `${formatNumber(run.wallSeconds)} s`)}`,
    `from start() (connect + topology declare included): ${perRun((run) => `${formatNumber(run.run.fromStart.eventsPerSec)} events/s`)}`,
    `fill (not timed against anything; the broker's rate into one quorum queue): ${perRun((run) => `${formatNumber(run.fill.messagesPerSec)} msgs/s`)}`,
    'node = this process (the runtime and consumer, or the bare loop); PostgreSQL = the whole server, of which "bench-db backends" are the connections to the run\'s database; others = every other process on the machine (shared: a high figure means a disturbed run); method: bench/README.md',
    environmentText(
      env,
      `, PostgreSQL ${postgresVersion}, RabbitMQ ${broker.version} (Erlang ${broker.erlang})`,
    ),
  ];
  const checks = [
    ...runs.map((result) => {
      const { run, bare, problems } = result;
      const { applied, duplicates, retried, deadLettered, poison } = run.status.counters;
      const tables = Object.entries(run.tables).map(([table, count]) => `${table} ${formatNumber(count)}`);
      const logged = run.loggedLines === null ? [] : [`lines logged ${formatNumber(run.loggedLines)}`];
      return `${label(result)}: applied ${formatNumber(applied)}, duplicates ${duplicates}, retried ${retried}, dead-lettered ${deadLettered}, poison ${poison}, queue after ${run.queueDepthAfter ?? 'n/a'}, ${[...tables, ...logged].join(', ')}, bare rows ${formatNumber(bare.rows)} — ${problems.length === 0 ? 'ok' : `PROBLEMS: ${problems.join('; ')}`}`;
    }),
    `broker alarms after the runs: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
  ];
  await publishResults({
    name: settings.name,
    title: 'Consumer throughput benchmark',
    startedAt,
    goals: { title: 'Goals', goals },
    sections: [throughput, cpu, statements],
    notes: { settings: [...cli.settingsBlock(settings), ...settingsText], checks },
    command: invocation('bench:consumers'),
    report: {
      settings: {
        ...settings,
        prefetch: settings.prefetch ?? '2 × batch',
        mixes: Object.fromEntries(settings.consumers.map((consumer) => [consumer, mixText(consumer)])),
      },
      environment: { ...env, postgres: postgresVersion, rabbitmq: broker },
      runs,
      brokerAlarmsAfter: alarmsAfter,
    },
  });
}

runMain(NAME, cli.help(), main);
