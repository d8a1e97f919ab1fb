/**
 * Test support: GET /health of the API every 100 ms, kept as a time line of the publisher's state, node
 * and confirms — from which a cluster scenario reads when the publisher left a node, when it was
 * connected again elsewhere, and how long publishing stalled.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface HealthSample {
  at: number;
  /** The publisher's state, or 'unreachable' when /health did not answer. */
  state: string;
  /** host:port of the node it is connected to, or null. */
  node: string | null;
  /** Messages confirmed so far. */
  confirmed: number;
  connects: number;
}

export interface HealthSampler {
  readonly samples: readonly HealthSample[];
  /** The latest sample. */
  last(): HealthSample | undefined;
  /** The first sample at or after `from` that satisfies `predicate`. */
  first(from: number, predicate: (sample: HealthSample) => boolean): HealthSample | undefined;
  /** The longest stretch within [from, to] in which `predicate` held, in ms (sample to sample). */
  longest(from: number, to: number, predicate: (sample: HealthSample) => boolean): number;
  /** The longest stretch within [from, to] in which the confirmed count did not move, in ms. */
  longestConfirmStall(from: number, to: number): number;
  stop(): Promise<void>;
}

export function sampleHealth(apiUrl: () => string, intervalMs = 100): HealthSampler {
  const samples: HealthSample[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      try {
        const response = await fetch(`${apiUrl()}/health`, { signal: AbortSignal.timeout(2000) });
        const health = (await response.json()) as {
          publisher: { state: string; node: string | null; confirmed: number; connects: number };
        };
        samples.push({ at, ...health.publisher });
      } catch {
        samples.push({ at, state: 'unreachable', node: null, confirmed: -1, connects: -1 });
      }
      await sleep(Math.max(0, intervalMs - (Date.now() - at)));
    }
  })();
  const within = (from: number, to: number) =>
    samples.filter((sample) => sample.at >= from && sample.at <= to);
  const longestRun = (
    window: HealthSample[],
    holds: (sample: HealthSample, previous: HealthSample) => boolean,
  ) => {
    let longest = 0;
    let start: number | undefined;
    for (let index = 1; index < window.length; index++) {
      const sample = window[index] as HealthSample;
      if (holds(sample, window[index - 1] as HealthSample)) {
        start ??= (window[index - 1] as HealthSample).at;
        longest = Math.max(longest, sample.at - start);
      } else {
        start = undefined;
      }
    }
    return longest;
  };
  return {
    samples,
    last: () => samples[samples.length - 1],
    first: (from, predicate) => samples.find((sample) => sample.at >= from && predicate(sample)),
    longest: (from, to, predicate) => longestRun(within(from, to), (sample) => predicate(sample)),
    longestConfirmStall: (from, to) =>
      longestRun(within(from, to), (sample, previous) => sample.confirmed <= previous.confirmed),
    async stop() {
      running = false;
      await loop;
    },
  };
}
