/**
 * The cost of `EventBus.emit()`, the one telemetry cost every API request pays, then its halves alone and
 * emit() with the publisher idle, so the figures explain themselves. Method: bench/README.md ("bench:emit").
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EventBus } from '../src/bus/event-bus.ts';
import { Spool } from '../src/bus/spool/spool.ts';
import { buildTopology } from '../src/bus/topology.ts';
import { brokerAlarms, Environments, waitForBroker } from './support/broker.ts';
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
import {
  gcColumns,
  latencyColumns,
  type MicroOptions,
  type MicroResult,
  microBench,
} from './support/micro-bench.ts';
import { flag, integer, oneOf, commandLine as options } from './support/options.ts';
import {
  commandLine,
  environment,
  environmentText,
  formatNumber,
  progress,
  publishResults,
  table,
} from './support/report.ts';
import { bounded, handleSignals, runMain, whenTrue } from './support/settings.ts';
import { mean } from './support/stats.ts';

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

interface Phase extends MicroResult {
  name: string;
  cpu?: CpuPerEvent;
}

/** A spool cap above what `calls` records take, so none is dropped as spool_full. */
const spoolCap = (calls: number, recordBytes: number) =>
  Math.max(1024 ** 3, Math.ceil((calls * (recordBytes + 20) * 1.25) / 2 ** 20) * 2 ** 20);

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'tb-bench-emit-'));
  const phases: Phase[] = [];
  const split = Math.min(settings.splitCount, settings.count);
  /** Times `fn` as a phase: over `split` calls unless told otherwise. */
  const phase = async (name: string, fn: (i: number) => unknown, more: Partial<MicroOptions> = {}) => {
    const iterations = more.iterations ?? split;
    progress(`timing ${formatNumber(iterations)} calls: ${name}`);
    const warmup = Math.min(settings.warmup, iterations);
    const result: Phase = {
      name,
      ...(await microBench(name, fn, { iterations, warmup, batch: settings.batch, ...more })),
    };
    phases.push(result);
    return result;
  };
  const openBus = (dataDir: string, url: string, calls: number) =>
    EventBus.open({
      dataDir,
      rabbitmqUrls: [url],
      topology: buildTopology(),
      spoolMaxBytes: spoolCap(calls, recordBytes),
    });

  progress(`building ${settings.pool} distinct ${settings.type} events (schema-checked)`);
  const calls = buildEmitCalls(settings.pool, [settings.type]);
  const records = calls.map(recordOf);
  const recordBytes = Math.round(mean(records.map((record) => recordBytesOf(record).length)));
  const jsonBytes = Math.round(mean(calls.map((call) => JSON.stringify(call.event).length)));
  progress(`events: ${jsonBytes} B of JSON, ${recordBytes} B per spool record (+20 B record header)`);
  const callOf = (i: number) => calls[i % calls.length] as EmitCall;
  const emitOn = (bus: EventBus) => (i: number) =>
    bus.emit(callOf(i).event, callOf(i).traceparent, callOf(i).timestampMs);

  try {
    const broker = await waitForBroker();
    const busEnv = await environments.create();
    const bus = openBus(busEnv.env.DATA_DIR, busEnv.env.RABBITMQ_URL, settings.count + settings.warmup);
    const meter = new CpuMeter({ processes: { rabbitmq: findRabbitmqPid() } });
    let confirmedBefore = 0;
    let during: ReturnType<EventBus['status']>;
    let emit: Phase;
    let unconfirmedAtEnd: number;
    try {
      await bounded(
        whenTrue(() => bus.status().publisher.state === 'connected', 20),
        15,
        'connecting',
      );
      emit = await phase('emit', emitOn(bus), {
        iterations: settings.count,
        atStart: () => {
          confirmedBefore = bus.status().publisher.counters.confirmed;
          meter.start();
        },
      });
      emit.cpu = meter.stop(settings.count);
      during = bus.status();
    } finally {
      // What is unconfirmed stays in the spool, which is deleted with the vhost's data directory.
      unconfirmedAtEnd = await bus.close(0);
    }
    const confirmedDuring = during.publisher.counters.confirmed - confirmedBefore;
    const publisher = {
      ...bus.status().publisher.counters,
      confirmedDuring,
      confirmedRatePerSec: Math.round(confirmedDuring / emit.wallS),
      unconfirmedAtEnd,
    };
    const alarmsAfter = await brokerAlarms();

    let sink = 0;
    await phase('JSON.stringify', (i) => {
      sink += JSON.stringify(callOf(i).event).length;
    });
    const { latencyUs: encode } = await phase('stringify + encodeRecord', (i) => {
      sink += recordOf(callOf(i)).length;
    });
    if (sink === 0) throw new Error('nothing was serialised');
    const spool = Spool.open({ directory: path.join(scratch, 'spool') });
    // The publisher always listens; its wake-up is part of what an append costs. Confirmed every batch,
    // as a publisher that keeps up would.
    spool.onAppend(() => {});
    let last = -1;
    const { latencyUs: append } = await phase(
      'Spool.append',
      (i) => {
        last = spool.append(records[i % records.length] as SpoolRecordText);
        return last >= 0;
      },
      { afterBatch: () => spool.confirm(last) },
    ).finally(() => spool.close());
    // emit() with nothing else in the event loop: the publisher cannot reach a broker and only retries
    // now and then, so the spool just grows.
    const idleBus = openBus(path.join(scratch, 'idle'), UNREACHABLE_BROKER, 2 * split);
    const { latencyUs: idle } = await phase('emit, publisher idle', emitOn(idleBus)).finally(() =>
      idleBus.close(0),
    );

    const dropped = during.dropped;
    const droppedTotal = Object.values(dropped).reduce((sum, n) => sum + n, 0);
    const failedTotal = phases.reduce((sum, { failed }) => sum + failed, 0);
    const healthy = publisher.connects === 1 && publisher.nacked === 0;
    const us = (value: number) => formatNumber(value, 2);
    const note = `${formatNumber(settings.count)} calls, ${recordBytes} B ${settings.type} records, publisher draining`;
    await publishResults({
      name: 'emit',
      title: 'EventBus.emit() benchmark',
      startedAt,
      goals: {
        title: 'Goals',
        goals: [
          judge(GOALS.p99, emit.latencyUs.p99, `${note}; p99.9 ${us(emit.latencyUs.p99_9)} µs`),
          judge(GOALS.dropped, droppedTotal, note),
        ],
      },
      sections: [
        table('Latency of one call, µs (each call timed alone with process.hrtime.bigint)', phases, {
          phase: (row) => row.name,
          ...latencyColumns,
        }),
        table('Garbage collection and CPU during each phase', phases, {
          phase: (row) => row.name,
          ...gcColumns,
          'bench cores': (row) => row.cpu?.processes['load generator']?.cores?.toFixed(2) ?? '—',
          'RabbitMQ cores': (row) => row.cpu?.processes.rabbitmq?.cores?.toFixed(2) ?? '—',
        }),
      ],
      verdicts: [
        `cost split (means): stringify + encodeRecord ${us(encode.mean)} µs + Spool.append ${us(append.mean)} µs = ${us(encode.mean + append.mean)} µs, emit() measured ${us(emit.latencyUs.mean)} µs; p50s ${us(encode.p50)} + ${us(append.p50)} vs ${us(emit.latencyUs.p50)} µs`,
        `emit() with the publisher idle (no broker): p50 ${us(idle.p50)} µs, p99 ${us(idle.p99)} µs, mean ${us(idle.mean)} µs — ${idle.p99 < GOALS.p99.threshold ? 'within' : 'over'} the goal; the difference to the emit row is what the publisher's work in the same event loop (GC, caches) and the machine's other load add`,
      ],
      notes: {
        settings: [
          ...cli.settingsBlock(settings),
          `${recordBytes} B per record; EventBus: spool defaults (64 MiB segments, fsync every 50 ms) but the cap raised above what the run writes; publisher defaults (window 1000), RabbitMQ vhost of its own with the real topology (quorum queues, no consumers)`,
          environmentText(env, `, RabbitMQ ${broker.version} (Erlang ${broker.erlang})`),
        ],
        checks: [
          `dropped by emit(): ${JSON.stringify(dropped)}${droppedTotal === 0 ? '' : ' (must be all 0)'}; failed calls in the split phases: ${failedTotal}`,
          `publisher drained concurrently: ${formatNumber(confirmedDuring)} events confirmed during the ${formatNumber(emit.wallS, 2)} s of timed calls (${formatNumber(publisher.confirmedRatePerSec)}/s), ${formatNumber(unconfirmedAtEnd)} left unconfirmed at the end (spool deleted); connects ${publisher.connects}, connect failures ${publisher.connectFailures}, resent ${publisher.resent}, nacked ${publisher.nacked}, returned ${publisher.returned}`,
          healthy
            ? 'broker: one connection throughout, no nacks'
            : `BROKER TROUBLE during the run (${publisher.connects} connects, ${publisher.connectFailures} connect failures, ${publisher.nacked} nacks; RabbitMQ is shared and may have been stopped by a test): the publisher figures, and maybe the timings, are not representative — run again`,
          `broker alarms after the run: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
        ],
      },
      command: commandLine('bench:emit'),
      report: {
        settings: { ...settings, recordBytes },
        environment: { ...env, rabbitmq: broker },
        phases,
        publisher,
        dropped,
        spoolAfterClose: bus.status().spool,
        brokerAlarmsAfter: alarmsAfter,
      },
    });
    return droppedTotal === 0 && failedTotal === 0 && healthy ? 0 : 1;
  } finally {
    await environments.removeAll();
    rmSync(scratch, { recursive: true, force: true });
  }
}

runMain('emit', cli.help(), main);
