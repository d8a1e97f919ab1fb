/**
 * The time range of a metrics request, and how it is read from the rollups: `from` and `to` as ISO-8601
 * or relative to now (`-24h`), rounded out to whole minutes (the rollups are per minute: every minute
 * overlapping the range counts), checked against the retention, and cut into whole days, whole hours
 * and ragged-end minutes so that a long range reads few rows.
 */

import { ValidationError } from '../../errors.ts';
import { parseInstant } from '../../time-range.ts';
import { GRANULARITIES, GRANULARITY_MS, type Granularity, isGranularity } from './metrics-granularity.ts';

export const METRICS_RANGE_LIMITS = {
  /** Range when `from` is not given: this long before `to`. */
  defaultRangeMs: 24 * 3_600_000,
  /** Points in a time series, at most: a longer range needs a larger bucket. */
  maxSeriesPoints: 1500,
  /** How far after now `to` may be. */
  maxFutureMs: 86_400_000,
} as const;

const RELATIVE = /^-(\d{1,7})(s|m|h|d|w)$/;
const UNIT_MS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/** `now`, a relative instant (`-30m`, `-24h`, `-7d`, `-2w`, `-90s`), or an ISO-8601 date or date-time. */
export function parseMetricsInstant(field: string, text: string, now: Date): Date {
  if (text === 'now') return now;
  const relative = RELATIVE.exec(text);
  if (relative !== null) {
    return new Date(now.getTime() - Number(relative[1]) * (UNIT_MS[relative[2] as string] as number));
  }
  try {
    return parseInstant(field, text);
  } catch (error) {
    throw new ValidationError(
      field,
      `${field} must be now, a time relative to now (-30m, -24h, -7d; units s, m, h, d, w), or an ISO-8601 ` +
        'date or date-time with a UTC offset, e.g. 2025-01-15T10:00:00Z' +
        (text.includes(' ') ? " (in a URL, '+' must be sent as %2B)" : ''),
      error,
    );
  }
}

export interface MetricsRange {
  /** Start of the first minute counted. */
  from: Date;
  /** End of the last minute counted (exclusive). */
  to: Date;
  bucket: Granularity;
  /** When the range was resolved: relative instants are relative to it. */
  now: Date;
}

export interface MetricsRangeInput {
  from?: string | undefined;
  to?: string | undefined;
  bucket?: string | undefined;
}

const floorTo = (ms: number, size: number) => ms - (((ms % size) + size) % size);
const ceilTo = (ms: number, size: number) => {
  const floor = floorTo(ms, size);
  return floor === ms ? ms : floor + size;
};

/** The bucket a range gets when none is asked for: at most a few hundred points. */
export function defaultBucket(rangeMs: number): Granularity {
  if (rangeMs <= 6 * 3_600_000) return '1m';
  if (rangeMs <= 14 * 86_400_000) return '1h';
  return '1d';
}

/**
 * Resolves and checks a request's range. `to` defaults to now, `from` to 24 h before `to`; `from` must be
 * before `to`, within the retention (`retentionDays` back from now), and the series at most
 * {@link METRICS_RANGE_LIMITS.maxSeriesPoints} buckets long. Errors name the field at fault.
 */
export function resolveMetricsRange(
  input: MetricsRangeInput,
  options: { retentionDays: number; now?: Date },
): MetricsRange {
  const now = options.now ?? new Date();
  const to = input.to === undefined ? now : parseMetricsInstant('to', input.to, now);
  const from =
    input.from === undefined
      ? new Date(to.getTime() - METRICS_RANGE_LIMITS.defaultRangeMs)
      : parseMetricsInstant('from', input.from, now);
  if (input.bucket !== undefined && !isGranularity(input.bucket)) {
    throw new ValidationError('bucket', `bucket must be one of: ${GRANULARITIES.join(', ')}`);
  }
  if (from.getTime() >= to.getTime()) {
    throw new ValidationError(
      'from',
      `from (${from.toISOString()}) must be before to (${to.toISOString()}${input.to === undefined ? ', now' : ''})`,
    );
  }
  if (to.getTime() > now.getTime() + METRICS_RANGE_LIMITS.maxFutureMs) {
    throw new ValidationError('to', 'to must not be more than a day after now');
  }
  const minute = GRANULARITY_MS['1m'];
  const alignedFrom = floorTo(from.getTime(), minute);
  const alignedTo = ceilTo(to.getTime(), minute);
  const oldest = floorTo(now.getTime() - options.retentionDays * 86_400_000, minute);
  if (alignedFrom < oldest) {
    throw new ValidationError(
      'from',
      `from must not be before ${new Date(oldest).toISOString()}: metrics are kept ${options.retentionDays} days (METRICS_ROLLUP_RETENTION_DAYS)`,
    );
  }
  const bucket = input.bucket ?? defaultBucket(alignedTo - alignedFrom);
  const size = GRANULARITY_MS[bucket];
  const points = (ceilTo(alignedTo, size) - floorTo(alignedFrom, size)) / size;
  if (points > METRICS_RANGE_LIMITS.maxSeriesPoints) {
    throw new ValidationError(
      'bucket',
      `bucket ${bucket} makes ${points} points over this range; at most ${METRICS_RANGE_LIMITS.maxSeriesPoints}: use a larger bucket`,
    );
  }
  return { from: new Date(alignedFrom), to: new Date(alignedTo), bucket, now };
}

/** A part of a range read from one granularity of rollups: buckets starting in [from, to). */
export interface RangeSegment {
  granularity: Granularity;
  from: number;
  to: number;
}

/**
 * Cuts a minute-aligned range [from, to) into the fewest rollup buckets, none coarser than `coarsest`:
 * whole days in the middle, whole hours beside them, minutes at the ragged ends. Each event is in
 * exactly one bucket read, so sums over the segments are exact.
 */
export function planSegments(from: number, to: number, coarsest: Granularity): RangeSegment[] {
  if (from >= to) return [];
  if (coarsest === '1m') return [{ granularity: '1m', from, to }];
  const finer: Granularity = coarsest === '1d' ? '1h' : '1m';
  const size = GRANULARITY_MS[coarsest];
  const start = ceilTo(from, size);
  const end = floorTo(to, size);
  if (start >= end) return planSegments(from, to, finer);
  return [
    ...planSegments(from, start, finer),
    { granularity: coarsest, from: start, to: end },
    ...planSegments(end, to, finer),
  ];
}
