/**
 * Publisher throughput: SpoolPublisher (src/bus/spool-publisher.ts) against a plain amqplib loop, in the
 * same run, with the same messages, window and topology.
 *
 *   npm run bench:publisher -- --help
 *
 * For a CPU profile of the publishing side: `node --cpu-prof --cpu-prof-dir=DIR --import tsx
 * bench/publisher.ts …` (the publisher runs in this process).
 *
 * `messages` spool records are built once, as `EventBus.emit()` writes them, for a mix of 60% model.queried,
 * 20% filter.executed, 10% api.request and 10% api.error (bench/support/events.ts). Then, alternately,
 * `repeat` times each:
 *   raw   a ConfirmChannel of its own publishes the records' `toOutboundMessage()` (the very exchange,
 *         routing key, body, properties and headers the publisher sends) keeping `window` unconfirmed at
 *         most (and waiting for 'drain' when amqplib asks to); timed from the first publish to the last
 *         confirm.
 *   ours  the records are appended to a Spool first, with no publisher; then a SpoolPublisher (same window)
 *         is started and timed until the spool has nothing unconfirmed: from its connection (after its
 *         topology declare, as the raw loop's clock starts after its own), and from start() as well.
 *   raw prebuilt  the same loop through amqplib's lower level with the messages' pre-built fields
 *         (src/bus/confirm-send.ts, the way the service publishes): the encoder's choice, in numbers.
 *   thread  the records appended to a spool, then an EventBus opened on it: its publisher thread (the
 *         API's way) sends them; its CPU is read from its own /proc/self/task/<tid> (the tid it reports).
 * Per run, the CPU of the publishing thread per message (this process's main thread for raw and ours)
 * gives issue 14's "publisher thread CPU per message ÷ raw amqplib loop" (thread ÷ raw, medians).
 * and once more:
 *   ours+emit  an EventBus publishes while events are emitted into it, in the same event loop, at
 *         `concurrent-rate` per second (default: 1.5 × the raw median, more than the broker takes, so the
 *         publisher always has a backlog) for `concurrent-duration` s; its steady-state rate is the confirms
 *         per second after the first `concurrent-skip` s.
 * Each run gets a fresh vhost (the real topology: quorum queues, no consumers), deleted after it, so no
 * run publishes into queues that an earlier run filled. The depth of `metrics.updates` (bound to every
 * event) is checked against what was confirmed. Results go to bench/results/.
 *
 * 50,000 messages per run by default: the broker confirms some 3,000–5,000 of these a second on a shared
 * 2-core machine (quorum queues fsync), so the whole benchmark stays under two minutes; --messages 100000
 * for longer, steadier runs.
 */
import { join } from 'node:path';
import type { ConfirmChannel } from 'amqplib';
import { applyTopology } from '../src/bus/apply-topology.ts';
import { connectToBroker } from '../src/bus/broker-connection.ts';
import { EventBus } from '../src/bus/event-bus.ts';
import { type OutboundMessage, toOutboundMessage } from '../src/bus/outbound-message.ts';
import { Spool } from '../src/bus/spool/spool.ts';
import { SpoolPublisher } from '../src/bus/spool-publisher.ts';
import { buildTopology, QUEUES, type Topology } from '../src/bus/topology.ts';
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
import {
  type CpuUse,
  cpuSnapshot,
  cpuUse,
  findRabbitmqPid,
  formatCores,
  othersCores,
} from './support/cpu.ts';
import { threadTicks } from './support/cpu-per-event.ts';
import {
  buildEmitCalls,
  DEFAULT_MIX,
  type EmitCall,
  mixSequence,
  recordBytes as recordBytesOf,
  recordOf,
  type SpoolRecordText,
} from './support/events.ts';
import { judge } from './support/goals.ts';
import {
  flag,
  integer,
  list,
  oneOf,
  commandLine as options,
  type Settings as SettingsOf,
} from './support/options.ts';
import {
  commandLine,
  environment,
  environmentText,
  formatNumber,
  progress,
  publishResults,
  round,
  type Section,
} from './support/report.ts';
import {
  bounded,
  handleSignals,
  runMain,
  throwIfInterrupted,
  UsageError,
  whenTrue,
} from './support/settings.ts';
import { median } from './support/stats.ts';

const NAME = 'publisher';
const METRICS_QUEUE = QUEUES.metrics;
/**
 * --raw-also: the raw loop into one queue (every event bound to metrics.updates alone), a quorum queue
 * as declared, or (a reference figure only: the service keeps quorum queues) a durable classic queue.
 */
const RAW_INTO = ['one-quorum', 'one-classic'] as const;
type RawInto = (typeof RAW_INTO)[number];

/** The topology a raw run declares: the real one, or every event into metrics.updates alone. */
function rawTopology(into: RawInto | undefined): Topology {
  if (into === undefined) return buildTopology();
  const one = onlyQueueFed(buildTopology(), METRICS_QUEUE);
  if (into === 'one-quorum') return one;
  return {
    ...one,
    queues: one.queues.map((queue) =>
      queue.name === METRICS_QUEUE ? { ...queue, arguments: { 'x-queue-type': 'classic' } } : queue,
    ),
  };
}
/** What the benchmark is judged against: ours at least this share of the raw loop's rate (medians). */
const GOAL = { minRatio: 0.8 } as const;

const cli = options({
  script: 'bench:publisher',
  summary: 'SpoolPublisher against a plain amqplib confirm loop, same messages, window and topology.',
  options: {
    messages: flag('messages', '50000', integer(1), 'messages per raw/ours run'),
    window: flag('window', '1000', integer(1), 'unconfirmed messages in flight, at most'),
    repeat: flag('repeat', '2', integer(1), 'raw/ours pairs, run alternately'),
    concurrentDurationS: flag(
      'concurrent-duration',
      '15',
      integer(0),
      'seconds of the ours+emit run; 0 = skip it',
      { arg: '<s>' },
    ),
    concurrentRate: flag(
      'concurrent-rate',
      '',
      (raw, name) => (raw === '' ? undefined : integer(1)(raw, name)),
      'events emitted per second during it (default 1.5 × the raw median)',
    ),
    concurrentSkipS: flag('concurrent-skip', '3', integer(0), 'seconds before its steady state is measured', {
      arg: '<s>',
    }),
    pacedRate: flag('paced-rate', '1000', integer(1), 'events per second of the paced thread runs'),
    pacedDurationS: flag(
      'paced-duration',
      '10',
      integer(0),
      'seconds of each paced thread run; 0 = skip them',
      {
        arg: '<s>',
      },
    ),
    lingers: flag(
      'linger',
      '0,2',
      list(integer(0)),
      "the publisher thread's linger (ms) in the paced thread runs, one run each",
    ),
    rawAlso: flag(
      'raw-also',
      '',
      (raw, name) => (raw === '' ? [] : list(oneOf(RAW_INTO))(raw, name)),
      `raw loops also run per round into ${METRICS_QUEUE} alone (no fan-out), as: ${RAW_INTO.join(', ')}`,
      { arg: '<list>' },
    ),
    runTimeoutS: flag('run-timeout', '120', integer(1), 'a run taking longer fails the benchmark', {
      arg: '<s>',
    }),
  },
});
type Settings = SettingsOf<typeof cli.options>;

function readSettings(): Settings {
  const settings = cli.read();
  if (settings.concurrentDurationS > 0 && settings.concurrentSkipS >= settings.concurrentDurationS) {
    throw new UsageError('--concurrent-skip must be shorter than --concurrent-duration');
  }
  return settings;
}

// ---------------------------------------------------------------------------------------------------
// Runs

type Kind = 'raw' | `raw ${RawInto}` | 'raw prebuilt' | 'ours' | 'thread' | 'thread paced' | 'ours+emit';

interface RunResult {
  kind: Kind;
  /** 1-based, per kind. */
  round: number;
  messages: number;
  /** The measured interval (see the header comment for each kind). */
  seconds: number;
  messagesPerSec: number;
  /** ours: from start(), connect and topology declare included. */
  fromStart: { seconds: number; messagesPerSec: number } | null;
  /** ours+emit: what was emitted, and the backlog left. */
  concurrent: {
    emitted: number;
    emittedPerSec: number;
    confirmedTotal: number;
    backlogAtEnd: number;
    samples: Array<{ t: number; emitted: number; confirmed: number; unconfirmed: number }>;
  } | null;
  confirmed: number;
  nacked: number;
  returned: number;
  resent: number;
  connects: number;
  /** Depth of metrics.updates (every event is routed there) after the run; must equal `confirmed`. */
  metricsQueueDepth: number | null;
  cpu: CpuUse;
  /** thread paced: the linger it ran with, and the publish latency (emit → confirm) of its messages, ms. */
  paced?: {
    lingerMs: number;
    publishLatencyMs: { p50: number | null; p95: number | null; p99: number | null };
  };
  /**
   * CPU of the thread that published, in µs: this process's main thread (raw, ours), the publisher
   * thread (thread, by the tid it reports); null where /proc could not be read.
   */
  publishingThreadUs: number | null;
}

/** utime + stime of one of this process's threads, in µs; undefined where /proc cannot be read. */
function threadUs(tid: number): number | undefined {
  const thread = threadTicks(process.pid).find((entry) => entry.tid === tid);
  return thread === undefined ? undefined : (thread.ticks.user + thread.ticks.system) * 10_000;
}

const usBetween = (before: number | undefined, after: number | undefined) =>
  before === undefined || after === undefined ? null : after - before;

async function declareTopology(url: string, topology: Topology): Promise<void> {
  const connection = await connectToBroker(url, { name: 'telemetry-bus bench topology' });
  try {
    await applyTopology(connection, topology);
  } finally {
    await connection.close().catch(() => {});
  }
}

/** The raw loop: the publisher's messages through a bare ConfirmChannel with the same window. */
async function runRaw(
  env: BusEnvironment,
  messages: OutboundMessage[],
  settings: Settings,
  rabbitPid: number | undefined,
  send: 'publish' | 'prebuilt',
  into?: RawInto,
): Promise<Omit<RunResult, 'round' | 'metricsQueueDepth'>> {
  const url = env.env.RABBITMQ_URL;
  await declareTopology(url, rawTopology(into));
  const connection = await connectToBroker(url, { name: 'telemetry-bus bench raw publisher' });
  connection.on('error', () => {});
  try {
    const channel: ConfirmChannel = await connection.createConfirmChannel();
    const total = messages.length;
    const before = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadBefore = threadUs(process.pid);
    const started = performance.now();
    const { confirmed, nacked, returned } = await bounded(
      confirmPublish(channel, { message: (index) => messages[index], window: settings.window, send }),
      settings.runTimeoutS,
      'the raw run',
    );
    const seconds = (performance.now() - started) / 1000;
    const after = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadAfter = threadUs(process.pid);
    await channel.close().catch(() => {});
    return {
      kind: send === 'prebuilt' ? 'raw prebuilt' : into === undefined ? 'raw' : `raw ${into}`,
      publishingThreadUs: usBetween(threadBefore, threadAfter),
      messages: total,
      seconds: round(seconds, 3),
      messagesPerSec: Math.round(total / seconds),
      fromStart: null,
      concurrent: null,
      confirmed,
      nacked,
      returned,
      resent: 0,
      connects: 1,
      cpu: cpuUse(before, after),
    };
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Ours: a spool filled first, then a SpoolPublisher started and timed until all is confirmed. */
async function runOurs(
  env: BusEnvironment,
  records: SpoolRecordText[],
  settings: Settings,
  rabbitPid: number | undefined,
): Promise<Omit<RunResult, 'round' | 'metricsQueueDepth'>> {
  const spool = Spool.open({
    directory: join(env.env.DATA_DIR, 'spool'),
    maxBytes: Math.max(1024 ** 3, records.length * 4096),
  });
  let publisher: SpoolPublisher | undefined;
  try {
    for (const record of records) {
      if (spool.append(record) < 0) throw new Error(`spool append failed: ${JSON.stringify(spool.stats())}`);
    }
    publisher = new SpoolPublisher(spool, {
      urls: [env.env.RABBITMQ_URL],
      topology: buildTopology(),
      window: settings.window,
    });
    const running = publisher;
    const before = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadBefore = threadUs(process.pid);
    const started = performance.now();
    running.start();
    const connected = whenTrue(() => running.status().state === 'connected', 1);
    const drained = await bounded(
      whenTrue(() => spool.stats().unconfirmed === 0),
      settings.runTimeoutS,
      'the ours run',
    );
    const connectedAt = await connected;
    const after = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadAfter = threadUs(process.pid);
    await running.stop(1000);
    const { counters } = running.status();
    const seconds = (drained - connectedAt) / 1000;
    const fromStart = (drained - started) / 1000;
    return {
      kind: 'ours',
      publishingThreadUs: usBetween(threadBefore, threadAfter),
      messages: records.length,
      seconds: round(seconds, 3),
      messagesPerSec: Math.round(records.length / seconds),
      fromStart: { seconds: round(fromStart, 3), messagesPerSec: Math.round(records.length / fromStart) },
      concurrent: null,
      confirmed: counters.confirmed,
      nacked: counters.nacked,
      returned: counters.returned,
      resent: counters.resent,
      connects: counters.connects,
      cpu: cpuUse(before, after),
    };
  } finally {
    await publisher?.stop(0);
    await spool.close();
  }
}

/**
 * The publisher thread (the API's way): the records appended to a spool first, then an EventBus opened
 * on it, whose thread sends them; timed and its CPU read from the moment the thread reports its tid
 * (its modules loaded; connect and topology declare included) until the spool has nothing unconfirmed.
 */
async function runThread(
  env: BusEnvironment,
  records: SpoolRecordText[],
  settings: Settings,
  rabbitPid: number | undefined,
): Promise<Omit<RunResult, 'round' | 'metricsQueueDepth'>> {
  const dataDir = env.env.DATA_DIR;
  const spoolMaxBytes = Math.max(1024 ** 3, records.length * 4096);
  const spool = Spool.open({ directory: join(dataDir, 'spool'), maxBytes: spoolMaxBytes });
  try {
    for (const record of records) {
      if (spool.append(record) < 0) throw new Error(`spool append failed: ${JSON.stringify(spool.stats())}`);
    }
  } finally {
    await spool.close();
  }
  const bus = EventBus.open({
    dataDir,
    rabbitmqUrls: [env.env.RABBITMQ_URL],
    topology: buildTopology(),
    publishWindow: settings.window,
    spoolMaxBytes,
  });
  try {
    await bounded(
      whenTrue(() => bus.status().publisherThread?.tid != null, 1),
      15,
      'the publisher thread to start',
    );
    const tid = bus.status().publisherThread?.tid as number;
    const before = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadBefore = threadUs(tid);
    const started = performance.now();
    const drained = await bounded(
      whenTrue(() => bus.status().spool.unconfirmed === 0),
      settings.runTimeoutS,
      'the thread run',
    );
    const after = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadAfter = threadUs(tid);
    const { counters } = bus.status().publisher;
    const seconds = (drained - started) / 1000;
    return {
      kind: 'thread',
      publishingThreadUs: usBetween(threadBefore, threadAfter),
      messages: records.length,
      seconds: round(seconds, 3),
      messagesPerSec: Math.round(records.length / seconds),
      fromStart: null,
      concurrent: null,
      confirmed: counters.confirmed,
      nacked: counters.nacked,
      returned: counters.returned,
      resent: counters.resent,
      connects: counters.connects,
      cpu: cpuUse(before, after),
    };
  } finally {
    await bus.close(1000);
  }
}

/**
 * The publisher thread fed as the API feeds it: an EventBus whose events are emitted at `rate` per second
 * from this thread (each 1 ms timer tick emits what is due, so the thread is woken about once per event
 * at 1,000/s), with the thread lingering `lingerMs` after each wake-up. Its CPU and RabbitMQ's per
 * message, and the publish latency, over `paced-duration` s.
 */
async function runThreadPaced(
  env: BusEnvironment,
  calls: EmitCall[],
  settings: Settings,
  rabbitPid: number | undefined,
  lingerMs: number,
): Promise<Omit<RunResult, 'round' | 'metricsQueueDepth'>> {
  const rate = settings.pacedRate;
  const bus = EventBus.open({
    dataDir: env.env.DATA_DIR,
    rabbitmqUrls: [env.env.RABBITMQ_URL],
    topology: buildTopology(),
    publishWindow: settings.window,
    publishLingerMs: lingerMs,
  });
  try {
    await bounded(
      whenTrue(
        () => bus.status().publisher.state === 'connected' && bus.status().publisherThread?.tid != null,
      ),
      15,
      'connecting',
    );
    const tid = bus.status().publisherThread?.tid as number;
    const before = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadBefore = threadUs(tid);
    const confirmedBefore = bus.status().publisher.counters.confirmed;
    const started = performance.now();
    let emitted = 0;
    for (;;) {
      throwIfInterrupted();
      const elapsed = performance.now() - started;
      if (elapsed >= settings.pacedDurationS * 1000) break;
      const due = Math.floor((rate * elapsed) / 1000) - emitted;
      for (let i = 0; i < due; i++) {
        const call = calls[emitted % calls.length] as EmitCall;
        bus.emit(call.event, call.traceparent, Date.now());
        emitted++;
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await bounded(
      whenTrue(() => bus.status().spool.unconfirmed === 0),
      settings.runTimeoutS,
      'the paced run to drain',
    );
    const seconds = (performance.now() - started) / 1000;
    const after = cpuSnapshot({ rabbitmq: rabbitPid });
    const threadAfter = threadUs(tid);
    const status = bus.status();
    const latency = bus.publishLatency.recent(Date.now());
    return {
      kind: 'thread paced',
      publishingThreadUs: usBetween(threadBefore, threadAfter),
      messages: status.publisher.counters.confirmed - confirmedBefore,
      seconds: round(seconds, 3),
      messagesPerSec: Math.round(emitted / settings.pacedDurationS),
      fromStart: null,
      concurrent: null,
      confirmed: status.publisher.counters.confirmed,
      nacked: status.publisher.counters.nacked,
      returned: status.publisher.counters.returned,
      resent: status.publisher.counters.resent,
      connects: status.publisher.counters.connects,
      cpu: cpuUse(before, after),
      paced: {
        lingerMs,
        publishLatencyMs: { p50: latency.p50_ms, p95: latency.p95_ms, p99: latency.p99_ms },
      },
    };
  } finally {
    await bus.close(1000);
  }
}

/** Ours while events keep arriving: an EventBus emitting at `rate`/s in the publisher's event loop. */
async function runConcurrent(
  env: BusEnvironment,
  calls: EmitCall[],
  rate: number,
  settings: Settings,
  rabbitPid: number | undefined,
): Promise<Omit<RunResult, 'round' | 'metricsQueueDepth'>> {
  const durationMs = settings.concurrentDurationS * 1000;
  const bus = EventBus.open({
    dataDir: env.env.DATA_DIR,
    rabbitmqUrls: [env.env.RABBITMQ_URL],
    topology: buildTopology(),
    publishWindow: settings.window,
    spoolMaxBytes: Math.max(
      1024 ** 3,
      Math.ceil((rate * settings.concurrentDurationS * 2048) / 2 ** 20) * 2 ** 20,
    ),
  });
  let closed = false;
  try {
    await bounded(
      whenTrue(() => bus.status().publisher.state === 'connected'),
      15,
      'connecting',
    );
    const samples: Array<{ t: number; emitted: number; confirmed: number; unconfirmed: number }> = [];
    let emitted = 0;
    const sample = (t: number) => {
      const status = bus.status();
      samples.push({
        t: round(t / 1000, 3),
        emitted,
        confirmed: status.publisher.counters.confirmed,
        unconfirmed: status.spool.unconfirmed,
      });
    };
    const before = cpuSnapshot({ rabbitmq: rabbitPid });
    const started = performance.now();
    let nextSampleAt = 0;
    for (;;) {
      throwIfInterrupted();
      const elapsed = performance.now() - started;
      if (elapsed >= nextSampleAt) {
        sample(elapsed);
        nextSampleAt += 500;
      }
      if (elapsed >= durationMs) break;
      // Catch up with the schedule, a bounded number at a time, so the publisher gets its turns.
      const due = Math.min(Math.floor((rate * elapsed) / 1000) - emitted, 200);
      for (let i = 0; i < due; i++) {
        const call = calls[emitted % calls.length] as EmitCall;
        bus.emit(call.event, call.traceparent, call.timestampMs);
        emitted++;
      }
      if (due > 0) await new Promise((resolve) => setImmediate(resolve));
      else await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const after = cpuSnapshot({ rabbitmq: rabbitPid });
    const steady = samples.filter((s) => s.t >= settings.concurrentSkipS);
    const first = steady[0] ?? samples[0];
    const last = samples.at(-1);
    if (first === undefined || last === undefined || last.t <= first.t) throw new Error('too few samples');
    const seconds = last.t - first.t;
    const confirmedSteady = last.confirmed - first.confirmed;
    const status = bus.status();
    closed = true;
    await bus.close(0);
    return {
      kind: 'ours+emit',
      publishingThreadUs: null,
      messages: confirmedSteady,
      seconds: round(seconds, 3),
      messagesPerSec: Math.round(confirmedSteady / seconds),
      fromStart: null,
      concurrent: {
        emitted,
        emittedPerSec: Math.round(emitted / (durationMs / 1000)),
        confirmedTotal: status.publisher.counters.confirmed,
        backlogAtEnd: status.spool.unconfirmed,
        samples,
      },
      confirmed: status.publisher.counters.confirmed,
      nacked: status.publisher.counters.nacked,
      returned: status.publisher.counters.returned,
      resent: status.publisher.counters.resent,
      connects: status.publisher.counters.connects,
      cpu: cpuUse(before, after),
    };
  } finally {
    if (!closed) await bus.close(0).catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const settings = readSettings();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const runs: RunResult[] = [];
  let broker: BrokerInfo | undefined;
  let recordBytes = 0;
  let concurrentRate: number | undefined;
  let alarmsAfter: string[] = [];
  let failure: unknown;

  const types = mixSequence(DEFAULT_MIX);
  try {
    progress(`building ${formatNumber(settings.messages)} records (60/20/10/10 mix)`);
    const calls = buildEmitCalls(settings.messages, types, 4096);
    // What emit() hands to the spool, and (as the publisher reads them back) their bytes.
    const records = calls.map(recordOf);
    const stored = records.map(recordBytesOf);
    const messages = stored.map(toOutboundMessage);
    recordBytes = Math.round(stored.reduce((sum, bytes) => sum + bytes.length, 0) / stored.length);
    // Only the first ones are kept for the emit run; the rest would only hold memory.
    const emitCalls = calls.slice(0, 4096);
    calls.length = 0;
    broker = await waitForBroker();
    const rabbitPid = findRabbitmqPid();

    const runOne = async (
      kind: Kind,
      roundNumber: number,
      action: (environment: BusEnvironment) => Promise<Omit<RunResult, 'round' | 'metricsQueueDepth'>>,
    ) => {
      await waitForBroker();
      const busEnv = await environments.create();
      try {
        progress(`${kind} #${roundNumber} in vhost ${busEnv.vhost.vhost}`);
        const result = await action(busEnv);
        let depth: number | null = null;
        try {
          depth = (await queueDepths(busEnv.env.RABBITMQ_URL, [METRICS_QUEUE]))[METRICS_QUEUE] ?? null;
        } catch (error) {
          progress(`  could not read the depth of ${METRICS_QUEUE}: ${String(error)}`);
        }
        const run = { ...result, round: roundNumber, metricsQueueDepth: depth };
        runs.push(run);
        progress(
          `  ${formatNumber(run.messagesPerSec)} msgs/s over ${run.seconds} s; RabbitMQ ${formatCores(run.cpu.processes.rabbitmq)} cores, bench ${run.cpu.self.cores.toFixed(2)} cores`,
        );
      } finally {
        await environments.remove(busEnv);
      }
    };

    for (let i = 1; i <= settings.repeat; i++) {
      await runOne('raw', i, (busEnv) => runRaw(busEnv, messages, settings, rabbitPid, 'publish'));
      for (const into of settings.rawAlso) {
        await runOne(`raw ${into}`, i, (busEnv) =>
          runRaw(busEnv, messages, settings, rabbitPid, 'publish', into),
        );
      }
      await runOne('raw prebuilt', i, (busEnv) => runRaw(busEnv, messages, settings, rabbitPid, 'prebuilt'));
      await runOne('ours', i, (busEnv) => runOurs(busEnv, records, settings, rabbitPid));
      await runOne('thread', i, (busEnv) => runThread(busEnv, records, settings, rabbitPid));
    }
    if (settings.pacedDurationS > 0) {
      for (const lingerMs of settings.lingers) {
        await runOne('thread paced', lingerMs, (busEnv) =>
          runThreadPaced(busEnv, emitCalls, settings, rabbitPid, lingerMs),
        );
      }
    }
    if (settings.concurrentDurationS > 0) {
      const rawMedian = median(runs.filter((run) => run.kind === 'raw').map((run) => run.messagesPerSec));
      concurrentRate = settings.concurrentRate ?? Math.round(1.5 * rawMedian);
      const rate = concurrentRate;
      await runOne('ours+emit', 1, (busEnv) => runConcurrent(busEnv, emitCalls, rate, settings, rabbitPid));
    }
    alarmsAfter = await brokerAlarms();
  } catch (error) {
    failure = error;
  } finally {
    await environments.removeAll();
  }
  if (failure !== undefined) throw failure;

  // ---------------------------------------------------------------------------------------------------
  // Report

  const rates = (kind: Kind) => runs.filter((run) => run.kind === kind).map((run) => run.messagesPerSec);
  const rawMedian = median(rates('raw'));
  const oursMedian = median(rates('ours'));
  const concurrent = runs.find((run) => run.kind === 'ours+emit');
  const ratio = oursMedian / rawMedian;
  const threadPerMessage = (run: RunResult) =>
    run.publishingThreadUs === null || run.messages === 0 ? null : run.publishingThreadUs / run.messages;
  const threadMedian = (kind: Kind) => {
    const values = runs
      .filter((run) => run.kind === kind)
      .map(threadPerMessage)
      .filter((value): value is number => value !== null);
    return values.length === 0 ? null : median(values);
  };
  const rawThreadUs = threadMedian('raw');
  const publisherThreadUs = threadMedian('thread');
  const prebuiltThreadUs = threadMedian('raw prebuilt');
  const perMessageUs = (run: RunResult, cpu: { userUs: number; systemUs: number } | null | undefined) =>
    cpu === null || cpu === undefined || run.messages === 0
      ? 'n/a'
      : formatNumber(
          (cpu.userUs + cpu.systemUs) /
            (run.kind === 'ours+emit' ? (run.concurrent?.confirmedTotal ?? 1) : run.messages),
          1,
        );
  const sections: Section[] = [
    {
      title: 'Runs, in the order they ran (each in a fresh vhost)',
      columns: [
        'run',
        'messages',
        'seconds',
        'msgs/s',
        '/ raw median',
        'bench cores',
        'bench CPU µs/msg',
        'RabbitMQ cores',
        'RabbitMQ CPU µs/msg',
        'publishing thread µs/msg',
        'others cores',
      ],
      rows: runs.map((run) => [
        `${run.kind} #${run.round}`,
        formatNumber(run.messages),
        formatNumber(run.seconds, 2),
        formatNumber(run.messagesPerSec),
        `${formatNumber((100 * run.messagesPerSec) / rawMedian)}%`,
        run.cpu.self.cores.toFixed(2),
        perMessageUs(run, run.cpu.self),
        formatCores(run.cpu.processes.rabbitmq),
        perMessageUs(run, run.cpu.processes.rabbitmq),
        threadPerMessage(run) === null ? 'n/a' : formatNumber(threadPerMessage(run) as number, 1),
        othersCores(run.cpu, env.cpus),
      ]),
    },
    {
      title: 'Medians',
      columns: ['kind', 'runs', 'msgs/s', '/ raw', 'publishing thread µs/msg', '/ raw'],
      rows: (['raw', 'raw prebuilt', 'ours', 'thread', 'ours+emit'] as const)
        .filter((kind) => rates(kind).length > 0)
        .map((kind) => [
          kind,
          String(rates(kind).length),
          formatNumber(median(rates(kind))),
          `${formatNumber((100 * median(rates(kind))) / rawMedian)}%`,
          threadMedian(kind) === null ? 'n/a' : formatNumber(threadMedian(kind) as number, 1),
          threadMedian(kind) === null || rawThreadUs === null
            ? 'n/a'
            : formatNumber((threadMedian(kind) as number) / rawThreadUs, 2),
        ]),
    },
  ];
  const pacedRuns = runs.filter((run) => run.paced !== undefined);
  const verdicts = [
    ...pacedRuns.map(
      (run) =>
        `Paced at ${formatNumber(settings.pacedRate)} events/s, linger ${run.paced?.lingerMs} ms: publisher thread ${formatNumber(threadPerMessage(run) ?? Number.NaN, 1)} µs/msg, RabbitMQ ${perMessageUs(run, run.cpu.processes.rabbitmq)} µs/msg, publish latency p50/p95/p99 ${run.paced?.publishLatencyMs.p50 ?? 'n/a'}/${run.paced?.publishLatencyMs.p95 ?? 'n/a'}/${run.paced?.publishLatencyMs.p99 ?? 'n/a'} ms.`,
    ),
    `amqplib's lower level with pre-built fields (src/bus/confirm-send.ts) against its publish() with options, same messages: ${formatNumber(prebuiltThreadUs ?? Number.NaN, 1)} vs ${formatNumber(rawThreadUs ?? Number.NaN, 1)} µs of the publishing thread per message (medians).`,
    ...(concurrent === undefined
      ? []
      : [
          `While emitting: ${formatNumber(concurrent.messagesPerSec)} msgs/s = ${formatNumber((100 * concurrent.messagesPerSec) / rawMedian)}% of the raw median.`,
        ]),
  ];
  const oursRuns = runs.filter((run) => run.kind === 'ours');
  const settingsText = [
    `${formatNumber(settings.messages)} messages per raw/ours run (mix ${DEFAULT_MIX.map(([type, share]) => `${share}% ${type}`).join(', ')}; ${recordBytes} B per record on average), window ${settings.window}, ${settings.repeat} alternating raw/ours pairs`,
    'raw: one ConfirmChannel, toOutboundMessage() of the same records, timed first publish → last confirm; ours: records appended to the spool first, SpoolPublisher (defaults otherwise: read batch 500) timed from its connection (topology declared) to spool.unconfirmed = 0',
    `ours from start() (connect + topology declare included): ${oursRuns.map((run) => `${formatNumber(run.fromStart?.messagesPerSec ?? 0)} msgs/s in ${run.fromStart?.seconds} s`).join(', ')}`,
    concurrent?.concurrent
      ? `ours+emit: EventBus emitting at ${formatNumber(concurrentRate ?? 0)}/s target (${formatNumber(concurrent.concurrent.emittedPerSec)}/s achieved) for ${settings.concurrentDurationS} s in the publisher's event loop; steady state after ${settings.concurrentSkipS} s; backlog left ${formatNumber(concurrent.concurrent.backlogAtEnd)}`
      : 'ours+emit: not run',
    'every run in a fresh vhost with the real topology (quorum queues, no consumers), deleted after it; bench CPU = this process (the client side); others = every other process on the machine (the machine is shared: a high figure means the run was disturbed)',
    environmentText(
      env,
      broker === undefined ? '' : `, RabbitMQ ${broker.version} (Erlang ${broker.erlang})`,
    ),
  ];
  // Every confirmed message must be in the queue. ours+emit is closed with up to a window of messages
  // published and not yet confirmed, which may have arrived too: up to `window` more is fine there.
  const depthOk = (run: RunResult) =>
    run.metricsQueueDepth === null ||
    (run.kind === 'ours+emit'
      ? run.metricsQueueDepth >= run.confirmed && run.metricsQueueDepth <= run.confirmed + settings.window
      : run.metricsQueueDepth === run.confirmed);
  const problems = runs.filter(
    (run) => run.nacked > 0 || run.returned > 0 || run.connects !== 1 || !depthOk(run),
  );
  const checks = [
    ...runs.map(
      (run) =>
        `${run.kind} #${run.round}: confirmed ${formatNumber(run.confirmed)}, ${METRICS_QUEUE} depth ${run.metricsQueueDepth === null ? 'n/a' : formatNumber(run.metricsQueueDepth)} (${depthOk(run) ? 'ok' : 'MISMATCH'}${run.kind === 'ours+emit' ? ': closed with up to a window unconfirmed' : ''}), nacked ${run.nacked}, returned ${run.returned}, connects ${run.connects}, counters.resent ${run.resent}`,
    ),
    `broker alarms after the runs: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
  ];
  await publishResults({
    name: NAME,
    title: 'Publisher throughput benchmark',
    startedAt,
    goals: {
      title: 'Goals',
      goals: [
        judge(
          {
            name: 'SpoolPublisher ÷ the raw amqplib loop (medians)',
            threshold: GOAL.minRatio,
            comparison: '>=',
            unit: 'ratio',
          },
          round(ratio, 3),
          `ours ${formatNumber(oursMedian)} msgs/s / raw ${formatNumber(rawMedian)} msgs/s`,
        ),
        judge(
          {
            name: 'publisher thread CPU per message ÷ raw amqplib loop',
            threshold: 1.1,
            comparison: '<=',
            unit: 'ratio',
            issue: 14,
          },
          publisherThreadUs === null || rawThreadUs === null
            ? null
            : round(publisherThreadUs / rawThreadUs, 2),
          `the publisher thread (its tid's /proc ticks, from its start; connect included) ${formatNumber(publisherThreadUs ?? Number.NaN, 1)} µs/msg vs the raw loop's thread (publish() with options) ${formatNumber(rawThreadUs ?? Number.NaN, 1)} µs/msg, medians, both with a backlog`,
        ),
      ],
    },
    sections,
    verdicts,
    notes: { settings: [...cli.settingsBlock(settings), ...settingsText], checks },
    command: commandLine('bench:publisher'),
    report: {
      benchmark: NAME,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      settings: { ...settings, concurrentRate: concurrentRate ?? null, recordBytes, mix: DEFAULT_MIX },
      environment: { ...env, rabbitmq: broker ?? null },
      rawMedian,
      oursMedian,
      runs,
      brokerAlarmsAfter: alarmsAfter,
    },
  });
  return problems.length === 0 ? 0 : 1;
}

runMain(NAME, cli.help(), main);
