/**
 * What this API process answered in each of the last few minutes' seconds: requests by event type,
 * latency percentiles and error counts, for the live dashboard. Fed once per request (an O(1) push, no
 * I/O) and read once a second by the dashboard's producer, so a dashboard costs no database query.
 *
 * Latencies are kept as raw samples per second, at most {@link LiveWindowOptions.samplesPerSecond} of
 * them (a uniform reservoir beyond that), so the percentiles of a second are exact up to that rate and an
 * unbiased estimate above it.
 */

export interface LiveWindowOptions {
  /** Seconds of history kept. @default 300 */
  seconds?: number;
  /** Latency samples kept per second; beyond that a uniform reservoir sample. @default 4096 */
  samplesPerSecond?: number;
}

/** One request as the dashboard sees it. */
export interface ObservedRequest {
  /** The request's event type (api.request, api.error, model.queried, …). */
  type: string;
  /** Time to answer, in milliseconds. */
  durationMs: number;
  /** HTTP status. */
  status: number;
  /** When it was answered, in ms since the epoch. */
  atMs: number;
}

/** One second of traffic. */
export interface LivePoint {
  /** Start of the second, in Unix seconds. */
  t: number;
  /** Requests answered in that second. */
  requests: number;
  /** Events by type (every request has one). */
  events: Record<string, number>;
  /** Latency percentiles in ms; null in a second without requests. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Requests answered 4xx and 5xx. */
  errors4xx: number;
  errors5xx: number;
}

interface Bucket {
  second: number;
  requests: number;
  events: Map<string, number>;
  samples: number[];
  errors4xx: number;
  errors5xx: number;
  /** Computed once the second is over. */
  point: LivePoint | undefined;
}

const DEFAULTS = { seconds: 300, samplesPerSecond: 4096 } as const;

/** The `q`-quantile (0…1) of ascending `sorted`, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil(q * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))] ?? null;
}

export class LiveWindow {
  readonly #seconds: number;
  readonly #samplesPerSecond: number;
  readonly #buckets: Array<Bucket | undefined>;

  constructor(options: LiveWindowOptions = {}) {
    this.#seconds = options.seconds ?? DEFAULTS.seconds;
    this.#samplesPerSecond = options.samplesPerSecond ?? DEFAULTS.samplesPerSecond;
    this.#buckets = new Array(this.#seconds);
  }

  record(request: ObservedRequest): void {
    const second = Math.floor(request.atMs / 1000);
    const bucket = this.#bucketFor(second);
    bucket.requests++;
    bucket.events.set(request.type, (bucket.events.get(request.type) ?? 0) + 1);
    if (request.status >= 500) bucket.errors5xx++;
    else if (request.status >= 400) bucket.errors4xx++;
    if (bucket.samples.length < this.#samplesPerSecond) {
      bucket.samples.push(request.durationMs);
    } else {
      // Reservoir sampling: each of the second's requests is kept with the same probability.
      const slot = Math.floor(Math.random() * bucket.requests);
      if (slot < this.#samplesPerSecond) bucket.samples[slot] = request.durationMs;
    }
  }

  /**
   * The seconds from `fromSecond` (inclusive) to the current one (exclusive: it is not over yet), oldest
   * first, zeros for seconds without requests; at most the window's length.
   */
  points(nowMs: number, fromSecond = Number.NEGATIVE_INFINITY): LivePoint[] {
    const now = Math.floor(nowMs / 1000);
    const first = Math.max(fromSecond, now - this.#seconds + 1);
    const points: LivePoint[] = [];
    for (let second = first; second < now; second++) points.push(this.#pointOf(second));
    return points;
  }

  #bucketFor(second: number): Bucket {
    const index = second % this.#seconds;
    let bucket = this.#buckets[index];
    if (bucket === undefined || bucket.second !== second) {
      bucket = {
        second,
        requests: 0,
        events: new Map(),
        samples: [],
        errors4xx: 0,
        errors5xx: 0,
        point: undefined,
      };
      this.#buckets[index] = bucket;
    }
    return bucket;
  }

  #pointOf(second: number): LivePoint {
    const bucket = this.#buckets[second % this.#seconds];
    if (bucket === undefined || bucket.second !== second) {
      return {
        t: second,
        requests: 0,
        events: {},
        p50: null,
        p95: null,
        p99: null,
        errors4xx: 0,
        errors5xx: 0,
      };
    }
    if (bucket.point === undefined) {
      const sorted = Float64Array.from(bucket.samples).sort();
      const values = Array.from(sorted);
      bucket.point = {
        t: second,
        requests: bucket.requests,
        events: Object.fromEntries(bucket.events),
        p50: quantile(values, 0.5),
        p95: quantile(values, 0.95),
        p99: quantile(values, 0.99),
        errors4xx: bucket.errors4xx,
        errors5xx: bucket.errors5xx,
      };
      // The second is over: its samples are no longer needed.
      bucket.samples = [];
    }
    return bucket.point;
  }
}
