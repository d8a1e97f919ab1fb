/**
 * A consumer's contribution to the loss ledger: the events it applied in a batch, counted per minute of
 * their timestamps and per type. Written in the batch's own transaction, so the count is exact — it
 * commits with the effect or not at all.
 */
import type { TelemetryEvent } from '../bus/event-schemas.ts';
import { type LedgerRow, minuteOf } from '../bus/ledger-counts.ts';

export function appliedRows(consumer: string, events: Iterable<TelemetryEvent | undefined>): LedgerRow[] {
  const rows = new Map<string, LedgerRow>();
  for (const event of events) {
    // Raw messages (the dead-letter archive's) are not events of the ledger.
    if (event === undefined) continue;
    const minuteMs = minuteOf(Date.parse(event.timestamp));
    const key = `${minuteMs}\t${event.event_type}`;
    const row = rows.get(key);
    if (row === undefined)
      rows.set(key, { minuteMs, stage: 'applied', consumer, eventType: event.event_type, events: 1 });
    else row.events++;
  }
  return [...rows.values()];
}
