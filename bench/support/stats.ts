/** Exact percentiles of recorded samples (nearest rank), and medians of repeated runs. */

/** Samples appended one at a time into a growing Float64Array: no boxing, no per-sample allocation. */
export class Samples {
  #values: Float64Array;
  #length = 0;

  constructor(capacity = 1024) {
    this.#values = new Float64Array(Math.max(1, capacity));
  }

  get length(): number {
    return this.#length;
  }

  push(value: number): void {
    if (this.#length === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#length++] = value;
  }

  /** A sorted copy of the samples so far. */
  sorted(): Float64Array {
    return this.#values.slice(0, this.#length).sort();
  }
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

export interface Distribution {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p99_9: number;
  max: number;
}

/** The distribution of `sorted` (ascending), each value multiplied by `scale` (e.g. 1e-3 for ns → µs). */
export function distribution(sorted: Float64Array, scale = 1, digits = 3): Distribution {
  let sum = 0;
  for (const value of sorted) sum += value;
  const r = (value: number) => Math.round(value * scale * 10 ** digits) / 10 ** digits;
  return {
    count: sorted.length,
    mean: r(sorted.length === 0 ? Number.NaN : sum / sorted.length),
    p50: r(percentile(sorted, 50)),
    p90: r(percentile(sorted, 90)),
    p95: r(percentile(sorted, 95)),
    p99: r(percentile(sorted, 99)),
    p99_9: r(percentile(sorted, 99.9)),
    max: r(sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number)),
  };
}

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

export function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}
