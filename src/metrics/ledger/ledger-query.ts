/** Reads the loss ledger of a time window (every minute overlapping it) for GET /telemetry/ledger and /health. */
import type pg from 'pg';
import type { TimeRange } from '../../consumers/analytics/analytics-query.ts';
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
    const { rows } = await this.#pool.query<LedgerCountRow>({
      name: 'ledger.window',
      text: `SELECT stage, consumer, event_type, sum(events)::float8 AS events
             FROM telemetry_ledger
             WHERE minute >= date_trunc('minute', $1::timestamptz) AND minute < $2::timestamptz
             GROUP BY stage, consumer, event_type`,
      values: [range.from.toISOString(), range.to.toISOString()],
    });
    return { from: range.from.toISOString(), to: range.to.toISOString(), ...summarizeLedger(rows) };
  }
}
