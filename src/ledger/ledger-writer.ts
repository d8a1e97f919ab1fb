/**
 * Writes an API process's ledger counts to PostgreSQL every `intervalMs`. A failed write (PostgreSQL
 * away) keeps the counts for the next attempt, so an outage delays the ledger and loses nothing; only a
 * crash of the process loses what was counted since the last write (at most one interval: the events
 * themselves are in the spool, it is their count in the ledger that is short).
 */
import type pg from 'pg';
import type { LedgerCounts } from '../bus/ledger-counts.ts';
import { addLedgerRows } from './ledger-store.ts';

export const LEDGER_WRITER_DEFAULTS = {
  /** Time between two writes of the counts, in milliseconds: what a crash of the process can leave uncounted. */
  intervalMs: 1000,
} as const;

export interface LedgerWriterOptions {
  pool: pg.Pool;
  counts: LedgerCounts;
  /** Time between writes, in ms. @default {@link LEDGER_WRITER_DEFAULTS} */
  intervalMs?: number;
  /** Told once per outage, not once per attempt. */
  onError?: (error: unknown) => void;
}

export class LedgerWriter {
  readonly #options: LedgerWriterOptions;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #failing = false;

  constructor(options: LedgerWriterOptions) {
    this.#options = options;
  }

  get counts(): LedgerCounts {
    return this.#options.counts;
  }

  start(): void {
    this.#timer = setInterval(
      () => void this.flush(),
      this.#options.intervalMs ?? LEDGER_WRITER_DEFAULTS.intervalMs,
    );
    this.#timer.unref();
  }

  /** Writes what has been counted so far; resolves once written (or given back after a failure). */
  flush(): Promise<void> {
    // One write at a time: a slow one must not be overtaken and double-restored.
    this.#writing ??= this.#write().finally(() => {
      this.#writing = undefined;
    });
    return this.#writing;
  }

  /** Stops the timer and writes the last counts. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#writing;
    await this.flush();
  }

  async #write(): Promise<void> {
    const rows = this.#options.counts.drain();
    if (rows.length === 0) return;
    try {
      await addLedgerRows(this.#options.pool, rows);
      this.#failing = false;
    } catch (error) {
      this.#options.counts.restore(rows);
      if (!this.#failing) this.#options.onError?.(error);
      this.#failing = true;
    }
  }
}
