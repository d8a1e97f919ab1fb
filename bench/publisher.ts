/**
 * Publisher throughput and CPU: the service's SpoolPublisher, on this thread and as the API runs it (its
 * publisher thread), against the raw amqplib confirm loop, with the same messages, window and topology.
 * Method and the kinds of run: bench/README.md ("bench:publisher"). For a CPU profile of the publishing
 * side: `node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/publisher.ts …`.
 */
import { join } from 'node:path';
import { EventBus } from '../src/bus/event-bus.ts';
import type { OutboundMessage } from '../src/bus/outbound-message.ts';
import { Spool } from '../src/bus/spool/spool.ts';
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
import { confirmPublish, withConfirmChannel } from './support/confirm-publish.ts';
import { findRabbitmqPid, othersCores } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent, formatUs } from './support/cpu-per-event.ts';
import {
  buildEmitCalls,
  DEFAULT_MIX,
  type EmitCall,
  messageOf,
  mixSequence,
  recordOf,
} from './support/events.ts';
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
import {
  environment,
  environmentText,
  formatMs,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  table,
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
/** --raw-also: the raw loop into metrics.updates alone, as a quorum queue or (reference only) a classic one. */
const RAW_INTO = ['one-quorum', 'one-classic'] as const;
type RawInto = (typeof RAW_INTO)[number];
const rawInto = (raw: string, name: string) => (raw === '' ? [] : list(oneOf(RAW_INTO))(raw, name));
const optional = (raw: string, name: string) => (raw === '' ? undefined : integer(1)(raw, name));

const cli = commandLine({
  script: 'bench:publisher',
  summary: 'SpoolPublisher against a plain amqplib confirm loop, same messages, window and topology.',
  options: {
    messages: flag('messages', '50000', integer(1), 'messages per raw/ours run'),
    window: flag('window', '1000', integer(1), 'unconfirmed messages in flight, at most'),
    repeat: flag('repeat', '2', integer(1), 'raw/ours pairs, run alternately'),
    concurrentDurationS: seconds('concurrent-duration', '15', 'the ours+emit run; 0: none', 0),
    concurrentRate: flag('concurrent-rate', '', optional, 'events/s emitted in it (1.5 × raw median)'),
    concurrentSkipS: seconds('concurrent-skip', '3', 'its part before the steady state', 0),
    pacedRate: flag('paced-rate', '1000', integer(1), 'events per second of the paced thread runs'),
    pacedDurationS: seconds('paced-duration', '10', 'each paced thread run; 0: none', 0),
    lingers: flag('linger', '0,2', list(integer(0)), "publisher thread's linger (ms), a paced run each"),
    rawAlso: flag('raw-also', '', rawInto, `raw loops into ${METRICS_QUEUE} alone: ${RAW_INTO.join(', ')}`, {
      arg: '<list>',
    }),
    runTimeoutS: seconds('run-timeout', '120', 'a run taking longer fails the benchmark'),
  },
});
type Settings = SettingsOf<typeof cli.options>;

type Kind = 'raw' | `raw ${RawInto}` | 'raw prebuilt' | 'ours' | 'thread' | 'thread paced' | 'ours+emit';

/** What a run measured over its timed interval (bench/README.md says which, per kind). */
interface Measured {
  messages: number;
  seconds: number;
  messagesPerSec: number;
  counters: { confirmed: number; nacked: number; returned: number; resent: number; connects: number };
  /** This process (`load generator`) and RabbitMQ, per message. */
  cpu: CpuPerEvent;
  /** CPU of the thread that published: this process's main thread, or the publisher thread. */
  threadUsPerMessage: number | null;
  /** ours: from start(), connect and topology declare included. */
  fromStart?: { seconds: number; messagesPerSec: number };
  /** thread paced: its linger, and the publish latency (emit → confirm) of its messages. */
  paced?: { lingerMs: number; publishLatencyMs: Record<'p50' | 'p95' | 'p99', number | null> };
  /** ours+emit: what was emitted and the backlog left at its end. */
  concurrent?: { emitted: number; emittedPerSec: number; backlogAtEnd: number };
}

interface Run extends Measured {
  kind: Kind;
  /** 1-based, per kind (the linger, for thread paced). */
  round: number;
  /** Depth of metrics.updates (bound to every event) after the run: what was confirmed. */
  metricsQueueDepth: number | null;
}

/** What every run works with: its own vhost and data directory, the settings, RabbitMQ's pid. */
interface Context {
  env: BusEnvironment['env'];
  settings: Settings;
  rabbitmq: number | undefined;
}

/** A timed interval: the CPU of this process (each of its threads too) and RabbitMQ from now to stop(). */
function startClock({ rabbitmq }: Context) {
  // This process by its pid as well, for its threads (the publisher thread is one of them).
  const meter = new CpuMeter({ processes: { bench: process.pid, rabbitmq }, threadsOf: ['bench'] });
  meter.start();
  const started = performance.now();
  return {
    started,
    stop(messages: number, tid: number, from = started, to = performance.now()) {
      const cpu = meter.stop(messages);
      const threadUs = cpu.threads.bench?.find((thread) => thread.tid === tid)?.cpuUs;
      const seconds = (to - from) / 1000;
      return {
        messages,
        seconds: round(seconds, 3),
        messagesPerSec: Math.round(messages / seconds),
        cpu,
        threadUsPerMessage: threadUs == null || messages === 0 ? null : threadUs / messages,
      };
    },
  };
}

/** The topology a raw run declares: the real one, or every event into metrics.updates alone. */
function rawTopology(into: RawInto | undefined): Topology {
  if (into === undefined) return buildTopology();
  const one = onlyQueueFed(buildTopology(), METRICS_QUEUE);
  const classic = (queue: Topology['queues'][number]) =>
    queue.name === METRICS_QUEUE ? { ...queue, arguments: { 'x-queue-type': 'classic' } } : queue;
  return into === 'one-quorum' ? one : { ...one, queues: one.queues.map(classic) };
}

/** The raw loop: the publisher's messages through a bare ConfirmChannel with the same window. */
function runRaw(ctx: Context, messages: OutboundMessage[], send: 'publish' | 'prebuilt', into?: RawInto) {
  return withConfirmChannel(ctx.env.RABBITMQ_URL, rawTopology(into), async (channel): Promise<Measured> => {
    const clock = startClock(ctx);
    const { window, runTimeoutS } = ctx.settings;
    const run = confirmPublish(channel, { message: (index) => messages[index], window, send });
    const outcome = await bounded(run, runTimeoutS, 'the raw run');
    return { ...clock.stop(messages.length, process.pid), counters: { ...outcome, resent: 0, connects: 1 } };
  });
}

/** An EventBus on the run's data directory and vhost, with the benchmark's window. */
const openBus = ({ env, settings }: Context, more: Partial<Parameters<typeof EventBus.open>[0]>) =>
  EventBus.open({
    dataDir: env.DATA_DIR,
    rabbitmqUrls: [env.RABBITMQ_URL],
    topology: buildTopology(),
    publishWindow: settings.window,
    ...more,
  });

const publisherTid = (bus: EventBus) => bus.status().publisherThread?.tid ?? undefined;
const drained = (ctx: Context, bus: EventBus, what: string) =>
  bounded(
    whenTrue(() => bus.status().spool.unconfirmed === 0),
    ctx.settings.runTimeoutS,
    what,
  );

/** ours (a SpoolPublisher on this thread) or thread (the publisher thread): an EventBus on a filled spool. */
async function runSpooled(ctx: Context, records: string[], threaded: boolean): Promise<Measured> {
  const spoolMaxBytes = Math.max(1024 ** 3, records.length * 4096);
  const spool = Spool.open({ directory: join(ctx.env.DATA_DIR, 'spool'), maxBytes: spoolMaxBytes });
  try {
    for (const record of records) {
      if (spool.append(record) < 0) throw new Error(`spool append failed: ${JSON.stringify(spool.stats())}`);
    }
  } finally {
    await spool.close();
  }
  let clock = threaded ? undefined : startClock(ctx);
  const bus = openBus(ctx, { spoolMaxBytes, publisherThread: threaded });
  try {
    const connected = threaded ? undefined : whenTrue(() => bus.status().publisher.state === 'connected', 1);
    await bounded(
      whenTrue(() => !threaded || publisherTid(bus) !== undefined, 1),
      15,
      'the thread to start',
    );
    clock ??= startClock(ctx);
    const done = await drained(ctx, bus, `the ${threaded ? 'thread' : 'ours'} run`);
    const run = clock.stop(records.length, publisherTid(bus) ?? process.pid, await connected, done);
    const seconds = (done - clock.started) / 1000;
    const fromStart = { seconds: round(seconds, 3), messagesPerSec: Math.round(records.length / seconds) };
    return { ...run, counters: bus.status().publisher.counters, ...(threaded ? {} : { fromStart }) };
  } finally {
    await bus.close(1000);
  }
}

/**
 * Emits `calls` (cycled) into `bus` at `rate` per second for `durationS`: at each turn what is due, at
 * most 200, so the publisher gets its turns (a 1 ms timer when nothing is due). `onTurn` sees each turn.
 */
async function emitAt(bus: EventBus, calls: EmitCall[], rate: number, durationS: number, onTurn = () => {}) {
  const started = performance.now();
  let emitted = 0;
  for (let elapsed = 0; elapsed < durationS * 1000; elapsed = performance.now() - started) {
    throwIfInterrupted();
    onTurn();
    const due = Math.min(Math.floor((rate * elapsed) / 1000) - emitted, 200);
    for (let i = 0; i < due; i++, emitted++) {
      const call = calls[emitted % calls.length] as EmitCall;
      bus.emit(call.event, call.traceparent, Date.now());
    }
    await new Promise((resolve) => (due > 0 ? setImmediate(resolve) : setTimeout(resolve, 1)));
  }
  return emitted;
}

/**
 * An EventBus fed as the API feeds it, at `rate` events per second: thread paced (`paced-rate`, lingering
 * `lingerMs` after each wake-up, timed to the end of its drain) or ours+emit (more than the broker takes:
 * its steady state after `concurrent-skip` s; closed with its backlog).
 */
async function runEmitting(ctx: Context, calls: EmitCall[], paced: boolean, rate: number, lingerMs = 0) {
  const { settings } = ctx;
  const durationS = paced ? settings.pacedDurationS : settings.concurrentDurationS;
  const spoolMaxBytes = Math.max(1024 ** 3, Math.ceil((rate * durationS * 2048) / 2 ** 20) * 2 ** 20);
  const bus = openBus(ctx, { spoolMaxBytes, publishLingerMs: lingerMs });
  try {
    const ready = () => bus.status().publisher.state === 'connected' && publisherTid(bus) !== undefined;
    await bounded(whenTrue(ready), 15, 'connecting');
    const clock = startClock(ctx);
    const confirmed = () => bus.status().publisher.counters.confirmed;
    const first = confirmed();
    let steady: { at: number; confirmed: number } | undefined;
    const emitted = await emitAt(bus, calls, rate, durationS, () => {
      const at = performance.now();
      if (steady === undefined && at - clock.started >= (paced ? 0 : settings.concurrentSkipS * 1000))
        steady = { at, confirmed: confirmed() };
    });
    if (paced) await drained(ctx, bus, 'the paced run to drain');
    const { publisher, spool } = bus.status();
    if (steady === undefined) throw new Error('the run ended before its steady state');
    const run = clock.stop(publisher.counters.confirmed - first, publisherTid(bus) as number);
    const seconds = (performance.now() - steady.at) / 1000;
    const messages = publisher.counters.confirmed - steady.confirmed;
    const { p50_ms: p50, p95_ms: p95, p99_ms: p99 } = bus.publishLatency.recent(Date.now());
    return {
      ...run,
      messages,
      seconds: round(seconds, 3),
      messagesPerSec: Math.round((paced ? emitted : messages) / (paced ? durationS : seconds)),
      counters: publisher.counters,
      ...(paced
        ? { paced: { lingerMs, publishLatencyMs: { p50, p95, p99 } } }
        : {
            concurrent: {
              emitted,
              emittedPerSec: Math.round(emitted / durationS),
              backlogAtEnd: spool.unconfirmed,
            },
          }),
    } satisfies Measured;
  } finally {
    await bus.close(paced ? 1000 : 0);
  }
}

async function main(): Promise<number> {
  const settings = cli.read();
  if (settings.concurrentDurationS > 0 && settings.concurrentSkipS >= settings.concurrentDurationS) {
    throw new UsageError('--concurrent-skip must be shorter than --concurrent-duration');
  }
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const runs: Run[] = [];
  let broker: BrokerInfo | undefined;
  let concurrentRate: number | undefined;
  let alarmsAfter: string[] = [];

  progress(`building ${formatNumber(settings.messages)} records (60/20/10/10 mix)`);
  const calls = buildEmitCalls(settings.messages, mixSequence(DEFAULT_MIX), 4096);
  // What emit() hands to the spool, and the messages the publisher makes of them.
  const records = calls.map(recordOf);
  const messages = calls.map(messageOf);
  const recordBytes = Math.round(
    records.reduce((sum, record) => sum + Buffer.byteLength(record), 0) / records.length,
  );
  // The emitting runs cycle through the first ones only.
  const emitCalls = calls.slice(0, 4096);
  calls.length = 0;
  try {
    broker = await waitForBroker();
    const rabbitmq = findRabbitmqPid();
    const runOne = async (kind: Kind, round: number, action: (ctx: Context) => Promise<Measured>) => {
      await waitForBroker();
      const busEnv = await environments.create();
      try {
        progress(`${kind} #${round} in vhost ${busEnv.vhost.vhost}`);
        const measured = await action({ env: busEnv.env, settings, rabbitmq });
        // Unread (n/a in the checks) if the broker would not say.
        const depths = await queueDepths(busEnv.env.RABBITMQ_URL, [METRICS_QUEUE]).catch(() => ({}));
        const metricsQueueDepth = (depths as Record<string, number>)[METRICS_QUEUE] ?? null;
        const run = { ...measured, kind, round, metricsQueueDepth };
        runs.push(run);
        progress(`  ${formatNumber(run.messagesPerSec)} msgs/s over ${run.seconds} s`);
      } finally {
        await environments.remove(busEnv);
      }
    };
    for (let i = 1; i <= settings.repeat; i++) {
      await runOne('raw', i, (ctx) => runRaw(ctx, messages, 'publish'));
      for (const into of settings.rawAlso) {
        await runOne(`raw ${into}`, i, (ctx) => runRaw(ctx, messages, 'publish', into));
      }
      await runOne('raw prebuilt', i, (ctx) => runRaw(ctx, messages, 'prebuilt'));
      await runOne('ours', i, (ctx) => runSpooled(ctx, records, false));
      await runOne('thread', i, (ctx) => runSpooled(ctx, records, true));
    }
    for (const lingerMs of settings.pacedDurationS > 0 ? settings.lingers : []) {
      await runOne('thread paced', lingerMs, (ctx) =>
        runEmitting(ctx, emitCalls, true, settings.pacedRate, lingerMs),
      );
    }
    if (settings.concurrentDurationS > 0) {
      const rate = settings.concurrentRate ?? Math.round(1.5 * median(rates(runs, 'raw')));
      concurrentRate = rate;
      await runOne('ours+emit', 1, (ctx) => runEmitting(ctx, emitCalls, false, rate));
    }
    alarmsAfter = await brokerAlarms();
  } finally {
    await environments.removeAll();
  }

  const rawMedian = median(rates(runs, 'raw'));
  const oursMedian = median(rates(runs, 'ours'));
  const threadMedian = (kind: Kind) => {
    const values = runs.flatMap((run) =>
      run.kind === kind && run.threadUsPerMessage !== null ? [run.threadUsPerMessage] : [],
    );
    return values.length === 0 ? null : median(values);
  };
  const [rawThreadUs, publisherThreadUs] = [threadMedian('raw'), threadMedian('thread')];
  const ratio = (a: number | null, b: number | null) =>
    a === null || b === null ? 'n/a' : formatNumber(a / b, 2);
  const share = (rate: number) => `${formatNumber((100 * rate) / rawMedian)}%`;
  const us = (run: Run, name: string) => formatUs(run.cpu.processes[name]?.usPerEvent);
  const cores = (run: Run, name: string) => run.cpu.processes[name]?.cores?.toFixed(2) ?? 'n/a';
  const runsTable = table('Runs, in the order they ran (each in a fresh vhost)', runs, {
    run: (run) => `${run.kind} #${run.round}`,
    messages: (run) => formatNumber(run.messages),
    seconds: (run) => formatNumber(run.seconds, 2),
    'msgs/s': (run) => formatNumber(run.messagesPerSec),
    '/ raw median': (run) => share(run.messagesPerSec),
    'bench cores': (run) => cores(run, 'load generator'),
    'bench CPU µs/msg': (run) => us(run, 'load generator'),
    'RabbitMQ cores': (run) => cores(run, 'rabbitmq'),
    'RabbitMQ CPU µs/msg': (run) => us(run, 'rabbitmq'),
    'publishing thread µs/msg': (run) => formatUs(run.threadUsPerMessage),
    'others cores': (run) => othersCores(run.cpu, env.cpus, ['load generator', 'rabbitmq']),
  });
  const kinds = (['raw', 'raw prebuilt', 'ours', 'thread', 'ours+emit'] as const).filter(
    (kind) => rates(runs, kind).length > 0,
  );
  const mediansTable = table('Medians', kinds, {
    kind: (kind) => kind,
    runs: (kind) => String(rates(runs, kind).length),
    'msgs/s': (kind) => formatNumber(median(rates(runs, kind))),
    '/ raw': (kind) => share(median(rates(runs, kind))),
    'publishing thread µs/msg': (kind) => formatUs(threadMedian(kind)),
    'thread µs / raw': (kind) => ratio(threadMedian(kind), rawThreadUs),
  });
  const concurrent = runs.find((run) => run.kind === 'ours+emit');
  const latency = ({ paced }: Run) =>
    [paced?.publishLatencyMs.p50, paced?.publishLatencyMs.p95, paced?.publishLatencyMs.p99].map((ms) =>
      formatMs(ms, 1),
    );
  const verdicts = [
    ...runs
      .filter((run) => run.paced !== undefined)
      .map(
        (run) =>
          `Paced at ${formatNumber(settings.pacedRate)} events/s, linger ${run.paced?.lingerMs} ms: publisher thread ${formatUs(run.threadUsPerMessage)} µs/msg, RabbitMQ ${us(run, 'rabbitmq')} µs/msg, publish latency p50/p95/p99 ${latency(run).join('/')} ms.`,
      ),
    `amqplib's lower level with pre-built fields (src/bus/confirm-send.ts) against its publish() with options, same messages: ${formatUs(threadMedian('raw prebuilt'))} vs ${formatUs(rawThreadUs)} µs of the publishing thread per message (medians).`,
    ...(concurrent === undefined
      ? []
      : [
          `While emitting: ${formatNumber(concurrent.messagesPerSec)} msgs/s = ${share(concurrent.messagesPerSec)} of the raw median.`,
        ]),
  ];
  const settingsText = [
    `${formatNumber(settings.messages)} messages per raw/ours run (mix ${DEFAULT_MIX.map(([type, share]) => `${share}% ${type}`).join(', ')}; ${recordBytes} B per record on average), window ${settings.window}, ${settings.repeat} alternating raw/ours pairs; each run in a fresh vhost with the real topology (quorum queues, no consumers); method: bench/README.md`,
    `ours from start() (connect + topology declare included): ${runs
      .flatMap(({ fromStart: f }) =>
        f === undefined ? [] : [`${formatNumber(f.messagesPerSec)} msgs/s in ${f.seconds} s`],
      )
      .join(', ')}`,
    concurrent?.concurrent
      ? `ours+emit: emitting at ${formatNumber(concurrentRate ?? 0)}/s target (${formatNumber(concurrent.concurrent.emittedPerSec)}/s achieved) for ${settings.concurrentDurationS} s; steady state after ${settings.concurrentSkipS} s; backlog left ${formatNumber(concurrent.concurrent.backlogAtEnd)}`
      : 'ours+emit: not run',
    'bench CPU = this process (the client side); others = every other process on the machine (shared: a high figure means the run was disturbed)',
    environmentText(env, `, RabbitMQ ${broker?.version} (Erlang ${broker?.erlang})`),
  ];
  // Every confirmed message is in the queue; ours+emit is closed with up to a window published and not
  // yet confirmed, which may have arrived too.
  const depthOk = ({ metricsQueueDepth: depth, counters, kind }: Run) =>
    depth === null ||
    (kind === 'ours+emit'
      ? depth >= counters.confirmed && depth <= counters.confirmed + settings.window
      : depth === counters.confirmed);
  const problems = runs.filter(
    (run) =>
      run.counters.nacked > 0 || run.counters.returned > 0 || run.counters.connects !== 1 || !depthOk(run),
  );
  const checks = [
    ...runs.map((run) => {
      const { kind, counters: c, metricsQueueDepth: depth } = run;
      const note = kind === 'ours+emit' ? ': closed with up to a window unconfirmed' : '';
      const depthText = `${depth === null ? 'n/a' : formatNumber(depth)} (${depthOk(run) ? 'ok' : 'MISMATCH'}${note})`;
      return `${kind} #${run.round}: confirmed ${formatNumber(c.confirmed)}, ${METRICS_QUEUE} depth ${depthText}, nacked ${c.nacked}, returned ${c.returned}, connects ${c.connects}, counters.resent ${c.resent}`;
    }),
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
            threshold: 0.8,
            comparison: '>=',
            unit: 'ratio',
          },
          round(oursMedian / rawMedian, 3),
          `ours ${formatNumber(oursMedian)} msgs/s / raw ${formatNumber(rawMedian)} msgs/s`,
        ),
        judge(
          goal(14, '<=', 1.1, 'ratio', 'publisher thread CPU per message ÷ raw amqplib loop'),
          publisherThreadUs === null || rawThreadUs === null
            ? null
            : round(publisherThreadUs / rawThreadUs, 2),
          `the publisher thread (its tid's /proc ticks, from its start; connect included) ${formatUs(publisherThreadUs)} µs/msg vs the raw loop's thread (publish() with options) ${formatUs(rawThreadUs)} µs/msg, medians, both with a backlog`,
        ),
      ],
    },
    sections: [runsTable, mediansTable],
    verdicts,
    notes: { settings: [...cli.settingsBlock(settings), ...settingsText], checks },
    command: invocation('bench:publisher'),
    report: {
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

/** The msgs/s of every run of `kind`. */
const rates = (runs: Run[], kind: Kind) =>
  runs.filter((run) => run.kind === kind).map((run) => run.messagesPerSec);

runMain(NAME, cli.help(), main);
