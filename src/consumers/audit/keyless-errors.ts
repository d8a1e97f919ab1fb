/**
 * What the audit trail keeps of keyless client errors (docs/reference/security.md, "What the audit trail
 * keeps"): an `api.error` with a 4xx status and no user (the request had no valid key) is a record of
 * the chain {@link KEYLESS_CHAIN_KEY} for `AUDIT_KEYLESS_RETENTION_DAYS`, then only a count (pruned by
 * ./keyless-pruner.ts). Anyone can send such requests, so they must not grow the trail for ever; model
 * events, filters, authenticated errors and 5xx are kept one record each, for ever.
 */
import type { TelemetryEvent } from '../../bus/event-schemas.ts';

/** The chain of keyless client errors: '~' cannot occur in a model id, so no model takes it. */
export const KEYLESS_CHAIN_KEY = '~keyless';

/** A client error (4xx) of a request without a valid key. */
export function isKeylessClientError(event: TelemetryEvent): boolean {
  if (event.event_type !== 'api.error' || event.user_id !== null) return false;
  const status = event.metadata.response_code;
  return status >= 400 && status < 500;
}

/**
 * A pruning waits this long past the retention before it prunes a record: an appender refuses keyless
 * errors older than the retention, and a transaction that started up to this long before the pruning's
 * still sees the older limit (clocks of the worker and of PostgreSQL may differ by as much, too).
 */
export const KEYLESS_PRUNE_MARGIN_MS = 3_600_000;

const DAY_MS = 86_400_000;

/**
 * The oldest time a keyless client error may have occurred and still be recorded: one older may have
 * been pruned already (a copy redelivered, or a dead letter replayed, after the retention), so it is not
 * recorded, nor counted, again. Undefined: kept for ever (retention 0), nothing is refused.
 */
export function keylessRecordedSince(retentionDays: number, nowMs: number): number | undefined {
  return retentionDays > 0 ? nowMs - retentionDays * DAY_MS : undefined;
}

/** The prunings' cutoff: every keyless record that occurred before it is pruned. */
export function keylessPruneCutoff(retentionDays: number, nowMs: number): Date {
  return new Date(nowMs - retentionDays * DAY_MS - KEYLESS_PRUNE_MARGIN_MS);
}
