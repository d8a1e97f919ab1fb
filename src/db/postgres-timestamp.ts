/**
 * Which date-times may be bound as a `timestamptz`: a real calendar date (no 30 February, no hour 25) whose
 * instant, in UTC, lies in the years 1 to 9999. PostgreSQL itself accepts 4713 BC to 294276 AD, but it
 * refuses year 0 written as `0000` — the form JavaScript's toISOString gives — and JavaScript writes years
 * after 9999 as `+010000`, which it refuses too. So every date from a request, a cursor or a filter is
 * checked here before it reaches SQL: a date PostgreSQL would refuse is a 400 naming the field, not a 500.
 */
import { fullFormats } from 'ajv-formats/dist/formats.js';

/** 0001-01-01T00:00:00Z, the first instant accepted. */
export const EARLIEST_INSTANT_MS = Date.parse('0001-01-01T00:00:00Z');
/** 10000-01-01T00:00:00Z, the first instant refused. */
export const INSTANT_LIMIT_MS = Date.parse('+010000-01-01T00:00:00Z');

const dateTimeFormat = fullFormats['date-time'] as { validate: (text: string) => boolean };

/** Whether an instant (ms since the epoch) lies in the range {@link isStorableDateTime} accepts. */
export function isStorableInstant(ms: number): boolean {
  return Number.isFinite(ms) && ms >= EARLIEST_INSTANT_MS && ms < INSTANT_LIMIT_MS;
}

/**
 * Whether `text` is an RFC 3339 date-time with an offset (`2025-01-15T10:00:00Z`, `…+02:00`) of a day the
 * calendar has, at an instant PostgreSQL stores and JavaScript writes back in the same form.
 */
export function isStorableDateTime(text: string): boolean {
  return dateTimeFormat.validate(text) && isStorableInstant(Date.parse(text));
}

/** What a client is told when a date-time fails {@link isStorableDateTime}. */
export const STORABLE_DATE_TIME_RULE =
  'must be an ISO-8601 date-time with an offset (e.g. 2025-01-15T10:00:00Z) of a real calendar date, ' +
  'between the years 1 and 9999';
