/**
 * A Prometheus histogram read from a process's text exposition, twice, and the difference between the
 * two readings: the observations made in between (a benchmark phase), with percentiles interpolated
 * linearly inside their bucket as `histogram_quantile()` does. So a benchmark reads the service's own
 * histograms (`telemetry_publish_latency_seconds`, `telemetry_consumer_event_age_seconds{consumer}`) for
 * exactly the window of a phase, with no clock of its own.
 *
 * A histogram that is not in the exposition reads as undefined, so a benchmark can run against a build
 * that does not have it yet and say "not measured".
 */

/** Cumulative bucket counts by upper bound (seconds), plus the count and sum, of one series group. */
export interface HistogramReading {
  /** Upper bound → cumulative count, ascending, +Inf last. */
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * The histogram `name` in `exposition`, summed over all its series, grouped by the value of label
 * `groupBy` (one group, '', when not given). Empty map: the histogram is not there.
 */
export function readHistogram(
  exposition: string,
  name: string,
  groupBy?: string,
): Map<string, HistogramReading> {
  const groups = new Map<string, { buckets: Map<number, number>; count: number; sum: number }>();
  const groupOf = (key: string) => {
    let group = groups.get(key);
    if (group === undefined) {
      group = { buckets: new Map(), count: 0, sum: 0 };
      groups.set(key, group);
    }
    return group;
  };
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = LINE.exec(line);
    if (match === null) continue;
    const [, metric, labelText = '', rawValue] = match;
    const value = Number(rawValue);
    const labels: Record<string, string> = {};
    for (const [, key, labelValue] of labelText.matchAll(LABEL)) labels[key as string] = labelValue as string;
    const key = groupBy === undefined ? '' : (labels[groupBy] ?? '');
    if (metric === `${name}_bucket`) {
      const le = labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(labels.le);
      const group = groupOf(key);
      group.buckets.set(le, (group.buckets.get(le) ?? 0) + value);
    } else if (metric === `${name}_count`) groupOf(key).count += value;
    else if (metric === `${name}_sum`) groupOf(key).sum += value;
  }
  const readings = new Map<string, HistogramReading>();
  for (const [key, group] of groups) {
    readings.set(key, {
      buckets: [...group.buckets.entries()].sort((a, b) => a[0] - b[0]),
      count: group.count,
      sum: group.sum,
    });
  }
  return readings;
}

/** after − before (before may be absent: everything in after). */
export function histogramDelta(
  after: HistogramReading,
  before: HistogramReading | undefined,
): HistogramReading {
  const earlier = new Map(before?.buckets ?? []);
  return {
    buckets: after.buckets.map(([le, n]) => [le, n - (earlier.get(le) ?? 0)]),
    count: after.count - (before?.count ?? 0),
    sum: after.sum - (before?.sum ?? 0),
  };
}

/** The q-quantile (0–1) of a reading, in its unit, interpolated inside the bucket; NaN when empty. */
export function histogramQuantile(reading: HistogramReading, q: number): number {
  const total = reading.buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, cumulative] of reading.buckets) {
    if (cumulative >= rank) {
      // Above the highest finite bound: that bound, as histogram_quantile() answers.
      if (!Number.isFinite(le)) return lowerBound;
      const inBucket = cumulative - lowerCount;
      return inBucket <= 0 ? le : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    lowerBound = le;
    lowerCount = cumulative;
  }
  return lowerBound;
}

export interface LatencyPercentiles {
  count: number;
  /** Milliseconds. */
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

/** p50/p95/p99 and the mean of a reading in seconds, as milliseconds (3 decimals). */
export function percentilesMs(reading: HistogramReading): LatencyPercentiles {
  const ms = (seconds: number) => Math.round(seconds * 1e6) / 1e3;
  return {
    count: reading.count,
    p50: ms(histogramQuantile(reading, 0.5)),
    p95: ms(histogramQuantile(reading, 0.95)),
    p99: ms(histogramQuantile(reading, 0.99)),
    mean: reading.count > 0 ? ms(reading.sum / reading.count) : Number.NaN,
  };
}
