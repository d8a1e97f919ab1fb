/**
 * A Prometheus histogram read from a process's text exposition before and after a benchmark phase, and
 * the difference: the observations of exactly that phase, with percentiles interpolated inside their
 * bucket as `histogram_quantile()` does. So a benchmark reads the service's own histograms with no clock
 * of its own. A histogram that is not in the exposition reads as an empty map: "not measured".
 */

export interface HistogramReading {
  /** Upper bound (seconds) → cumulative count, ascending, +Inf last. */
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
}

const SAMPLE = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** The histogram `name` in `exposition`, its series summed by the value of label `groupBy` ('' without). */
export function readHistogram(exposition: string, name: string, groupBy?: string) {
  const groups = new Map<string, { buckets: Map<number, number>; count: number; sum: number }>();
  for (const line of exposition.split('\n')) {
    const [, metric = '', labelText = '', text] = SAMPLE.exec(line) ?? [];
    const part = metric.startsWith(name) ? metric.slice(name.length) : '';
    if (part !== '_bucket' && part !== '_count' && part !== '_sum') continue;
    const labels = Object.fromEntries([...labelText.matchAll(LABEL)].map(([, key, value]) => [key, value]));
    const key = groupBy === undefined ? '' : (labels[groupBy] ?? '');
    const group = groups.get(key) ?? { buckets: new Map(), count: 0, sum: 0 };
    groups.set(key, group);
    if (part === '_count') group.count += Number(text);
    else if (part === '_sum') group.sum += Number(text);
    else {
      const le = labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(labels.le);
      group.buckets.set(le, (group.buckets.get(le) ?? 0) + Number(text));
    }
  }
  return new Map<string, HistogramReading>(
    [...groups].map(([key, { buckets, count, sum }]) => [
      key,
      { buckets: [...buckets].sort((a, b) => a[0] - b[0]), count, sum },
    ]),
  );
}

/** after − before (before may be absent: everything in after). */
export function histogramDelta(after: HistogramReading, before?: HistogramReading): HistogramReading {
  const earlier = new Map(before?.buckets);
  return {
    buckets: after.buckets.map(([le, n]) => [le, n - (earlier.get(le) ?? 0)]),
    count: after.count - (before?.count ?? 0),
    sum: after.sum - (before?.sum ?? 0),
  };
}

/** The q-quantile (0–1) of a reading, in its unit, interpolated inside the bucket; NaN when empty. */
export function histogramQuantile({ buckets }: HistogramReading, q: number): number {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let [lowerBound, lowerCount] = [0, 0];
  for (const [le, cumulative] of buckets) {
    if (cumulative >= rank) {
      // Above the highest finite bound: that bound, as histogram_quantile() answers.
      if (!Number.isFinite(le)) return lowerBound;
      const inBucket = cumulative - lowerCount;
      return inBucket <= 0 ? le : lowerBound + ((le - lowerBound) * (rank - lowerCount)) / inBucket;
    }
    [lowerBound, lowerCount] = [le, cumulative];
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
  const [p50, p95, p99] = [0.5, 0.95, 0.99].map((q) => ms(histogramQuantile(reading, q))) as [
    number,
    number,
    number,
  ];
  return {
    count: reading.count,
    p50,
    p95,
    p99,
    mean: reading.count > 0 ? ms(reading.sum / reading.count) : Number.NaN,
  };
}
