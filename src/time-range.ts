/**
 * The time range of a read (`from`, `to` as ISO-8601 instants), parsed strictly at the edge: shared by
 * `GET /analytics/*`, the ledger and `GET /metrics`, so it sits below all of them.
 */
import { ValidationError } from './errors.ts';

export const TIME_RANGE_LIMITS = {
  /** Range when neither end is given, ending now. */
  defaultRangeMs: 24 * 3_600_000,
  /** Longest range, in days: bounds the rows one request aggregates. */
  maxRangeDays: 366,
} as const;

export interface TimeRange {
  from: Date;
  to: Date;
}

/**
 * An ISO-8601 date (`2025-01-15`, midnight UTC) or date-time with a UTC offset (`2025-01-15T10:00Z`,
 * `…T10:00:00.000+02:00`). A date-time without an offset is refused: it would mean the server's zone.
 */
const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|([+-])(\d{2}):(\d{2})))?$/;

/** Parses an ISO-8601 instant strictly (no 30 February, no hour 24); throws a ValidationError naming `field`. */
export function parseInstant(field: string, text: string): Date {
  const match = ISO_8601.exec(text);
  const invalid = () =>
    new ValidationError(
      field,
      `${field} must be an ISO-8601 date or date-time with a UTC offset, e.g. 2025-01-15T10:00:00Z` +
        (text.includes(' ') ? " (in a URL, '+' must be sent as %2B)" : ''),
    );
  if (match === null) throw invalid();
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', _zone, sign, oh = '0', om = '0'] = match;
  type Fields = [number, number, number, number, number, number];
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as Fields;
  const local = Date.UTC(
    year,
    month - 1,
    day,
    hour,
    minute,
    second,
    Number(fraction.padEnd(3, '0').slice(0, 3)),
  );
  const check = new Date(local);
  if (
    check.getUTCFullYear() !== year ||
    check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59 ||
    Number(oh) > 23 ||
    Number(om) > 59
  ) {
    throw invalid();
  }
  if (year < 1970) throw new ValidationError(field, `${field} must not be before 1970`);
  const offsetMs = (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om)) * 60_000;
  return new Date(local - offsetMs);
}

/**
 * The range of a request: `from` and `to` as given, `to` defaulting to now and `from` to 24 h before `to`.
 * `from` must be before `to`, and the range at most {@link TIME_RANGE_LIMITS.maxRangeDays} days.
 */
export function resolveTimeRange(input: { from?: string; to?: string }, now: Date = new Date()): TimeRange {
  const to = input.to === undefined ? now : parseInstant('to', input.to);
  const from =
    input.from === undefined
      ? new Date(to.getTime() - TIME_RANGE_LIMITS.defaultRangeMs)
      : parseInstant('from', input.from);
  if (from.getTime() >= to.getTime()) {
    throw new ValidationError(
      'from',
      `from (${from.toISOString()}) must be before to (${to.toISOString()}${input.to === undefined ? ', now' : ''})`,
    );
  }
  if (to.getTime() - from.getTime() > TIME_RANGE_LIMITS.maxRangeDays * 86_400_000) {
    throw new ValidationError(
      'from',
      `the range from … to must not exceed ${TIME_RANGE_LIMITS.maxRangeDays} days`,
    );
  }
  return { from, to };
}
