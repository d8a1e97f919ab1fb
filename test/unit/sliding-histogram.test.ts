/**
 * The sliding window of percentiles: nearest-rank percentiles of what the window holds (within the
 * log-linear error), values leaving it exactly when their second falls out, a slot reused for a later
 * second forgetting the earlier one, and random streams agreeing with the exact percentiles of the
 * values still in the window.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MAX_RELATIVE_ERROR } from '../../src/log-linear-histogram.ts';
import { SlidingHistogram } from '../../src/sliding-histogram.ts';

const T0 = 1_765_000_000_000;

function near(actual: number | null, expected: number, what: string): void {
  assert.ok(actual !== null, `${what} is null`);
  assert.ok(
    Math.abs(actual - expected) <= expected * MAX_RELATIVE_ERROR * (1 + 1e-9),
    `${what}: ${actual} is not within ${MAX_RELATIVE_ERROR} of ${expected}`,
  );
}

/** The nearest-rank percentile of raw values. */
function exact(values: number[], percent: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil((percent * sorted.length) / 100)) - 1] as number;
}

test('an empty window has no percentiles', () => {
  const window = new SlidingHistogram();
  assert.deepEqual(window.percentiles(T0), {
    window_seconds: 60,
    count: 0,
    p50_ms: null,
    p95_ms: null,
    p99_ms: null,
  });
});

test('p50, p95 and p99 of 1…100 ms recorded over a few seconds are the nearest-rank ones', () => {
  const window = new SlidingHistogram();
  for (let ms = 1; ms <= 100; ms++) window.record(ms, T0 + ms * 37);
  const now = window.percentiles(T0 + 4000);
  assert.equal(now.count, 100);
  near(now.p50_ms, 50, 'p50');
  near(now.p95_ms, 95, 'p95');
  near(now.p99_ms, 99, 'p99');
});

test('a value leaves the window when its second is 60 seconds old, not before', () => {
  const window = new SlidingHistogram({ seconds: 60 });
  window.record(500, T0); // second T0/1000
  window.record(2, T0 + 30_000);
  assert.equal(window.percentiles(T0 + 59_999).count, 2);
  near(window.percentiles(T0 + 59_999).p99_ms, 500, 'p99 with the slow one');
  const later = window.percentiles(T0 + 60_000);
  assert.equal(later.count, 1, 'the first second has left the window');
  near(later.p99_ms, 2, 'p99 without it');
  assert.equal(window.percentiles(T0 + 90_000).count, 0, 'all gone after a quiet minute');
});

test('a slot reused a minute later forgets what it held', () => {
  const window = new SlidingHistogram({ seconds: 3 });
  window.record(100, T0);
  window.record(100, T0 + 10);
  window.record(7, T0 + 3000); // same slot, three seconds on
  const now = window.percentiles(T0 + 3000);
  assert.equal(now.count, 1);
  near(now.p50_ms, 7, 'p50');
});

test('0 ms (confirmed within the emit millisecond) is a value like the others', () => {
  const window = new SlidingHistogram();
  for (let i = 0; i < 90; i++) window.record(0, T0);
  for (let i = 0; i < 10; i++) window.record(3, T0);
  const now = window.percentiles(T0);
  assert.equal(now.p50_ms, 0);
  near(now.p95_ms, 3, 'p95');
});

test('a window of zero or fractional seconds is refused', () => {
  assert.throws(() => new SlidingHistogram({ seconds: 0 }), RangeError);
  assert.throws(() => new SlidingHistogram({ seconds: 1.5 }), RangeError);
});

test('random streams: the percentiles are those of the values whose second is in the window', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          atMs: fc.integer({ min: 0, max: 20_000 }),
          valueMs: fc.integer({ min: 1, max: 10_000 }),
        }),
        {
          minLength: 1,
          maxLength: 300,
        },
      ),
      fc.integer({ min: 1, max: 10 }),
      (records, seconds) => {
        const sorted = [...records].sort((a, b) => a.atMs - b.atMs);
        const window = new SlidingHistogram({ seconds });
        for (const { atMs, valueMs } of sorted) window.record(valueMs, T0 + atMs);
        const nowMs = T0 + (sorted.at(-1)?.atMs ?? 0);
        const nowSecond = Math.floor(nowMs / 1000);
        const kept = sorted
          .filter(({ atMs }) => Math.floor((T0 + atMs) / 1000) > nowSecond - seconds)
          .map(({ valueMs }) => valueMs);
        const result = window.percentiles(nowMs);
        assert.equal(result.count, kept.length);
        for (const percent of [50, 95, 99] as const) {
          near(result[`p${percent}_ms`], exact(kept, percent), `p${percent}`);
        }
      },
    ),
    { numRuns: 200 },
  );
});
