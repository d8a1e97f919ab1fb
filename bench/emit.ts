/**
 * The cost of `EventBus.emit()`, the one telemetry cost every API request pays (one JSON serialisation,
 * one record encoding, one spool write), then its halves alone and emit() with the publisher idle, so the
 * figures explain themselves. Method: bench/README.md ("bench:emit").
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { EventBus } from '../src/bus/event-bus.ts';
import { Spool } from '../src/bus/spool/spool.ts';
import { buildTopology } from '../src/bus/topology.ts';
import { type BrokerInfo, brokerAlarms, Environments, waitForBroker } from './support/broker.ts';
import { findRabbitmqPid } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent } from './support/cpu-per-event.ts';
import {
  buildEmitCalls,
  type EmitCall,
  type MixType,
  recordBytes as recordBytesOf,
  recordOf,
  type SpoolRecordText,
} from './support/events.ts';
import { judge } from './support/goals.ts';
import { microBench } from './support/micro-bench.ts';
import { flag, integer, oneOf, commandLine as options } from './support/options.ts';
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
import { handleSignals, interruptible, runMain } from './support/settings.ts';
import type { Distribution } from './support/stats.ts';

const NAME = 'emit';
/** What the benchmark is judged against (the JSON's `goals`). */
const GOALS = {
  p99: { name: 'emit() p99', threshold: 20, comparison: '<', unit: 'µs' },
  dropped: { name: 'dropped by emit()', threshold: 0, comparison: '=', unit: 'events' },
} as const;
const EVENT_TYPES: readonly MixType[] = ['model.queried', 'filter.executed', 'api.request', 'api.error'];
/** Nothing listens on port 1: connecting fails at once, and the publisher backs off (up to 5 s). */
const UNREACHABLE_BROKER = 'amqp://guest:guest@127.0.0.1:1';

const cli = options({
  script: 'bench:emit',
  summary: 'The cost of EventBus.emit() per call, and of its halves alone.',
  options: {
    count: flag('count', '1000000', integer(1), 'timed emit() calls'),
    splitCount: flag('split-count', '200000', integer(1), 'calls timed for each half of emit() alone'),
    warmup: flag('warmup', '20000', integer(0), 'untimed calls first in each phase (JIT warm-up; 0 = none)'),
    batch: flag('batch', '1000', integer(1), 'calls between two yields to the event loop'),
    pool: flag('pool', '4096', integer(1), 'distinct events, cycled'),
    type: flag('type', 'model.queried', oneOf(EVENT_TYPES), `event type: ${EVENT_TYPES.join(', ')}`, {
      env: 'BENCH_EVENT_TYPE',
      arg: '<type>',
    }),
  },
});

// ---------------------------------------------------------------------------------------------------
// Timing

interface GcTally {
  count: number;
  totalMs: number;
  maxMs: number;
}

/** Garbage collections during `action`, from the perf_hooks 'gc' entries, counted from its `restart()`. */
async function withGcTally<T>(
  action: (restart: () => void) => Promise<T>,
): Promise<{ value: T; gc: GcTally }> {
  let gc: GcTally = { count: 0, totalMs: 0, maxMs: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.count++;
      gc.totalMs += entry.duration;
      gc.maxMs = Math.max(gc.maxMs, entry.duration);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    const value = await action(() => {
      gc = { count: 0, totalMs: 0, maxMs: 0 };
    });
    // Entries are delivered asynchronously: let the last ones arrive.
    await new Promise((resolve) => setTimeout(resolve, 10));
    return { value, gc: { count: gc.count, totalMs: round(gc.totalMs, 1), maxMs: round(gc.maxMs, 2) } };
  } finally {
    observer.disconnect();
  }
}

const yieldToLoop = () => new Promise((resolve) => setImmediate(resolve));

interface Timed {
  latencyUs: Distribution;
  /** Times the kernel took the CPU away from this process during the loop (other processes wanted it). */
  involuntaryContextSwitches: number;
  /** Wall time of the whole loop, yields and what ran in them included. */
  wallS: number;
  /** Calls per second of wall time. */
  callsPerSec: number;
  /** Calls per second of time spent inside the timed call: its throughput were it the only work. */
  callsPerSecInCall: number;
  gc: GcTally;
}

/**
 * Times `count` calls of `call(i)` one by one after `warmup` untimed ones; yields every `batch` calls and
 * then runs `afterBatch` (outside the timing); `atStart` runs between the warm-up and the timed calls.
 * Counts the timed calls that returned false.
 */
async function timeCalls(
  count: number,
  batch: number,
  call: (i: number) => boolean,
  more: { afterBatch?: (i: number) => void; warmup?: number; atStart?: () => void } = {},
): Promise<Timed & { failed: number }> {
  let i = 0;
  let failed = 0;
  let switchesBefore = 0;
  const { value, gc } = await withGcTally((restartGcTally) =>
    microBench('call', () => call(i++) || failed++, {
      iterations: count,
      warmup: more.warmup ?? 0,
      beforeAll: (mode) => {
        if (mode !== 'run') return;
        failed = 0;
        restartGcTally();
        switchesBefore = process.resourceUsage().involuntaryContextSwitches;
        more.atStart?.();
      },
      afterEach: () => {
        if (i % batch !== 0) return;
        more.afterBatch?.(i - 1);
        return yieldToLoop() as Promise<void>;
      },
    }),
  );
  return {
    latencyUs: value.latencyUs,
    involuntaryContextSwitches: process.resourceUsage().involuntaryContextSwitches - switchesBefore,
    wallS: round(value.elapsedS, 3),
    callsPerSec: Math.round(count / value.elapsedS),
    callsPerSecInCall: Math.round(count / value.timedS),
    gc,
    failed,
  };
}

// ---------------------------------------------------------------------------------------------------
// Phases

interface Phase extends Timed {
  name: string;
  what: string;
  calls: number;
  failed: number;
  cpu: CpuPerEvent | null;
}

async function waitForConnected(bus: EventBus, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (bus.status().publisher.state !== 'connected') {
    if (Date.now() > deadline) {
      throw new Error(`publisher not connected after ${timeoutMs} ms: ${bus.status().publisher.lastError}`);
    }
    await interruptible(new Promise((resolve) => setTimeout(resolve, 20)));
  }
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const scratchDirs: string[] = [];
  const phases: Phase[] = [];
  let broker: BrokerInfo | undefined;
  let publisher: {
    confirmedBefore: number;
    confirmedDuring: number;
    confirmedByClose: number;
    unconfirmedAtEnd: number;
    confirmedRatePerSec: number;
    connects: number;
    connectFailures: number;
    resent: number;
    nacked: number;
    returned: number;
    state: string;
  } | null = null;
  let spoolAfter: object | null = null;
  let dropped: Record<string, number> | null = null;
  let recordBytes = 0;
  let alarmsAfter: string[] = [];
  let failure: unknown;

  try {
    progress(`building ${settings.pool} distinct ${settings.type} events (schema-checked)`);
    const calls = buildEmitCalls(settings.pool, [settings.type]);
    const records = calls.map(recordOf);
    recordBytes = Math.round(
      records.reduce((sum, record) => sum + recordBytesOf(record).length, 0) / records.length,
    );
    const jsonBytes = Math.round(
      calls.reduce((sum, call) => sum + JSON.stringify(call.event).length, 0) / calls.length,
    );
    progress(`events: ${jsonBytes} B of JSON, ${recordBytes} B per spool record (+20 B record header)`);

    broker = await waitForBroker();
    const rabbitPid = findRabbitmqPid();
    const busEnv = await environments.create();
    // Room for every event even if the publisher confirmed none: nothing may be dropped as spool_full.
    const spoolMaxBytes = Math.max(
      1024 ** 3,
      Math.ceil(((settings.count + settings.warmup) * (recordBytes + 20) * 1.25) / 2 ** 20) * 2 ** 20,
    );
    const bus = EventBus.open({
      dataDir: busEnv.env.DATA_DIR,
      rabbitmqUrls: [busEnv.env.RABBITMQ_URL],
      topology: buildTopology(),
      spoolMaxBytes,
    });
    let busClosed = false;
    try {
      await waitForConnected(bus, 15_000);
      progress(`bus open (spool cap ${formatNumber(spoolMaxBytes / 2 ** 20)} MiB), publisher connected`);

      const emit = (i: number) => {
        const call = calls[i % calls.length] as EmitCall;
        return bus.emit(call.event, call.traceparent, call.timestampMs);
      };
      progress(
        `timing ${formatNumber(settings.count)} emit() calls after ${formatNumber(settings.warmup)} untimed`,
      );
      let confirmedBefore = 0;
      const meter = new CpuMeter({ processes: { rabbitmq: rabbitPid } });
      const timed = await timeCalls(settings.count, settings.batch, emit, {
        warmup: settings.warmup,
        atStart: () => {
          confirmedBefore = bus.status().publisher.counters.confirmed;
          meter.start();
        },
      });
      const cpu = meter.stop(settings.count);
      const status = bus.status();
      const confirmedDuring = status.publisher.counters.confirmed - confirmedBefore;
      phases.push({
        name: 'emit',
        what: 'EventBus.emit() (stringify + encode + spool append), publisher draining',
        calls: settings.count,
        ...timed,
        cpu,
      });
      dropped = status.dropped;
      progress(
        `  p50 ${timed.latencyUs.p50} µs, p99 ${timed.latencyUs.p99} µs, ${formatNumber(timed.callsPerSec)} calls/s; publisher confirmed ${formatNumber(confirmedDuring)} meanwhile`,
      );

      progress('closing the bus (what is unconfirmed stays in the spool, which is then deleted)');
      const closeStarted = Date.now();
      const unconfirmedAtEnd = await bus.close(0);
      busClosed = true;
      const closed = bus.status();
      spoolAfter = closed.spool;
      publisher = {
        confirmedBefore,
        confirmedDuring,
        confirmedByClose: closed.publisher.counters.confirmed - confirmedBefore - confirmedDuring,
        unconfirmedAtEnd,
        confirmedRatePerSec: Math.round(confirmedDuring / timed.wallS),
        connects: closed.publisher.counters.connects,
        connectFailures: closed.publisher.counters.connectFailures,
        resent: closed.publisher.counters.resent,
        nacked: closed.publisher.counters.nacked,
        returned: closed.publisher.counters.returned,
        state: `${status.publisher.state} during the run, closed in ${Date.now() - closeStarted} ms`,
      };
    } finally {
      if (!busClosed) await bus.close(0).catch(() => {});
      await environments.remove(busEnv);
    }
    alarmsAfter = await brokerAlarms();

    // The halves alone.
    const split = Math.min(settings.splitCount, settings.count);
    const splitWarmup = Math.min(settings.warmup, split);
    /** One of the halves of emit(), timed alone over `split` calls. */
    const half = async (
      name: string,
      what: string,
      call: (i: number) => boolean,
      afterBatch?: () => void,
    ) => {
      progress(`timing ${formatNumber(split)} calls: ${what}`);
      const timed = await timeCalls(split, settings.batch, call, { warmup: splitWarmup, afterBatch });
      phases.push({ name, what, calls: split, ...timed, cpu: null });
    };
    const callOf = (i: number) => calls[i % calls.length] as EmitCall;
    let sink = 0;
    await half('JSON.stringify', 'JSON.stringify(event) alone', (i) => {
      sink += JSON.stringify(callOf(i).event).length;
      return true;
    });
    await half(
      'stringify + encodeRecord',
      'JSON.stringify + encodeRecord, as emit() calls them, alone',
      (i) => {
        sink += recordOf(callOf(i)).length;
        return true;
      },
    );
    if (sink === 0) throw new Error('nothing was serialised');

    const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'tb-bench-emit-spool-'));
    scratchDirs.push(spoolDir);
    const spool = Spool.open({ directory: spoolDir });
    try {
      // The publisher always listens; its wake-up scheduling is part of what an append costs. Confirmed
      // every batch, as a publisher that keeps up would.
      spool.onAppend(() => {});
      let last = -1;
      await half(
        'Spool.append',
        'Spool.append(record) of the same records, alone',
        (i) => {
          last = spool.append(records[i % records.length] as SpoolRecordText);
          return last >= 0;
        },
        () => spool.confirm(last),
      );
    } finally {
      await spool.close();
    }

    // emit() again, with nothing else in the event loop: the publisher cannot reach a broker (a closed
    // port on 127.0.0.1) and only retries now and then, so the spool just grows.
    const idleDir = mkdtempSync(path.join(os.tmpdir(), 'tb-bench-emit-idle-'));
    scratchDirs.push(idleDir);
    const idleBus = EventBus.open({
      dataDir: idleDir,
      rabbitmqUrls: [UNREACHABLE_BROKER],
      topology: buildTopology(),
      spoolMaxBytes: Math.max(1024 ** 3, Math.ceil((split * 2 * (recordBytes + 20)) / 2 ** 20) * 2 ** 20),
    });
    try {
      await half(
        'emit, publisher idle',
        'EventBus.emit() with no broker reachable: nothing but emit() in the event loop',
        (i) => {
          const call = callOf(i);
          return idleBus.emit(call.event, call.traceparent, call.timestampMs);
        },
      );
    } finally {
      await idleBus.close(0);
    }
  } catch (error) {
    failure = error;
  } finally {
    await environments.removeAll();
    for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
  }
  if (failure !== undefined) throw failure;

  // ---------------------------------------------------------------------------------------------------
  // Report

  const emitPhase = phases.find((phase) => phase.name === 'emit') as Phase;
  const droppedTotal = dropped === null ? 0 : Object.values(dropped).reduce((sum, n) => sum + n, 0);
  const failedTotal = phases.reduce((sum, phase) => sum + phase.failed, 0);
  const encodePhase = phases.find((phase) => phase.name === 'stringify + encodeRecord');
  const appendPhase = phases.find((phase) => phase.name === 'Spool.append');
  const us = (value: number) => formatNumber(value, 2);
  const sections: Section[] = [
    {
      title: 'Latency of one call, µs (each call timed alone with process.hrtime.bigint)',
      columns: ['phase', 'calls', 'p50', 'p90', 'p99', 'p99.9', 'max', 'mean', 'calls/s', 'calls/s in call'],
      rows: phases.map((phase) => [
        phase.name,
        formatNumber(phase.calls),
        us(phase.latencyUs.p50),
        us(phase.latencyUs.p90),
        us(phase.latencyUs.p99),
        us(phase.latencyUs.p99_9),
        us(phase.latencyUs.max),
        us(phase.latencyUs.mean),
        formatNumber(phase.callsPerSec),
        formatNumber(phase.callsPerSecInCall),
      ]),
    },
    {
      title: 'Garbage collection and CPU during each phase',
      columns: [
        'phase',
        'wall s',
        'GCs',
        'GC total ms',
        'GC max ms',
        'preempted (involuntary switches)',
        'bench cores',
        'RabbitMQ cores',
      ],
      rows: phases.map((phase) => [
        phase.name,
        formatNumber(phase.wallS, 2),
        formatNumber(phase.gc.count),
        formatNumber(phase.gc.totalMs, 1),
        formatNumber(phase.gc.maxMs, 2),
        formatNumber(phase.involuntaryContextSwitches),
        ...['load generator', 'rabbitmq'].map((name) => phase.cpu?.processes[name]?.cores?.toFixed(2) ?? '—'),
      ]),
    },
  ];
  const idlePhase = phases.find((phase) => phase.name === 'emit, publisher idle');
  const idleText =
    idlePhase === undefined
      ? 'emit() with the publisher idle: not measured'
      : `emit() with the publisher idle (no broker): p50 ${us(idlePhase.latencyUs.p50)} µs, p99 ${us(idlePhase.latencyUs.p99)} µs, mean ${us(idlePhase.latencyUs.mean)} µs — ${idlePhase.latencyUs.p99 < GOALS.p99.threshold ? 'within' : 'over'} the goal; the difference to the emit row is what the publisher's work in the same event loop (GC, caches) and the machine's other load add`;
  const splitText =
    encodePhase !== undefined && appendPhase !== undefined
      ? `cost split (means): stringify + encodeRecord ${us(encodePhase.latencyUs.mean)} µs + Spool.append ${us(appendPhase.latencyUs.mean)} µs = ${us(encodePhase.latencyUs.mean + appendPhase.latencyUs.mean)} µs, emit() measured ${us(emitPhase.latencyUs.mean)} µs; p50s ${us(encodePhase.latencyUs.p50)} + ${us(appendPhase.latencyUs.p50)} vs ${us(emitPhase.latencyUs.p50)} µs`
      : 'cost split: not measured';
  const note = `${formatNumber(settings.count)} calls, ${recordBytes} B ${settings.type} records, publisher draining`;
  const goals = [
    judge(GOALS.p99, emitPhase.latencyUs.p99, `${note}; p99.9 ${us(emitPhase.latencyUs.p99_9)} µs`),
    judge(GOALS.dropped, dropped === null ? null : droppedTotal, note),
  ];
  const verdicts = [splitText, idleText];
  const settingsText = [
    `${formatNumber(settings.count)} timed emit() calls after ${formatNumber(settings.warmup)} untimed (each other phase too gets up to that many untimed calls first); yield to the event loop every ${settings.batch} calls; ${settings.pool} distinct ${settings.type} events cycled, ${recordBytes} B per record; halves alone over ${formatNumber(Math.min(settings.splitCount, settings.count))} calls each`,
    `EventBus: spool defaults (64 MiB segments, fsync every 50 ms) but the cap raised above what the run writes; publisher defaults (window 1000), RabbitMQ vhost of its own with the real topology (quorum queues, no consumers)`,
    `${environmentText(env, broker === undefined ? '' : `, RabbitMQ ${broker.version} (Erlang ${broker.erlang})`)}`,
  ];
  const checks = [
    `dropped by emit(): ${dropped === null ? 'n/a' : JSON.stringify(dropped)}${droppedTotal === 0 ? '' : ' (must be all 0)'}; failed calls in the split phases: ${failedTotal}`,
    publisher === null
      ? 'publisher: n/a'
      : `publisher drained concurrently: ${formatNumber(publisher.confirmedDuring)} events confirmed during the ${formatNumber(emitPhase.wallS, 2)} s of timed calls (${formatNumber(publisher.confirmedRatePerSec)}/s), ${formatNumber(publisher.unconfirmedAtEnd)} left unconfirmed at the end (spool deleted); connects ${publisher.connects}, connect failures ${publisher.connectFailures}, resent ${publisher.resent}, nacked ${publisher.nacked}, returned ${publisher.returned}`,
    publisher === null || (publisher.connects === 1 && publisher.nacked === 0)
      ? 'broker: one connection throughout, no nacks'
      : `BROKER TROUBLE during the run (${publisher.connects} connects, ${publisher.connectFailures} connect failures, ${publisher.nacked} nacks; RabbitMQ is shared and may have been stopped by a test): the publisher figures, and maybe the timings, are not representative — run again`,
    `broker alarms after the run: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
  ];
  await publishResults({
    name: NAME,
    title: 'EventBus.emit() benchmark',
    startedAt,
    goals: { title: 'Goals', goals },
    sections,
    verdicts,
    notes: { settings: settingsText, checks },
    command: commandLine('bench:emit'),
    report: {
      settings: { ...settings, recordBytes },
      environment: { ...env, rabbitmq: broker ?? null },
      phases,
      publisher,
      dropped,
      spoolAfterClose: spoolAfter,
      brokerAlarmsAfter: alarmsAfter,
    },
  });
  const healthy =
    droppedTotal === 0 &&
    failedTotal === 0 &&
    publisher !== null &&
    publisher.connects === 1 &&
    publisher.nacked === 0;
  return healthy ? 0 : 1;
}

runMain(NAME, cli.help(), main);
