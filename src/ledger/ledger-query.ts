/** Reads the loss ledger of a time window (every minute overlapping it) for GET /telemetry/ledger and /health. */
import type pg from 'pg';
import type { TimeRange } from '../time-range.ts';
import { type LedgerCountRow, type LedgerSummary, summarizeLedger } from './ledger-summary.ts';

export interface LedgerWindow extends LedgerSummary {
  from: string;
  to: string;
}

export class LedgerQuery {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async summary(range: TimeRange): Promise<LedgerWindow> {
    // `ahead`: per minute and type, what a consumer applied beyond the spooled count (the key of the table
    // finds the one spooled row of the same minute and type).
    const { rows } = await this.#pool.query<LedgerCountRow>({
      name: 'ledger.window',
      text: `SELECT l.stage, l.consumer, l.event_type, sum(l.events)::float8 AS events,
                    coalesce(sum(greatest(l.events - coalesce(s.events, 0), 0))
                             FILTER (WHERE l.stage = 'applied'), 0)::float8 AS ahead
             FROM telemetry_ledger l
             LEFT JOIN telemetry_ledger s
               ON l.stage = 'applied' AND s.minute = l.minute AND s.stage = 'spooled' AND s.consumer = ''
                  AND s.event_type = l.event_type
             WHERE l.minute >= date_trunc('minute', $1::timestamptz) AND l.minute < $2::timestamptz
             GROUP BY l.stage, l.consumer, l.event_type`,
      values: [range.from.toISOString(), range.to.toISOString()],
    });
    return { from: range.from.toISOString(), to: range.to.toISOString(), ...summarizeLedger(rows) };
  }
}
