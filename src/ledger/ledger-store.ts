/**
 * Adds ledger rows to `telemetry_ledger`: one set-based upsert, rows in key order so that concurrent
 * writers (several API processes, several consumers) take the row locks in the same order. A consumer's
 * rows go in its batch's one statement ({@link ledgerWrite}); the API's on their own ({@link addLedgerRows}).
 */
import type pg from 'pg';
import type { LedgerRow } from '../bus/ledger-counts.ts';
import type { BatchWrite } from '../db/batch-statement.ts';

const UPSERT = `INSERT INTO telemetry_ledger AS t (minute, stage, consumer, event_type, events)
           SELECT to_timestamp(minute_ms / 1000.0), stage, consumer, event_type, events
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY
                AS r(minute_ms, stage, consumer, event_type, events, n)
           ORDER BY n
           ON CONFLICT (minute, stage, consumer, event_type) DO UPDATE SET events = t.events + EXCLUDED.events`;

/** The upsert of `rows` as a write of a batch statement (src/db/batch-statement.ts). */
export function ledgerWrite(rows: readonly LedgerRow[]): BatchWrite {
  const sorted = [...rows].sort(
    (a, b) =>
      a.minuteMs - b.minuteMs ||
      compare(a.stage, b.stage) ||
      compare(a.consumer, b.consumer) ||
      compare(a.eventType, b.eventType),
  );
  return {
    name: 'ledger',
    text: UPSERT,
    values: [
      sorted.map((row) => row.minuteMs),
      sorted.map((row) => row.stage),
      sorted.map((row) => row.consumer),
      sorted.map((row) => row.eventType),
      sorted.map((row) => row.events),
    ],
  };
}

export async function addLedgerRows(client: pg.ClientBase | pg.Pool, rows: LedgerRow[]): Promise<void> {
  if (rows.length === 0) return;
  const { text, values } = ledgerWrite(rows);
  await client.query({ name: 'ledger.add', text, values });
}

/** Byte order, as the table's "C" collation sorts. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
