/**
 * Percentiles of the values recorded over the last minute (or any window of whole seconds): a ring of
 * one log-linear histogram per second (./log-linear-histogram.ts, within 0.78 % of the exact value), so
 * a percentile is the sum of the window's seconds, and a value leaves the window when its second's slot
 * is reused. A second's slot is replaced, not cleared, when it comes round again: a record costs a
 * bucket index and a Map increment, and memory stays at the buckets the window's values filled.
 *
 * The window is the current second and the `seconds − 1` before it, so it spans between `seconds − 1`
 * and `seconds` seconds of time.
 */
import { LogLinearHistogram } from './log-linear-histogram.ts';

export interface SlidingHistogramOptions {
  /** Length of the window, in whole seconds. @default 60 */
  seconds?: number;
}

/**
 * What the window holds: how many values, and their percentiles (nearest rank), in ms; null when empty.
 * In the form `GET /health` and the dashboard serve it.
 */
export interface WindowPercentiles {
  /** Length of the window, in seconds. */
  window_seconds: number;
  count: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

const DEFAULT_SECONDS = 60;

export class SlidingHistogram {
  readonly #seconds: number;
  /** The histogram of each slot, and which Unix second it holds (NaN: none yet). */
  readonly #slots: LogLinearHistogram[];
  readonly #slotSecond: Float64Array;

  constructor(options: SlidingHistogramOptions = {}) {
    const seconds = options.seconds ?? DEFAULT_SECONDS;
    if (!Number.isInteger(seconds) || seconds < 1) {
      throw new RangeError(`a sliding window is a whole number of seconds ≥ 1, got ${seconds}`);
    }
    this.#seconds = seconds;
    this.#slots = Array.from({ length: seconds }, () => new LogLinearHistogram());
    this.#slotSecond = new Float64Array(seconds).fill(Number.NaN);
  }

  /** Records `valueMs`, observed at `nowMs` (Unix ms: it picks the second). */
  record(valueMs: number, nowMs: number): void {
    const second = Math.floor(nowMs / 1000);
    const slot = second % this.#seconds;
    if (this.#slotSecond[slot] !== second) {
      this.#slots[slot] = new LogLinearHistogram();
      this.#slotSecond[slot] = second;
    }
    (this.#slots[slot] as LogLinearHistogram).record(valueMs);
  }

  /** The count and p50/p95/p99 of what was recorded in the window ending at `nowMs`. */
  percentiles(nowMs: number): WindowPercentiles {
    const now = Math.floor(nowMs / 1000);
    const window = new LogLinearHistogram();
    for (let slot = 0; slot < this.#seconds; slot++) {
      const second = this.#slotSecond[slot] as number;
      // A slot not written for a whole window is stale (NaN, never written, fails the test too).
      if (second > now - this.#seconds && second <= now)
        window.merge(this.#slots[slot] as LogLinearHistogram);
    }
    return {
      window_seconds: this.#seconds,
      count: window.total,
      p50_ms: window.percentile(50),
      p95_ms: window.percentile(95),
      p99_ms: window.percentile(99),
    };
  }
}
