/**
 * Consumer throughput: events per second each consumer applies to PostgreSQL with its queue pre-filled,
 * against a bare batched `INSERT … ON CONFLICT DO NOTHING` loop of the same rows, in the same run and
 * database. Method (fill, bare loop, consumer, checks, CPU): bench/README.md ("bench:consumers"). For a
 * CPU profile: `node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/consumers.ts --consumers audit …`.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { applyTopology } from '../src/bus/apply-topology.ts';
import { connectToBroker } from '../src/bus/broker-connection.ts';
import { type OutboundMessage, toOutboundMessage } from '../src/bus/outbound-message.ts';
import { buildTopology, DEFAULT_RETRY_DELAYS_MS, QUEUES } from '../src/bus/topology.ts';
import { analyticsConsumer } from '../src/consumers/analytics/analytics-consumer.ts';
import { auditConsumer } from '../src/consumers/audit/audit-consumer.ts';
import type { Consumer } from '../src/consumers/consumer.ts';
import { ConsumerRuntime, type ConsumerStatus } from '../src/consumers/consumer-runtime.ts';
import { type LoggingConsumer, loggingConsumer } from '../src/consumers/logging/logging-consumer.ts';
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
import { confirmPublish } from './support/confirm-publish.ts';
import { type BenchedConsumer, mixText, queueEmitCalls } from './support/consumer-events.ts';
import { findRabbitmqPid } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent, formatUs } from './support/cpu-per-event.ts';
import { createDatabase, dropDatabase, withClient } from './support/databases.ts';
import { recordBytes, recordOf } from './support/events.ts';
import { judge } from './support/goals.ts';
import {
  flag,
  integer,
  list,
  oneOf,
  commandLine as options,
  type Settings as SettingsOf,
  url,
} from './support/options.ts';
import { findPostmasterPid } from './support/postgres-cpu.ts';
import {
  environment,
  environmentText,
  formatNumber,
  progress,
  publishResults,
  round,
  type Section,
} from './support/report.ts';
import { bounded, handleSignals, interruptible, runMain, UsageError, whenTrue } from './support/settings.ts';

const NAME = 'consumers';
/** The consumers a default run measures; `metrics` has its own benchmark (bench/metrics.ts runs this one). */
const CONSUMERS: readonly BenchedConsumer[] = ['audit', 'analytics', 'logging'];
const ALL_CONSUMERS: readonly BenchedConsumer[] = [...CONSUMERS, 'metrics'];
const optionalInteger = (raw: string, name: string) => (raw === '' ? undefined : integer(1)(raw, name));
const resultsName = (raw: string) => {
  if (!/^[a-z0-9-]+$/.test(raw))
    throw new UsageError(`--name takes lowercase letters, digits and '-'; got '${raw}'`);
  return raw;
};

const cli = options({
  script: 'bench:consumers',
  summary: 'Each consumer against a bare batched INSERT loop of the same events, same run, same database.',
  options: {
    events: flag('events', '30000', integer(1), "events in each consumer's queue"),
    batches: flag('batch', '250,1000', list(integer(1)), 'batch sizes, comma-separated', { arg: '<list>' }),
    prefetch: flag('prefetch', '', optionalInteger, 'prefetch of every run (default 2 × batch)'),
    consumers: flag(
      'consumers',
      CONSUMERS.join(','),
      list(oneOf(ALL_CONSUMERS)),
      `${ALL_CONSUMERS.join(',')} or a subset`,
      { arg: '<list>' },
    ),
    window: flag('window', '1000', integer(1), 'unconfirmed messages while filling the queue'),
    runTimeoutS: flag('run-timeout', '300', integer(1), 'a phase taking longer fails the benchmark', {
      arg: '<s>',
    }),
    pgServerUrl: flag(
      'pg-url',
      'postgres://root@127.0.0.1:5432',
      url,
      'PostgreSQL server to create the databases on',
      { arg: '<url>' },
    ),
    name: flag('name', NAME, resultsName, 'results file name: bench/results/<name>-…', { arg: '<name>' }),
  },
});
type Settings = SettingsOf<typeof cli.options>;

// ---------------------------------------------------------------------------------------------------
// CPU

interface Probes {
  rabbitmq: number | undefined;
  postmaster: number | undefined;
}

/** This process (node), RabbitMQ, the PostgreSQL server and its backends of `database`. */
const cpuMeter = (probes: Probes, database: string) =>
  new CpuMeter({
    processes: { rabbitmq: probes.rabbitmq },
    postgres: { postmaster: probes.postmaster, database },
  });

const NODE = 'load generator';
const PG = 'postgres (server)';
const cores = (cpu: CpuPerEvent, name: string) => cpu.processes[name]?.cores?.toFixed(2) ?? 'n/a';

/** Cores used by every other process on the machine (shared: a high figure means a disturbed run). */
function othersCores(cpu: CpuPerEvent, cpus: number): string {
  const known = [NODE, PG, 'rabbitmq'].map((name) => cpu.processes[name]?.cores);
  if (cpu.machineBusy === null || known.some((value) => value === null || value === undefined)) return 'n/a';
  return Math.max(
    0,
    cpu.machineBusy * cpus - known.reduce((sum: number, value) => sum + (value ?? 0), 0),
  ).toFixed(2);
}

// ---------------------------------------------------------------------------------------------------
// Statement timing

interface StatementTime {
  statement: string;
  count: number;
  ms: number;
}

/** Times every query of the pool's clients, by statement (its first words), as seen from node. */
class StatementTimes {
  readonly #times = new Map<string, StatementTime>();

  instrument(pool: pg.Pool): void {
    pool.on('connect', (client) => {
      const target = client as unknown as { query: (...args: unknown[]) => unknown };
      const original = target.query;
      target.query = (...args: unknown[]) => {
        const started = performance.now();
        const result = original.apply(client, args);
        if (typeof (result as Promise<unknown> | undefined)?.then !== 'function') return result;
        const label = StatementTimes.label(args[0]);
        return (result as Promise<unknown>).then(
          (value) => {
            this.#add(label, performance.now() - started);
            return value;
          },
          (error: unknown) => {
            this.#add(label, performance.now() - started);
            throw error;
          },
        );
      };
    });
  }

  static label(query: unknown): string {
    const text =
      typeof query === 'string' ? query : String((query as { text?: unknown } | null)?.text ?? '(unknown)');
    const words = text.replace(/\s+/g, ' ').trim();
    return words.length > 64 ? `${words.slice(0, 61)}…` : words;
  }

  #add(statement: string, ms: number): void {
    const time = this.#times.get(statement) ?? { statement, count: 0, ms: 0 };
    time.count++;
    time.ms += ms;
    this.#times.set(statement, time);
  }

  all(): StatementTime[] {
    return [...this.#times.values()].map((time) => ({ ...time, ms: round(time.ms, 1) }));
  }
}

// ---------------------------------------------------------------------------------------------------
// Runs

interface Prepared {
  messages: OutboundMessage[];
  ids: string[];
  envelopes: string[];
  byType: Record<string, number>;
  bytesPerEvent: number;
}

function prepare(consumer: BenchedConsumer, count: number): Prepared {
  const { calls, byType } = queueEmitCalls(consumer, count);
  const ids: string[] = [];
  const envelopes: string[] = [];
  let bytes = 0;
  const messages = calls.map((call) => {
    ids.push(call.event.event_id);
    envelopes.push(JSON.stringify(call.event));
    const message = toOutboundMessage(recordBytes(recordOf(call)));
    bytes += message.body.length;
    return message;
  });
  return { messages, ids, envelopes, byType, bytesPerEvent: Math.round(bytes / count) };
}

const QUEUE_OF: Record<BenchedConsumer, string> = {
  audit: QUEUES.audit,
  analytics: QUEUES.analytics,
  logging: QUEUES.logging,
  metrics: QUEUES.metrics,
};

interface FillResult {
  seconds: number;
  messagesPerSec: number;
  queueDepth: number;
}

/** Publishes the messages as the API's publisher does (confirmed, `window` in flight), into `queue` only. */
async function fill(
  url: string,
  queue: string,
  messages: OutboundMessage[],
  settings: Settings,
): Promise<FillResult> {
  const connection = await connectToBroker(url, { name: 'telemetry-bus bench fill' });
  connection.on('error', () => {});
  try {
    await applyTopology(connection, onlyQueueFed(buildTopology(), queue));
    const channel: ConfirmChannel = await connection.createConfirmChannel();
    const total = messages.length;
    const started = performance.now();
    const { nacked, returned } = await bounded(
      confirmPublish(channel, { message: (index) => messages[index], window: settings.window }),
      settings.runTimeoutS,
      'filling the queue',
    );
    const seconds = (performance.now() - started) / 1000;
    if (nacked > 0 || returned > 0) throw new Error(`fill: ${nacked} nacked, ${returned} returned`);
    await channel.close().catch(() => {});
    // Every confirmed message is in the queue: wait until the queue says so.
    let depth = 0;
    const deadline = Date.now() + 60_000;
    for (;;) {
      depth = (await queueDepths(url, [queue]))[queue] ?? 0;
      if (depth >= total || Date.now() > deadline) break;
      await interruptible(new Promise((resolve) => setTimeout(resolve, 100)));
    }
    if (depth !== total) throw new Error(`${queue} holds ${depth} messages after the fill, not ${total}`);
    return { seconds: round(seconds, 2), messagesPerSec: Math.round(total / seconds), queueDepth: depth };
  } finally {
    await connection.close().catch(() => {});
  }
}

interface BareResult {
  seconds: number;
  rowsPerSec: number;
  transactions: number;
  rows: number;
  statements: StatementTime[];
  cpu: CpuPerEvent;
}

const BARE_TABLE = 'bench_bare_events';

/** The bare loop: the events as rows into a plain table keyed by event_id, a transaction per batch. */
async function bare(
  databaseUrl: string,
  database: string,
  prepared: Prepared,
  batch: number,
  probes: Probes,
  settings: Settings,
): Promise<BareResult> {
  return withClient(databaseUrl, async (client) => {
    await client.query(
      `CREATE TABLE ${BARE_TABLE} (event_id text COLLATE "C" PRIMARY KEY, envelope jsonb NOT NULL)`,
    );
    await client.query('CHECKPOINT');
    const times = { begin: 0, insert: 0, commit: 0 };
    const { ids, envelopes } = prepared;
    const meter = cpuMeter(probes, database);
    meter.start();
    const started = performance.now();
    let transactions = 0;
    await bounded(
      (async () => {
        for (let offset = 0; offset < ids.length; offset += batch) {
          let t = performance.now();
          await client.query('BEGIN');
          times.begin += performance.now() - t;
          t = performance.now();
          await client.query(
            `INSERT INTO ${BARE_TABLE} (event_id, envelope)
             SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING`,
            [ids.slice(offset, offset + batch), envelopes.slice(offset, offset + batch)],
          );
          times.insert += performance.now() - t;
          t = performance.now();
          await client.query('COMMIT');
          times.commit += performance.now() - t;
          transactions++;
        }
      })(),
      settings.runTimeoutS,
      'the bare INSERT loop',
    );
    const seconds = (performance.now() - started) / 1000;
    const cpu = meter.stop(ids.length);
    const { rows } = await client.query<{ count: string }>(`SELECT count(*) FROM ${BARE_TABLE}`);
    return {
      seconds: round(seconds, 3),
      rowsPerSec: Math.round(ids.length / seconds),
      transactions,
      rows: Number(rows[0]?.count),
      statements: [
        { statement: 'BEGIN', count: transactions, ms: round(times.begin, 1) },
        {
          statement: `INSERT INTO ${BARE_TABLE} … unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING`,
          count: transactions,
          ms: round(times.insert, 1),
        },
        { statement: 'COMMIT', count: transactions, ms: round(times.commit, 1) },
      ],
      cpu,
    };
  });
}

interface ConsumerPhase {
  /** From start() resolving (subscribed) to `applied` = events. */
  seconds: number;
  eventsPerSec: number;
  /** From start() itself (connect and topology declare included). */
  fromStart: { seconds: number; eventsPerSec: number };
  status: ConsumerStatus;
  statements: StatementTime[];
  transactions: number;
  queueDepthAfter: number | null;
  /** The tables the consumer wrote, counted after the run. */
  tables: Record<string, number>;
  /** The consumer de-duplicates in its own table: nothing of it in consumer_applied_events. */
  deduplicates: boolean;
  loggedLines: number | null;
  cpu: CpuPerEvent;
}

function buildConsumer(
  name: BenchedConsumer,
  env: BusEnvironment,
): { consumer: Consumer; logging?: LoggingConsumer; sink?: WriteStream } {
  switch (name) {
    case 'audit':
      return { consumer: auditConsumer() };
    case 'analytics':
      return { consumer: analyticsConsumer() };
    case 'metrics':
      return { consumer: metricsConsumer() };
    case 'logging': {
      const sink = createWriteStream('/dev/null');
      const logging = loggingConsumer({ directory: join(env.env.DATA_DIR, 'logs'), stdout: sink });
      return { consumer: logging, logging, sink };
    }
  }
}

async function tableCounts(databaseUrl: string, name: BenchedConsumer): Promise<Record<string, number>> {
  const queries: Record<string, string> = {
    consumer_applied_events: `SELECT count(*) AS n FROM consumer_applied_events WHERE consumer = '${name}'`,
    ...(name === 'audit'
      ? {
          audit_records: 'SELECT count(*) AS n FROM audit_records',
          audit_chain_heads: 'SELECT count(*) AS n FROM audit_chain_heads',
        }
      : {}),
    ...(name === 'analytics'
      ? {
          'model.queried (sum of analytics_model_queries.queries)':
            'SELECT coalesce(sum(queries), 0) AS n FROM analytics_model_queries',
          'filter.executed (sum of analytics_filter_executions.executions)':
            'SELECT coalesce(sum(executions), 0) AS n FROM analytics_filter_executions',
          'lifecycle (sum of analytics_model_lifecycle.events)':
            'SELECT coalesce(sum(events), 0) AS n FROM analytics_model_lifecycle',
        }
      : {}),
    ...(name === 'metrics'
      ? {
          metrics_events: 'SELECT count(*) AS n FROM metrics_events',
          // The consumer appends deltas; the compactor (not running here) moves them into the minute rows.
          "requests (sum of metrics_rollups.requests, '1m', and of the deltas not moved yet)": `SELECT
            (SELECT coalesce(sum(requests), 0) FROM metrics_rollups WHERE granularity = '1m')
            + (SELECT coalesce(sum(requests), 0) FROM metrics_rollup_deltas) AS n`,
        }
      : {}),
  };
  return withClient(databaseUrl, async (client) => {
    const counts: Record<string, number> = {};
    for (const [label, sql] of Object.entries(queries)) {
      const { rows } = await client.query<{ n: string }>(sql);
      counts[label] = Number(rows[0]?.n);
    }
    return counts;
  });
}

async function consume(
  name: BenchedConsumer,
  env: BusEnvironment,
  databaseUrl: string,
  database: string,
  total: number,
  batch: number,
  prefetch: number,
  probes: Probes,
  settings: Settings,
): Promise<ConsumerPhase> {
  await withClient(databaseUrl, (client) => client.query('CHECKPOINT'));
  const { consumer, logging, sink } = buildConsumer(name, env);
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 5 });
  pool.on('error', () => {});
  const statements = new StatementTimes();
  statements.instrument(pool);
  const runtime = new ConsumerRuntime({
    urls: [env.env.RABBITMQ_URL],
    pool,
    topology: buildTopology(),
    consumers: [consumer],
    retryDelaysMs: DEFAULT_RETRY_DELAYS_MS,
    batchSize: batch,
    prefetch,
    // Warnings (a lost connection, a pause) explain a slow or failed run: printed, not swallowed.
    logger: {
      info() {},
      warn: (object, message) => progress(`  runtime warning: ${message} ${JSON.stringify(object)}`),
      error: (object, message) => progress(`  runtime error: ${message} ${JSON.stringify(object)}`),
    },
  });
  let stopped = false;
  try {
    const meter = cpuMeter(probes, database);
    meter.start();
    const started = performance.now();
    await bounded(runtime.start(), 30, 'starting the consumer runtime');
    const subscribed = performance.now();
    const done = await bounded(
      whenTrue(() => {
        const status = runtime.status()[0] as ConsumerStatus;
        const { counters } = status;
        if (counters.poison + counters.retried + counters.deadLettered + counters.databasePauses > 0) {
          throw new Error(
            `the ${name} consumer failed messages (${JSON.stringify(counters)}): ${status.lastError}`,
          );
        }
        return counters.applied + counters.duplicates >= total;
      }),
      settings.runTimeoutS,
      `the ${name} consumer`,
    );
    const cpu = meter.stop(total);
    const status = runtime.status()[0] as ConsumerStatus;
    await runtime.stop(10_000);
    stopped = true;
    const seconds = (done - subscribed) / 1000;
    const fromStart = (done - started) / 1000;
    const timed = statements.all();
    let queueDepthAfter: number | null = null;
    try {
      queueDepthAfter = (await queueDepths(env.env.RABBITMQ_URL, [QUEUE_OF[name]]))[QUEUE_OF[name]] ?? null;
    } catch (error) {
      progress(`  could not read the depth of ${QUEUE_OF[name]}: ${String(error)}`);
    }
    return {
      seconds: round(seconds, 3),
      eventsPerSec: Math.round(total / seconds),
      fromStart: { seconds: round(fromStart, 3), eventsPerSec: Math.round(total / fromStart) },
      status,
      statements: timed,
      // A batch decided from the runtime's cache is one statement, its own transaction, with no BEGIN.
      transactions: Math.max(
        timed.find((time) => time.statement === 'BEGIN')?.count ?? 0,
        timed.filter((time) => time.statement.startsWith('WITH ')).reduce((sum, time) => sum + time.count, 0),
      ),
      queueDepthAfter,
      tables: await tableCounts(databaseUrl, name),
      deduplicates: consumer.deduplicates === true,
      loggedLines: logging?.counters.logged ?? null,
      cpu,
    };
  } finally {
    if (!stopped) await runtime.stop(2000).catch(() => {});
    logging?.close();
    sink?.end();
    await pool.end().catch(() => {});
  }
}

interface RunResult {
  consumer: BenchedConsumer;
  batch: number;
  prefetch: number;
  events: number;
  byType: Record<string, number>;
  bytesPerEvent: number;
  database: string;
  fill: FillResult;
  bare: BareResult;
  run: ConsumerPhase;
  /** consumer events/s ÷ bare rows/s. */
  ratio: number;
  /** The whole run: events built, database created and migrated, fill, bare loop, consumer, checks. */
  wallSeconds: number;
  problems: string[];
}

function checkRun(result: Omit<RunResult, 'problems'>): string[] {
  const { run, events, bare: bareResult, consumer, byType } = result;
  const problems: string[] = [];
  const { counters } = run.status;
  const expect = (what: string, actual: number | null, expected: number) => {
    if (actual !== expected) problems.push(`${what} ${actual} ≠ ${expected}`);
  };
  expect('applied', counters.applied, events);
  expect('duplicates', counters.duplicates, 0);
  expect('retried', counters.retried, 0);
  expect('dead-lettered', counters.deadLettered, 0);
  expect('poison', counters.poison, 0);
  expect('queue depth after', run.queueDepthAfter, 0);
  // Stamped events are de-duplicated by their producer stream, without a row each.
  expect('consumer_applied_events', run.tables.consumer_applied_events ?? null, 0);
  expect('bare rows', bareResult.rows, events);
  if (consumer === 'audit') expect('audit_records', run.tables.audit_records ?? null, events);
  if (consumer === 'analytics') {
    expect(
      'queries counted',
      run.tables['model.queried (sum of analytics_model_queries.queries)'] ?? null,
      byType['model.queried'] ?? 0,
    );
    expect(
      'filters counted',
      run.tables['filter.executed (sum of analytics_filter_executions.executions)'] ?? null,
      byType['filter.executed'] ?? 0,
    );
    expect(
      'lifecycle counted',
      run.tables['lifecycle (sum of analytics_model_lifecycle.events)'] ?? null,
      (byType['model.registered'] ?? 0) + (byType['model.updated'] ?? 0) + (byType['model.deactivated'] ?? 0),
    );
  }
  if (consumer === 'logging') expect('lines logged', run.loggedLines, events);
  if (consumer === 'metrics') {
    expect('metrics_events', run.tables.metrics_events ?? null, events);
    const rollups = "requests (sum of metrics_rollups.requests, '1m', and of the deltas not moved yet)";
    expect(rollups, run.tables[rollups] ?? null, events);
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------------
// Main

/** The command that repeats this run whatever the defaults become: every setting that shapes it spelled out. */
function effectiveCommand(settings: Settings): string {
  const flags = [
    `--events ${settings.events}`,
    `--batch ${settings.batches.join(',')}`,
    ...(settings.prefetch === undefined ? [] : [`--prefetch ${settings.prefetch}`]),
    ...(settings.consumers.length === CONSUMERS.length
      ? []
      : [`--consumers ${settings.consumers.join(',')}`]),
    ...(settings.window === 1000 ? [] : [`--window ${settings.window}`]),
    ...(settings.name === NAME ? [] : [`--name ${settings.name}`]),
  ];
  return `npm run bench:consumers -- ${flags.join(' ')}`;
}

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const databases = new Set<string>();
  const tag = Math.random().toString(16).slice(2, 10);
  const runs: RunResult[] = [];
  let broker: BrokerInfo | undefined;
  let postgresVersion = 'unknown';
  let alarmsAfter: string[] = [];
  let probes: Probes = { rabbitmq: undefined, postmaster: undefined };
  let failure: unknown;

  try {
    broker = await waitForBroker();
    probes = { rabbitmq: findRabbitmqPid(), postmaster: findPostmasterPid() };
    postgresVersion = await withClient(`${settings.pgServerUrl}/postgres`, async (client) => {
      const { rows } = await client.query<{ v: string; sc: string }>(
        "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc",
      );
      return `${rows[0]?.v} (synchronous_commit ${rows[0]?.sc})`;
    });
    for (const batch of settings.batches) {
      const prefetch = settings.prefetch ?? 2 * batch;
      for (const consumer of settings.consumers) {
        progress(
          `${consumer}, batch ${batch}, prefetch ${prefetch}: building ${formatNumber(settings.events)} events`,
        );
        const runStarted = performance.now();
        const prepared = prepare(consumer, settings.events);
        const database = `tb_bench_consumers_${tag}_${consumer}_${batch}`;
        databases.add(database);
        const databaseUrl = await createDatabase(settings.pgServerUrl, database);
        await migrate(databaseUrl);
        await waitForBroker();
        const busEnv = await environments.create();
        try {
          const queue = QUEUE_OF[consumer];
          progress(`  filling ${queue} in vhost ${busEnv.vhost.vhost}`);
          const filled = await fill(busEnv.env.RABBITMQ_URL, queue, prepared.messages, settings);
          progress(
            `  ${formatNumber(filled.messagesPerSec)} msgs/s confirmed; ${queue} holds ${formatNumber(filled.queueDepth)}`,
          );
          progress('  bare INSERT loop');
          const bareResult = await bare(databaseUrl, database, prepared, batch, probes, settings);
          progress(`  ${formatNumber(bareResult.rowsPerSec)} rows/s over ${bareResult.seconds} s`);
          progress(`  ${consumer} consumer`);
          const run = await consume(
            consumer,
            busEnv,
            databaseUrl,
            database,
            settings.events,
            batch,
            prefetch,
            probes,
            settings,
          );
          progress(
            `  ${formatNumber(run.eventsPerSec)} events/s over ${run.seconds} s; node ${cores(run.cpu, NODE)}, PostgreSQL ${cores(run.cpu, PG)}, RabbitMQ ${cores(run.cpu, 'rabbitmq')} cores`,
          );
          const result = {
            consumer,
            batch,
            prefetch,
            events: settings.events,
            byType: prepared.byType,
            bytesPerEvent: prepared.bytesPerEvent,
            database,
            fill: filled,
            bare: bareResult,
            run,
            ratio: round(run.eventsPerSec / bareResult.rowsPerSec, 3),
            wallSeconds: round((performance.now() - runStarted) / 1000, 1),
          };
          progress(`  ${result.wallSeconds} s for this run (events built, database, fill, bare, consumer)`);
          runs.push({ ...result, problems: checkRun(result) });
        } finally {
          await environments.remove(busEnv).catch((error: unknown) => {
            progress(`could not remove vhost ${busEnv.vhost.vhost}: ${String(error)}`);
          });
          await dropDatabase(settings.pgServerUrl, database)
            .then(() => databases.delete(database))
            .catch((error: unknown) => progress(`could not drop ${database}: ${String(error)}`));
        }
      }
    }
    alarmsAfter = await brokerAlarms();
  } catch (error) {
    failure = error;
  } finally {
    await environments.removeAll();
    for (const database of databases) {
      await dropDatabase(settings.pgServerUrl, database).catch((error: unknown) =>
        progress(`could not drop ${database}: ${String(error)}`),
      );
    }
  }
  if (failure !== undefined) throw failure;

  // ---------------------------------------------------------------------------------------------------
  // Report

  const label = (run: RunResult) => `${run.consumer} b${run.batch}`;
  const sections: Section[] = [
    {
      title:
        'Throughput (queue pre-filled; bare = INSERT … ON CONFLICT DO NOTHING of the same events, same batches, same database)',
      columns: [
        'consumer',
        'batch',
        'prefetch',
        'events',
        'seconds',
        'events/s',
        'bare rows/s',
        'consumer / bare',
        'transactions',
      ],
      rows: runs.map((run) => [
        run.consumer,
        String(run.batch),
        String(run.prefetch),
        formatNumber(run.events),
        formatNumber(run.run.seconds, 2),
        formatNumber(run.run.eventsPerSec),
        formatNumber(run.bare.rowsPerSec),
        `${formatNumber(100 * run.ratio)}%`,
        formatNumber(run.run.transactions),
      ]),
    },
    {
      title: 'CPU during each timed phase (cores: 1 = one core busy; µs per event)',
      columns: [
        'phase',
        'seconds',
        'node cores',
        'node µs/ev',
        'PostgreSQL cores',
        'PG µs/ev',
        'PG bench-db backends',
        'RabbitMQ cores',
        'others cores',
      ],
      rows: runs.flatMap((run) =>
        (
          [
            ['consumer', run.run.seconds, run.run.cpu],
            ['bare', run.bare.seconds, run.bare.cpu],
          ] as const
        ).map(([phase, seconds, cpu]) => [
          `${label(run)} ${phase}`,
          formatNumber(seconds, 2),
          cores(cpu, NODE),
          formatUs(cpu.processes[NODE]?.usPerEvent),
          cores(cpu, PG),
          formatUs(cpu.processes[PG]?.usPerEvent),
          cores(cpu, 'postgres'),
          cores(cpu, 'rabbitmq'),
          othersCores(cpu, env.cpus),
        ]),
      ),
    },
    {
      title:
        "Where each consumer's time goes: its statements, timed from node (round trip and parameter encoding included), against the wall time from subscribed to done",
      columns: ['run · statement', 'count', 'ms / transaction', 'µs / event', '% of wall'],
      rows: runs.flatMap((run) => {
        const wallMs = run.run.seconds * 1000;
        const transactions = Math.max(1, run.run.transactions);
        const inStatements = run.run.statements.reduce((sum, time) => sum + time.ms, 0);
        const row = (statement: string, count: string, ms: number) => [
          `${label(run)} · ${statement}`,
          count,
          formatNumber(ms / transactions, 2),
          formatNumber((1000 * ms) / run.events, 1),
          `${formatNumber((100 * ms) / wallMs, 1)}%`,
        ];
        return [
          ...[...run.run.statements]
            .sort((a, b) => b.ms - a.ms)
            .map((time) => row(time.statement, formatNumber(time.count), time.ms)),
          row(
            '(outside statements: node work — receive, parse, validate, hash, build, ack — or idle)',
            '',
            wallMs - inStatements,
          ),
          ...run.bare.statements.map((time) =>
            row(`bare: ${time.statement}`, formatNumber(time.count), time.ms).map((cell, index) =>
              // The bare loop's share is of its own wall time.
              index === 4 ? `${formatNumber((100 * time.ms) / (run.bare.seconds * 1000), 1)}% of bare` : cell,
            ),
          ),
        ];
      }),
    },
  ];
  // Judged at the default batch size: ≥ 10,000 events/s for the audit consumer when it was measured (else
  // the first consumer measured), and issue 15's goal, each consumer ÷ the bare loop ≥ 0.7 (the worst).
  const goalConsumer = settings.consumers.includes('audit') ? 'audit' : settings.consumers[0];
  const atGoalBatch = runs.filter((run) => run.batch === 250);
  const goalRun = atGoalBatch.find((run) => run.consumer === goalConsumer);
  const worst = atGoalBatch.reduce<RunResult | undefined>(
    (w, run) => (w === undefined || run.ratio < w.ratio ? run : w),
    undefined,
  );
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
      {
        name: 'each consumer (bench:consumers) ÷ the bare batched insert loop',
        threshold: 0.7,
        comparison: '>=',
        unit: 'ratio',
        issue: 15,
      },
      worst?.ratio,
      worst === undefined
        ? 'batch 250 not run'
        : `the lowest at batch 250: ${atGoalBatch.map((run) => `${run.consumer} ${formatNumber(run.ratio, 2)}`).join(', ')}`,
    ),
  ];
  const settingsText = [
    `${formatNumber(settings.events)} events per queue; batch ${settings.batches.join(', ')}; prefetch ${settings.prefetch ?? '2 × batch'}; batch wait 10 ms (default); fill window ${settings.window}`,
    ...settings.consumers.map(
      (consumer) =>
        `${consumer} (${QUEUE_OF[consumer]}): ${mixText(consumer)}; ${runs.find((run) => run.consumer === consumer)?.bytesPerEvent ?? '?'} B per message on average`,
    ),
    'each run: a fresh migrated database and vhost; the queue filled as the API publishes (only it bound during the fill), then the bare loop, then the consumer, each after a CHECKPOINT; consumer timed from start() resolving to applied = events',
    `whole benchmark ${formatNumber((Date.now() - startedAt.getTime()) / 1000)} s; per run (build, database, fill, bare, consumer): ${runs.map((run) => `${label(run)} ${formatNumber(run.wallSeconds)} s`).join(', ')}`,
    `from start() (connect + topology declare included): ${runs.map((run) => `${label(run)} ${formatNumber(run.run.fromStart.eventsPerSec)} events/s`).join(', ')}`,
    `fill (not timed against anything; the broker's rate into one quorum queue): ${runs.map((run) => `${label(run)} ${formatNumber(run.fill.messagesPerSec)} msgs/s`).join(', ')}`,
    'bare: one connection, BEGIN; INSERT INTO bench_bare_events (event_id text PRIMARY KEY, envelope jsonb) SELECT * FROM unnest($1::text[], $2::jsonb[]) ON CONFLICT DO NOTHING; COMMIT per batch',
    'node = this process (the runtime and consumer; or the bare loop); PostgreSQL = the whole server (postmaster and all its processes), of which "bench-db backends" are the connections to the run\'s database; others = every other process on the machine (shared: a high figure means a disturbed run)',
    'logging consumer: lines to <DATA_DIR>/logs/errors.log (10 MiB rotation) and to /dev/null in place of stdout',
    environmentText(
      env,
      `, PostgreSQL ${postgresVersion}${broker === undefined ? '' : `, RabbitMQ ${broker.version} (Erlang ${broker.erlang})`}`,
    ),
  ];
  const checks = [
    ...runs.map(
      (run) =>
        `${label(run)}: applied ${formatNumber(run.run.status.counters.applied)}, duplicates ${run.run.status.counters.duplicates}, retried ${run.run.status.counters.retried}, dead-lettered ${run.run.status.counters.deadLettered}, poison ${run.run.status.counters.poison}, queue after ${run.run.queueDepthAfter ?? 'n/a'}, ${Object.entries(
          run.run.tables,
        )
          .map(([table, count]) => `${table} ${formatNumber(count)}`)
          .join(
            ', ',
          )}${run.run.loggedLines === null ? '' : `, lines logged ${formatNumber(run.run.loggedLines)}`}, bare rows ${formatNumber(run.bare.rows)} — ${run.problems.length === 0 ? 'ok' : `PROBLEMS: ${run.problems.join('; ')}`}`,
    ),
    `broker alarms after the runs: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
  ];
  await publishResults({
    name: settings.name,
    title: 'Consumer throughput benchmark',
    startedAt,
    goals: { title: 'Goals', goals },
    sections,
    verdicts: [],
    notes: { settings: [...cli.settingsBlock(settings), ...settingsText], checks },
    command: effectiveCommand(settings),
    report: {
      settings: {
        ...settings,
        prefetch: settings.prefetch ?? '2 × batch',
        mixes: Object.fromEntries(settings.consumers.map((consumer) => [consumer, mixText(consumer)])),
      },
      environment: { ...env, postgres: postgresVersion, rabbitmq: broker ?? null },
      runs,
      brokerAlarmsAfter: alarmsAfter,
    },
  });
  return runs.every((run) => run.problems.length === 0) ? 0 : 1;
}

runMain(NAME, cli.help(), main);
