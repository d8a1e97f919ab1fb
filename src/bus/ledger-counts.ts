/**
 * Counts of events per stage, minute and event type, kept in memory until written to the ledger table.
 * The API process counts here on every emit and confirm, so adding is a Map lookup and nothing more.
 */
export type ApiStage = 'emitted' | 'spooled' | 'confirmed';
export type LedgerStage = ApiStage | 'applied';

export interface LedgerRow {
  /** Start of the minute of the events' timestamps, epoch ms. */
  minuteMs: number;
  stage: LedgerStage;
  /** The consumer, for `applied`; '' otherwise. */
  consumer: string;
  eventType: string;
  events: number;
}

const MINUTE_MS = 60_000;

export function minuteOf(timestampMs: number): number {
  return timestampMs - (((timestampMs % MINUTE_MS) + MINUTE_MS) % MINUTE_MS);
}

export class LedgerCounts {
  #counts = new Map<string, number>();

  /** Counts `events` events of `eventType`, timestamped `timestampMs`, as having reached `stage`. */
  add(stage: ApiStage, eventType: string, timestampMs: number, events = 1): void {
    const key = `${stage}\t${minuteOf(timestampMs)}\t${eventType}`;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + events);
  }

  get size(): number {
    return this.#counts.size;
  }

  /** Takes every count out (they are then the caller's to write, or to give back with {@link restore}). */
  drain(): LedgerRow[] {
    const rows: LedgerRow[] = [];
    for (const [key, events] of this.#counts) {
      const [stage, minute, eventType] = key.split('\t') as [ApiStage, string, string];
      rows.push({ minuteMs: Number(minute), stage, consumer: '', eventType, events });
    }
    this.#counts.clear();
    return rows;
  }

  /** Puts back rows that could not be written, adding them to whatever was counted meanwhile. */
  restore(rows: LedgerRow[]): void {
    for (const row of rows) this.add(row.stage as ApiStage, row.eventType, row.minuteMs, row.events);
  }
}
