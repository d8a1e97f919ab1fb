/**
 * Micro-benchmarks through tinybench: every call timed alone (process.hrtime) after the warm-up, the
 * samples kept so the percentiles are exact (stats.ts). Every `batch` calls, outside the timed calls, it
 * runs `afterBatch` and yields to the event loop, as the service does between requests, so its timers
 * (fsync) and the publisher run. The machine is shared: garbage collections and preemptions are counted.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { Bench, hrtimeNowTimestampProvider } from 'tinybench';
import { type Columns, formatNumber, round } from './report.ts';
import { interruptSignal } from './settings.ts';
import { type Distribution, distribution } from './stats.ts';

export interface MicroResult {
  calls: number;
  /** Per call, µs. */
  latencyUs: Distribution;
  /** First timed call to last, the yields included (s). */
  wallS: number;
  callsPerSec: number;
  /** Calls per second of the time spent inside the calls: the throughput were they the only work. */
  callsPerSecInCall: number;
  /** Timed calls that returned false. */
  failed: number;
  gc: { count: number; totalMs: number; maxMs: number };
  /** Times the kernel took the CPU away from this process during the timed calls. */
  involuntaryContextSwitches: number;
}

export interface MicroOptions {
  iterations: number;
  warmup?: number;
  batch?: number;
  afterBatch?: () => void;
  atStart?: () => void;
}

/** Times `iterations` calls of `fn(i)` (i counts the warm-up's calls too); `atStart` runs before the first. */
export async function microBench(
  name: string,
  fn: (i: number) => unknown,
  options: MicroOptions,
): Promise<MicroResult> {
  const { iterations, warmup = 0, batch = 1000 } = options;
  let i = 0;
  let failed = 0;
  let started = 0;
  let switches = 0;
  const gc = { count: 0, totalMs: 0, maxMs: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const { duration } of list.getEntries()) {
      gc.count++;
      gc.totalMs += duration;
      gc.maxMs = Math.max(gc.maxMs, duration);
    }
  });
  const bench = new Bench({
    iterations,
    time: 0,
    warmup: warmup > 0,
    warmupIterations: warmup,
    warmupTime: 0,
    retainSamples: true,
    throws: true,
    signal: interruptSignal,
    timestampProvider: hrtimeNowTimestampProvider,
  });
  // async: false, or tinybench calls fn once more (untimed, no hooks) to find out whether it is async.
  bench.add(name, () => fn(i++) === false && failed++, {
    async: false,
    beforeAll: (mode) => {
      if (mode !== 'run') return;
      options.atStart?.();
      failed = 0;
      Object.assign(gc, { count: 0, totalMs: 0, maxMs: 0 });
      switches = process.resourceUsage().involuntaryContextSwitches;
      started = performance.now();
    },
    afterEach: () => {
      if (i % batch !== 0) return;
      options.afterBatch?.();
      return new Promise<void>((resolve) => setImmediate(resolve));
    },
  });
  observer.observe({ entryTypes: ['gc'] });
  try {
    const [task] = await bench.run();
    const wallS = (performance.now() - started) / 1000;
    switches = process.resourceUsage().involuntaryContextSwitches - switches;
    // GC entries are delivered asynchronously: let the last ones arrive.
    await new Promise((resolve) => setTimeout(resolve, 10));
    if (interruptSignal.aborted) throw interruptSignal.reason;
    const result = task?.result;
    if (result === undefined || !('latency' in result) || result.latency.samples === undefined) {
      throw new Error(`${name}: tinybench gave no samples (${result?.state ?? 'not run'})`);
    }
    return {
      calls: iterations,
      latencyUs: distribution(result.latency.samples, 1000),
      wallS: round(wallS, 3),
      callsPerSec: Math.round(iterations / wallS),
      callsPerSecInCall: Math.round(iterations / (result.totalTime / 1000)),
      failed,
      gc: { count: gc.count, totalMs: round(gc.totalMs, 1), maxMs: round(gc.maxMs) },
      involuntaryContextSwitches: switches,
    };
  } finally {
    observer.disconnect();
  }
}

const us = (key: keyof Distribution) => (row: MicroResult) => formatNumber(row.latencyUs[key], 2);

/** A table's columns for rows that are MicroResults: calls, latency (µs) and calls per second. */
export const latencyColumns: Columns<MicroResult> = {
  calls: (row) => formatNumber(row.calls),
  p50: us('p50'),
  p90: us('p90'),
  p99: us('p99'),
  'p99.9': us('p99_9'),
  max: us('max'),
  mean: us('mean'),
  'calls/s': (row) => formatNumber(row.callsPerSec),
  'calls/s in call': (row) => formatNumber(row.callsPerSecInCall),
};

/** The columns of what else happened during the timed calls: wall time, GCs, preemptions. */
export const gcColumns: Columns<MicroResult> = {
  'wall s': (row) => formatNumber(row.wallS, 2),
  GCs: (row) => formatNumber(row.gc.count),
  'GC total ms': (row) => formatNumber(row.gc.totalMs, 1),
  'GC max ms': (row) => formatNumber(row.gc.maxMs, 2),
  'preempted (involuntary switches)': (row) => formatNumber(row.involuntaryContextSwitches),
};
