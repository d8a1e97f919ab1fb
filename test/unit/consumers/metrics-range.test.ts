/** Resolving a metrics range (relative and ISO instants, defaults, limits) and cutting it into rollup segments. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { GRANULARITY_MS } from '../../../src/consumers/metrics/metrics-granularity.ts';
import {
  defaultBucket,
  parseMetricsInstant,
  planSegments,
  resolveMetricsRange,
} from '../../../src/consumers/metrics/metrics-range.ts';
import { AppError } from '../../../src/errors.ts';

const NOW = new Date('2026-11-28T11:38:27.500Z');
const at = (iso: string) => new Date(iso).getTime();

function fieldOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof AppError, String(error));
    assert.equal(error.code, 'VALIDATION_FAILED');
    return error.field;
  }
  assert.fail('expected a validation error');
}

describe('parseMetricsInstant', () => {
  test('relative instants count back from now; now is now', () => {
    assert.equal(parseMetricsInstant('from', '-24h', NOW).getTime(), NOW.getTime() - 86_400_000);
    assert.equal(parseMetricsInstant('from', '-30m', NOW).getTime(), NOW.getTime() - 1_800_000);
    assert.equal(parseMetricsInstant('from', '-7d', NOW).getTime(), NOW.getTime() - 7 * 86_400_000);
    assert.equal(parseMetricsInstant('from', '-2w', NOW).getTime(), NOW.getTime() - 14 * 86_400_000);
    assert.equal(parseMetricsInstant('from', '-90s', NOW).getTime(), NOW.getTime() - 90_000);
    assert.equal(parseMetricsInstant('to', 'now', NOW), NOW);
  });
  test('ISO-8601 with an offset', () => {
    assert.equal(
      parseMetricsInstant('from', '2026-11-28T10:00:00+01:00', NOW).toISOString(),
      '2026-11-28T09:00:00.000Z',
    );
    assert.equal(parseMetricsInstant('from', '2026-11-28', NOW).toISOString(), '2026-11-28T00:00:00.000Z');
  });
  test('anything else names the field', () => {
    for (const text of ['-24', '24h', '-1y', '+1h', '-h', '2026-02-30', '2026-11-28T10:00:00', 'yesterday']) {
      assert.equal(
        fieldOf(() => parseMetricsInstant('to', text, NOW)),
        'to',
        text,
      );
    }
  });
});

describe('resolveMetricsRange', () => {
  const resolve = (input: Record<string, string>, retentionDays = 400) =>
    resolveMetricsRange(input, { retentionDays, now: NOW });

  test('defaults: the last 24 h, rounded out to whole minutes, hourly buckets', () => {
    const range = resolve({});
    assert.equal(range.from.toISOString(), '2026-11-27T11:38:00.000Z');
    assert.equal(range.to.toISOString(), '2026-11-28T11:39:00.000Z');
    assert.equal(range.bucket, '1h');
  });
  test('the default bucket follows the range', () => {
    assert.equal(defaultBucket(6 * 3_600_000), '1m');
    assert.equal(defaultBucket(6 * 3_600_000 + 60_000), '1h');
    assert.equal(defaultBucket(14 * 86_400_000), '1h');
    assert.equal(defaultBucket(30 * 86_400_000), '1d');
    assert.equal(resolve({ from: '-30d' }).bucket, '1d');
  });
  test('bad input names its field', () => {
    assert.equal(
      fieldOf(() => resolve({ from: '-1h', to: '-2h' })),
      'from',
    );
    assert.equal(
      fieldOf(() => resolve({ from: '-1h', to: '-1h' })),
      'from',
    );
    assert.equal(
      fieldOf(() => resolve({ bucket: '5m' })),
      'bucket',
    );
    assert.equal(
      fieldOf(() => resolve({ from: '-8d' }, 7)),
      'from',
    );
    assert.equal(
      fieldOf(() => resolve({ from: '-2d', bucket: '1m' })),
      'bucket',
    );
    assert.equal(
      fieldOf(() => resolve({ to: '2027-01-01T00:00:00Z' })),
      'to',
    );
    assert.equal(
      fieldOf(() => resolve({ from: 'soon' })),
      'from',
    );
  });
  test('the retention and the series length limits are inclusive', () => {
    assert.equal(resolve({ from: '-7d' }, 7).from.toISOString(), '2026-11-21T11:38:00.000Z');
    assert.equal(resolve({ from: '-1499m', bucket: '1m' }).bucket, '1m'); // 1,500 minutes: the most
    assert.equal(
      fieldOf(() => resolve({ from: '-1501m', bucket: '1m' })),
      'bucket',
    );
  });
});

describe('planSegments', () => {
  test('days in the middle, hours beside, minutes at the ends', () => {
    const segments = planSegments(at('2026-11-01T22:17:00Z'), at('2026-11-04T01:30:00Z'), '1d');
    assert.deepEqual(
      segments.map((s) => [s.granularity, new Date(s.from).toISOString(), new Date(s.to).toISOString()]),
      [
        ['1m', '2026-11-01T22:17:00.000Z', '2026-11-01T23:00:00.000Z'],
        ['1h', '2026-11-01T23:00:00.000Z', '2026-11-02T00:00:00.000Z'],
        ['1d', '2026-11-02T00:00:00.000Z', '2026-11-04T00:00:00.000Z'],
        ['1h', '2026-11-04T00:00:00.000Z', '2026-11-04T01:00:00.000Z'],
        ['1m', '2026-11-04T01:00:00.000Z', '2026-11-04T01:30:00.000Z'],
      ],
    );
  });
  test('never coarser than asked', () => {
    const segments = planSegments(at('2026-11-01T22:17:00Z'), at('2026-11-04T01:30:00Z'), '1h');
    assert.ok(segments.every((segment) => segment.granularity !== '1d'));
    assert.deepEqual(planSegments(0, 3_600_000, '1m'), [{ granularity: '1m', from: 0, to: 3_600_000 }]);
  });
  test('property: segments tile the range exactly, aligned to their granularity', () => {
    const minute = fc
      .integer({ min: 0, max: 60 * 24 * 90 })
      .map((m) => at('2026-01-01T00:00:00Z') + m * 60_000);
    fc.assert(
      fc.property(minute, minute, fc.constantFrom('1m', '1h', '1d' as const), (a, b, coarsest) => {
        const [from, to] = a <= b ? [a, b] : [b, a];
        const segments = planSegments(from, to, coarsest);
        let cursor = from;
        for (const segment of segments) {
          assert.equal(segment.from, cursor);
          assert.ok(segment.to > segment.from);
          const size = GRANULARITY_MS[segment.granularity];
          assert.equal(segment.from % size, 0);
          assert.equal(segment.to % size, 0);
          cursor = segment.to;
        }
        assert.equal(cursor, from === to ? from : to);
        assert.ok(segments.length <= 5);
      }),
      { numRuns: 2000 },
    );
  });
});
