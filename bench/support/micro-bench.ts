/**
 * Micro-benchmarks through tinybench: every call of `fn` timed alone (process.hrtime), no warm-up beyond
 * what the caller asks, a fixed number of iterations, and the samples kept so the percentiles are exact
 * (stats.ts). Hooks run outside the timed window: that is where a benchmark yields to the event loop or
 * confirms, as the service would between requests.
 */
import { Bench, type FnOptions, hrtimeNowTimestampProvider } from 'tinybench';
import { interruptSignal } from './settings.ts';
import { type Distribution, distribution } from './stats.ts';

export interface MicroResult {
  /** Per call, µs. */
  latencyUs: Distribution;
  /** First timed call to last, the hooks included, the warm-up not (s). */
  elapsedS: number;
  /** Sum of the timed calls (s). */
  timedS: number;
}

/** Runs `fn` `iterations` times (after `warmup` untimed ones); per-call latency in µs. */
export async function microBench(
  name: string,
  fn: () => unknown,
  options: { iterations: number; warmup?: number } & Pick<FnOptions, 'beforeAll' | 'afterAll' | 'afterEach'>,
): Promise<MicroResult> {
  const { iterations, warmup = 0, ...hooks } = options;
  const bench = new Bench({
    name,
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
  let started = 0;
  const beforeAll: FnOptions['beforeAll'] = function (mode) {
    if (mode === 'run') started = performance.now();
    return hooks.beforeAll?.call(this, mode);
  };
  // async: false, or tinybench calls fn once more (untimed, no hooks) to find out whether it is async.
  bench.add(name, fn, { ...hooks, beforeAll, async: false });
  const [task] = await bench.run();
  const elapsedS = (performance.now() - started) / 1000;
  if (interruptSignal.aborted) throw interruptSignal.reason;
  const result = task?.result;
  if (result === undefined || !('latency' in result) || result.latency.samples === undefined) {
    throw new Error(`${name}: tinybench gave no samples (${result?.state ?? 'not run'})`);
  }
  const sorted = Float64Array.from(result.latency.samples).sort();
  return { latencyUs: distribution(sorted, 1000), elapsedS, timedS: result.totalTime / 1000 };
}
