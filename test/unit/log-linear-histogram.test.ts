/**
 * The log-linear histogram: every value's bucket representative is within the stated relative error,
 * merging is associative and commutative, the packed form round-trips, and percentiles of merged
 * histograms are within the error of the exact nearest-rank percentiles of the raw values.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  BucketSum,
  bucketBounds,
  bucketIndex,
  bucketValue,
  HISTOGRAM_LAYOUT,
  LogLinearHistogram,
  MAX_BUCKET_INDEX,
  MAX_RELATIVE_ERROR,
  packBucket,
  percentileOfSparse,
  percentileRank,
  unpackBucket,
} from '../../src/log-linear-histogram.ts';

const MIN = 2 ** HISTOGRAM_LAYOUT.minExponent;
const MAX = 2 ** (HISTOGRAM_LAYOUT.maxExponent + 1);

/** Durations from 1 µs to 2 years, spread evenly over the exponents (as real latencies are). */
const duration = fc
  .double({ min: Math.log2(MIN), max: Math.log2(MAX), noNaN: true, maxExcluded: true })
  .map((exponent) => 2 ** exponent)
  .filter((value) => value >= MIN && value < MAX);

/** The exact nearest-rank percentile of raw values. */
function exactPercentile(values: readonly number[], percent: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[percentileRank(percent, sorted.length) - 1] as number;
}

test('the error bound is under 1% and is 1 / (2 × 64 + 1)', () => {
  assert.equal(HISTOGRAM_LAYOUT.subBuckets, 64);
  assert.equal(MAX_RELATIVE_ERROR, 1 / 129);
  assert.ok(MAX_RELATIVE_ERROR < 0.01);
});

test('every value lies in its bucket, and the representative is within the relative error', () => {
  fc.assert(
    fc.property(duration, (value) => {
      const index = bucketIndex(value);
      const { lower, upper } = bucketBounds(index);
      assert.ok(lower <= value && value < upper, `${value} not in [${lower}, ${upper}) of bucket ${index}`);
      const error = Math.abs(bucketValue(index) - value) / value;
      assert.ok(error <= MAX_RELATIVE_ERROR * (1 + 1e-12), `relative error ${error} for ${value}`);
    }),
    { numRuns: 20_000 },
  );
});

test('bucket boundaries: powers of two and the values just below them, both ends of the range', () => {
  for (let exponent = HISTOGRAM_LAYOUT.minExponent; exponent <= HISTOGRAM_LAYOUT.maxExponent; exponent++) {
    const power = 2 ** exponent;
    const index = bucketIndex(power);
    assert.equal(bucketBounds(index).lower, power, `2^${exponent} starts its bucket`);
    const below = power * (1 - Number.EPSILON);
    if (below >= MIN) assert.equal(bucketIndex(below), index - 1, `just below 2^${exponent}`);
  }
  assert.equal(bucketIndex(0), 0);
  assert.equal(bucketIndex(-5), 0);
  assert.equal(bucketIndex(MIN / 2), 0);
  assert.equal(bucketValue(0), 0);
  assert.equal(bucketIndex(MIN), 1);
  assert.equal(bucketIndex(MAX * (1 - Number.EPSILON)), MAX_BUCKET_INDEX);
  assert.equal(bucketIndex(MAX * 10), MAX_BUCKET_INDEX);
  assert.equal(bucketIndex(Number.NaN), 0);
});

test('buckets are contiguous and increasing over the whole range', () => {
  for (let index = 1; index < MAX_BUCKET_INDEX; index++) {
    assert.equal(bucketBounds(index).upper, bucketBounds(index + 1).lower, `bucket ${index}`);
    assert.equal(bucketIndex(bucketBounds(index).lower), index);
  }
});

test('packed elements round-trip and stay exact JavaScript integers', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: MAX_BUCKET_INDEX }),
      fc.integer({ min: 1, max: 2 ** 40 - 1 }),
      (index, count) => {
        const packed = packBucket(index, count);
        assert.ok(Number.isSafeInteger(packed));
        assert.deepEqual(unpackBucket(packed), { index, count });
        assert.deepEqual(unpackBucket(String(packed)), { index, count });
      },
    ),
  );
  assert.throws(() => packBucket(1, 0), RangeError);
  assert.throws(() => packBucket(1, 2 ** 40), RangeError);
});

const histogramOf = (values: readonly number[]) => {
  const histogram = new LogLinearHistogram();
  for (const value of values) histogram.record(value);
  return histogram;
};

test('merge is associative and commutative, and equals recording everything in one', () => {
  const values = fc.array(duration, { maxLength: 200 });
  fc.assert(
    fc.property(values, values, values, (a, b, c) => {
      const left = histogramOf(a).merge(histogramOf(b)).merge(histogramOf(c));
      const right = histogramOf(a).merge(histogramOf(b).merge(histogramOf(c)));
      const swapped = histogramOf(c).merge(histogramOf(a)).merge(histogramOf(b));
      const all = histogramOf([...a, ...b, ...c]);
      assert.deepEqual(left.toPacked(), right.toPacked());
      assert.deepEqual(left.toPacked(), swapped.toPacked());
      assert.deepEqual(left.toPacked(), all.toPacked());
      assert.equal(left.total, a.length + b.length + c.length);
      assert.deepEqual(LogLinearHistogram.fromPacked(left.toPacked()).toPacked(), left.toPacked());
    }),
    { numRuns: 300 },
  );
});

test('p50/p95/p99 of merged histograms are within 1% of the exact percentiles of the raw values', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(duration, { minLength: 1, maxLength: 300 }), { minLength: 1, maxLength: 8 }),
      (parts) => {
        const merged = new LogLinearHistogram();
        for (const part of parts) merged.merge(LogLinearHistogram.fromPacked(histogramOf(part).toPacked()));
        const raw = parts.flat();
        for (const percent of [50, 95, 99, 100]) {
          const exact = exactPercentile(raw, percent);
          const estimate = merged.percentile(percent) as number;
          const error = Math.abs(estimate - exact) / exact;
          assert.ok(
            error <= 0.01,
            `p${percent}: ${estimate} vs exact ${exact} (${(100 * error).toFixed(3)}%)`,
          );
        }
      },
    ),
    { numRuns: 500 },
  );
});

test('percentiles: nearest rank, empty histogram, zero durations', () => {
  assert.equal(new LogLinearHistogram().percentile(50), null);
  assert.equal(percentileRank(95, 20), 19);
  assert.equal(percentileRank(95, 1), 1);
  assert.equal(percentileRank(99, 100), 99);
  assert.equal(percentileRank(50, 3), 2);
  const zeros = histogramOf([0, 0, 0, 10]);
  assert.equal(zeros.percentile(50), 0);
  assert.ok(Math.abs((zeros.percentile(99) as number) - 10) / 10 <= MAX_RELATIVE_ERROR);
});

test('BucketSum adds packed text (as PostgreSQL sends a bigint[]) and sparse buckets exactly', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { maxLength: 50 }), { maxLength: 8 }),
      (parts) => {
        const expected = new LogLinearHistogram();
        const sum = BucketSum.borrow();
        for (const [i, values] of parts.entries()) {
          const histogram = new LogLinearHistogram();
          for (const value of values) histogram.record(value);
          expected.merge(histogram);
          if (i % 2 === 0) sum.addPackedText(`{${histogram.toPacked().join(',')}}`);
          else sum.addSparse(toSparse(histogram));
        }
        const sparse = sum.take();
        sum.release();
        assert.deepEqual(
          [...sparse.index].map((index, i) => ({ index, count: sparse.count[i] })),
          expected.buckets(),
        );
        for (const percent of [50, 95, 99]) {
          assert.equal(percentileOfSparse(sparse, percent), expected.percentile(percent));
        }
      },
    ),
  );
});

function toSparse(histogram: LogLinearHistogram) {
  const buckets = histogram.buckets();
  return {
    index: Uint16Array.from(buckets.map((bucket) => bucket.index)),
    count: Float64Array.from(buckets.map((bucket) => bucket.count)),
  };
}
