/** Exact percentiles of recorded samples (nearest rank), and medians and means of repeated runs. */

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

/**
 * The distribution of `values`, each multiplied by `scale` (e.g. 1e-3 for ns → µs). A number[] of
 * fractional values is already unboxed doubles in V8, so samples are simply pushed onto one.
 */
export function distribution(values: ArrayLike<number>, scale = 1, digits = 3): Distribution {
  const sorted = Float64Array.from(values).sort();
  const r = (value: number | undefined) =>
    Math.round((value ?? Number.NaN) * scale * 10 ** digits) / 10 ** digits;
  const at = (p: number) => r(sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]);
  return {
    count: sorted.length,
    mean: r(sorted.reduce((sum, value) => sum + value, 0) / sorted.length),
    p50: at(50),
    p90: at(90),
    p95: at(95),
    p99: at(99),
    p99_9: at(99.9),
    max: r(sorted.at(-1)),
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : mean(sorted.slice(middle - 1, middle + 1));
}

export function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((sum, value) => sum + value, 0) / values.length;
}
