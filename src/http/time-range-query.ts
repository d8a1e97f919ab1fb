/**
 * The `from` and `to` query parameters of the routes that read a time range (analytics, the ledger).
 */
import { Type } from 'typebox';

// Parsed by resolveTimeRange rather than by a `format`, so that 30 February or a date-time without an
// offset is a 400 naming the field too, with one message for every bad date.
const Instant = (end: string, fallback: string, unit: string) =>
  Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      description:
        `${end} of the range: an ISO-8601 date (midnight UTC) or date-time with an offset ` +
        `(in a URL, send '+' as %2B); default ${fallback}. Counts are per ${unit}: every ${unit} ` +
        'overlapping the range counts.',
      examples: ['2025-01-15T10:00:00Z'],
    }),
  );

/** `from` and `to` over counts kept per `unit` (hour, minute). */
export const rangeFields = (unit: 'hour' | 'minute') => ({
  from: Instant('Start (inclusive)', '24 h before to', unit),
  to: Instant('End (exclusive)', 'now', unit),
});
