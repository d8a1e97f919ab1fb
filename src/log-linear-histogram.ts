/**
 * A mergeable log-linear histogram of durations in milliseconds, with a bounded relative error, so that
 * percentiles over any time range are computed by adding per-minute histograms rather than by keeping
 * every value.
 *
 * Layout (HDR-style log-linear): every power of two [2^e, 2^(e+1)) ms, for e from {@link
 * HISTOGRAM_LAYOUT.minExponent} to {@link HISTOGRAM_LAYOUT.maxExponent}, is cut into
 * {@link HISTOGRAM_LAYOUT.subBuckets} buckets of equal width. A bucket [L, U) is represented by the value
 * 2LU / (L + U), whose distance to any value in the bucket is at most (U − L) / (U + L) of that value: with
 * 64 sub-buckets, 1 / 129 ≈ 0.78 % ({@link MAX_RELATIVE_ERROR}). A percentile is the representative of
 * the bucket holding the value of that rank (nearest-rank definition), so it is within that error of the
 * exact percentile of the raw values. Bucket 0 holds everything below 2^-10 ms (≈ 1 µs, including 0 and
 * negative values from clock skew) and is represented by 0; values of 2^36 ms (≈ 2.2 years) or more are
 * counted in the last bucket.
 *
 * Compact form for storage ({@link LogLinearHistogram.toPacked}): the non-empty buckets only, in index
 * order, each as one integer `index × 2^40 + count` (a PostgreSQL `bigint[]`). Why packed pairs in one
 * array: a row holds one column per histogram, merging two is one walk of both sorted arrays (SQL
 * function `metrics_histogram_add`, migrations/1764691200000_histogram-merge-walk.sql), and merging a
 * range is `unnest` + `sum` grouped by `element >> 40` — the same arithmetic in SQL and here. Every value stays below 2^53, so JavaScript
 * numbers hold it exactly. A minute of one route typically fills a few dozen buckets: 8 bytes each.
 */

/** The bucket layout; shared with the SQL of the metrics tables (the 40-bit count field). */
export const HISTOGRAM_LAYOUT = {
  /** Linear buckets per power of two. */
  subBuckets: 64,
  /** Smallest power of two with buckets of its own: 2^-10 ms ≈ 0.98 µs. */
  minExponent: -10,
  /** Largest power of two with buckets of its own: [2^35, 2^36) ms. */
  maxExponent: 35,
  /** Bits of the count in a packed element. */
  countBits: 40,
} as const;

const { subBuckets: SUB, minExponent: MIN_E, maxExponent: MAX_E } = HISTOGRAM_LAYOUT;
const COUNT_FACTOR = 2 ** HISTOGRAM_LAYOUT.countBits;
const MIN_VALUE = 2 ** MIN_E;

/** Highest bucket index. */
export const MAX_BUCKET_INDEX = (MAX_E - MIN_E + 1) * SUB;

/** The largest relative error of a bucket's representative: 1 / (2 × subBuckets + 1). */
export const MAX_RELATIVE_ERROR = 1 / (2 * SUB + 1);

/** The bucket of a value in milliseconds. */
export function bucketIndex(valueMs: number): number {
  if (!(valueMs >= MIN_VALUE)) return 0; // also NaN
  if (valueMs >= 2 ** (MAX_E + 1)) return MAX_BUCKET_INDEX;
  let exponent = Math.floor(Math.log2(valueMs));
  // log2 can round across a power of two; the bucket must follow the value, not the rounding.
  if (2 ** exponent > valueMs) exponent--;
  else if (2 ** (exponent + 1) <= valueMs) exponent++;
  const sub = Math.min(SUB - 1, Math.floor((valueMs / 2 ** exponent - 1) * SUB));
  return 1 + (exponent - MIN_E) * SUB + sub;
}

/** The range [lower, upper) of values in bucket `index`, in ms; bucket 0 is [−∞, 2^-10). */
export function bucketBounds(index: number): { lower: number; upper: number } {
  if (index <= 0) return { lower: Number.NEGATIVE_INFINITY, upper: MIN_VALUE };
  const exponent = MIN_E + Math.floor((index - 1) / SUB);
  const sub = (index - 1) % SUB;
  const base = 2 ** exponent;
  return { lower: base * (1 + sub / SUB), upper: base * (1 + (sub + 1) / SUB) };
}

/** The value reported for bucket `index`: 2LU / (L + U), equally far (relatively) from both ends. */
export function bucketValue(index: number): number {
  if (index <= 0) return 0;
  const { lower, upper } = bucketBounds(index);
  return (2 * lower * upper) / (lower + upper);
}

/** Packs a bucket and its count into one storable integer. */
export function packBucket(index: number, count: number): number {
  if (!Number.isInteger(count) || count < 1 || count >= COUNT_FACTOR) {
    throw new RangeError(`a bucket count must be an integer from 1 to 2^40 − 1, got ${count}`);
  }
  return index * COUNT_FACTOR + count;
}

/** The bucket and count of a packed element (a number or the string node-postgres gives for a bigint). */
export function unpackBucket(element: number | string): { index: number; count: number } {
  const value = typeof element === 'string' ? Number(element) : element;
  const index = Math.floor(value / COUNT_FACTOR);
  return { index, count: value - index * COUNT_FACTOR };
}

/**
 * The rank of the `percent` percentile among `total` values, by the nearest-rank definition:
 * ⌈percent × total / 100⌉, at least 1 — in integers, so JavaScript and SQL agree exactly.
 */
export function percentileRank(percent: number, total: number): number {
  return Math.max(1, Math.floor((percent * total + 99) / 100));
}

export class LogLinearHistogram {
  /** Count per bucket index (non-empty buckets only). */
  readonly #counts = new Map<number, number>();
  #total = 0;

  /** A histogram from stored packed elements. */
  static fromPacked(packed: Iterable<number | string>): LogLinearHistogram {
    const histogram = new LogLinearHistogram();
    for (const element of packed) {
      const { index, count } = unpackBucket(element);
      histogram.addToBucket(index, count);
    }
    return histogram;
  }

  /** Counts one value (or `count` equal values), in ms. */
  record(valueMs: number, count = 1): void {
    this.addToBucket(bucketIndex(valueMs), count);
  }

  addToBucket(index: number, count: number): void {
    if (!Number.isInteger(index) || index < 0 || index > MAX_BUCKET_INDEX) {
      throw new RangeError(`bucket index out of range: ${index}`);
    }
    if (count === 0) return;
    this.#counts.set(index, (this.#counts.get(index) ?? 0) + count);
    this.#total += count;
  }

  /** Adds every count of `other` into this histogram (commutative and associative). */
  merge(other: LogLinearHistogram): this {
    for (const [index, count] of other.#counts) this.addToBucket(index, count);
    return this;
  }

  get total(): number {
    return this.#total;
  }

  /** Non-empty buckets, in index order. */
  buckets(): Array<{ index: number; count: number }> {
    return [...this.#counts.entries()].sort(([a], [b]) => a - b).map(([index, count]) => ({ index, count }));
  }

  /** The `percent` percentile (0–100), in ms; null when empty. Within {@link MAX_RELATIVE_ERROR}. */
  percentile(percent: number): number | null {
    return percentileOfBuckets(this.buckets(), percent);
  }

  /** The storable form: non-empty buckets in index order, packed. */
  toPacked(): number[] {
    return this.buckets().map(({ index, count }) => packBucket(index, count));
  }
}

/**
 * The `percent` percentile of buckets sorted by index (as a merged range comes out of SQL), in ms;
 * null when they hold nothing.
 */
export function percentileOfBuckets(
  buckets: ReadonlyArray<{ index: number; count: number }>,
  percent: number,
): number | null {
  let total = 0;
  for (const bucket of buckets) total += bucket.count;
  if (total === 0) return null;
  const rank = percentileRank(percent, total);
  let running = 0;
  for (const bucket of buckets) {
    running += bucket.count;
    if (running >= rank) return bucketValue(bucket.index);
  }
  return bucketValue((buckets[buckets.length - 1] as { index: number }).index);
}

/**
 * Non-empty buckets in index order, as two parallel typed arrays: what GET /metrics keeps of a merged
 * histogram (compact in memory, and added up without a Map).
 */
export interface SparseBuckets {
  readonly index: Uint16Array;
  readonly count: Float64Array;
}

export const EMPTY_BUCKETS: SparseBuckets = { index: new Uint16Array(0), count: new Float64Array(0) };

const ZERO = '0'.charCodeAt(0);
const NINE = '9'.charCodeAt(0);

/**
 * A sum of histograms over the full bucket range (a dense array, ~23 KiB), fed with packed arrays as
 * node-postgres returns a `bigint[]` in text (`{e1,e2,…}`: parsed here digit by digit, with no array or
 * string per element) or with {@link SparseBuckets}; {@link take} gives the sum sparse and empties it.
 */
export class BucketSum {
  static readonly #free: BucketSum[] = [];

  /** A sum from a small free list (a new one zeroes 23 KiB): give it back with {@link release}. */
  static borrow(): BucketSum {
    return BucketSum.#free.pop() ?? new BucketSum();
  }

  /** Empties the sum and keeps it for the next {@link borrow}. */
  release(): void {
    this.take();
    if (BucketSum.#free.length < 64) BucketSum.#free.push(this);
  }

  readonly #counts = new Float64Array(MAX_BUCKET_INDEX + 1);
  readonly #touched: number[] = [];
  #total = 0;

  get total(): number {
    return this.#total;
  }

  add(index: number, count: number): void {
    if (count === 0) return;
    if (this.#counts[index] === 0) this.#touched.push(index);
    this.#counts[index] = (this.#counts[index] as number) + count;
    this.#total += count;
  }

  addSparse(buckets: SparseBuckets): void {
    // The hot loop of GET /metrics: locals rather than fields, and no call per element.
    const counts = this.#counts;
    const touched = this.#touched;
    const { index, count } = buckets;
    let total = 0;
    for (let i = 0; i < index.length; i++) {
      const at = index[i] as number;
      const add = count[i] as number;
      const before = counts[at] as number;
      if (before === 0 && add !== 0) touched.push(at);
      counts[at] = before + add;
      total += add;
    }
    this.#total += total;
  }

  /** Adds a packed `bigint[]` in PostgreSQL's text form; every element is below 2^53, so exact. */
  addPackedText(text: string): void {
    let value = 0;
    let inNumber = false;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= ZERO && code <= NINE) {
        value = value * 10 + (code - ZERO);
        inNumber = true;
      } else if (inNumber) {
        const index = Math.floor(value / COUNT_FACTOR);
        this.add(index, value - index * COUNT_FACTOR);
        value = 0;
        inNumber = false;
      }
    }
    if (inNumber) {
      const index = Math.floor(value / COUNT_FACTOR);
      this.add(index, value - index * COUNT_FACTOR);
    }
  }

  /** The sum as sparse buckets; the sum is then empty again. */
  take(): SparseBuckets {
    const touched = this.#touched.sort((a, b) => a - b);
    const index = new Uint16Array(touched.length);
    const count = new Float64Array(touched.length);
    for (let i = 0; i < touched.length; i++) {
      const at = touched[i] as number;
      index[i] = at;
      count[i] = this.#counts[at] as number;
      this.#counts[at] = 0;
    }
    touched.length = 0;
    this.#total = 0;
    return { index, count };
  }
}

/** The `percent` percentile of sparse buckets, in ms (nearest rank, as {@link percentileOfBuckets}). */
export function percentileOfSparse(buckets: SparseBuckets, percent: number): number | null {
  const { index, count } = buckets;
  let total = 0;
  for (let i = 0; i < count.length; i++) total += count[i] as number;
  if (total === 0) return null;
  const rank = percentileRank(percent, total);
  let running = 0;
  for (let i = 0; i < index.length; i++) {
    running += count[i] as number;
    if (running >= rank) return bucketValue(index[i] as number);
  }
  return bucketValue(index[index.length - 1] as number);
}
