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

const STAGES: readonly ApiStage[] = ['emitted', 'spooled', 'confirmed'];
const STAGE_INDEX: Record<ApiStage, number> = { emitted: 0, spooled: 1, confirmed: 2 };

/**
 * The counts of one minute: per event type, one number per stage. Adding is two lookups of values that
 * already exist (the minute's table, the type's row) and an increment: no key is built per event.
 */
type MinuteTable = Map<string, number[]>;

export class LedgerCounts {
  #minutes = new Map<number, MinuteTable>();
  /** The minute added to last, and its table: nearly every add is for the current minute. */
  #lastMinute = Number.NaN;
  #lastTable: MinuteTable | undefined;
  #size = 0;

  /** Counts `events` events of `eventType`, timestamped `timestampMs`, as having reached `stage`. */
  add(stage: ApiStage, eventType: string, timestampMs: number, events = 1): void {
    const minute = minuteOf(timestampMs);
    let table = this.#lastTable;
    if (minute !== this.#lastMinute || table === undefined) {
      table = this.#minutes.get(minute);
      if (table === undefined) {
        table = new Map();
        this.#minutes.set(minute, table);
      }
      this.#lastMinute = minute;
      this.#lastTable = table;
    }
    let row = table.get(eventType);
    if (row === undefined) {
      row = [0, 0, 0];
      table.set(eventType, row);
    }
    const index = STAGE_INDEX[stage];
    if (row[index] === 0) this.#size++;
    row[index] = (row[index] as number) + events;
  }

  /** Counts held: one per minute, stage and event type. */
  get size(): number {
    return this.#size;
  }

  /** Takes every count out (they are then the caller's to write, or to give back with {@link restore}). */
  drain(): LedgerRow[] {
    const rows: LedgerRow[] = [];
    for (const [minuteMs, table] of this.#minutes) {
      for (const [eventType, row] of table) {
        for (let index = 0; index < STAGES.length; index++) {
          const events = row[index] as number;
          if (events !== 0)
            rows.push({ minuteMs, stage: STAGES[index] as ApiStage, consumer: '', eventType, events });
        }
      }
    }
    this.#minutes.clear();
    this.#lastMinute = Number.NaN;
    this.#lastTable = undefined;
    this.#size = 0;
    return rows;
  }

  /** Puts back rows that could not be written, adding them to whatever was counted meanwhile. */
  restore(rows: LedgerRow[]): void {
    for (const row of rows) this.add(row.stage as ApiStage, row.eventType, row.minuteMs, row.events);
  }
}
