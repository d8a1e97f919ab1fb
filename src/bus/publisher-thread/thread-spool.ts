/**
 * The publisher thread's view of the API's spool, as a {@link PublishedSpool}: records read from the
 * segment files up to the shared tail, appends noticed through the tail's wake counter, and a confirmed
 * offset of its own that the thread reports to the spool's owner (who persists it and deletes the
 * segments it frees).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { SpoolRecord } from '../spool/spool.ts';
import type { SpoolTail } from '../spool/spool-tail.ts';
import type { SpoolTailReader } from '../spool/spool-tail-reader.ts';
import type { PublishedSpool } from '../spool-publisher.ts';

/** Longest sleep between two looks at the tail, in ms: a lost wake-up costs at most this. */
const WAKE_TIMEOUT_MS = 1000;

export class ThreadSpool implements PublishedSpool {
  readonly #reader: SpoolTailReader;
  readonly #tail: SpoolTail;
  readonly #onConfirm: () => void;
  readonly #lingerMs: number;
  #confirmedOffset: number;

  /** @param lingerMs wait after a wake-up before the listener is told, in ms (0: tell it at once) */
  constructor(
    reader: SpoolTailReader,
    tail: SpoolTail,
    confirmedOffset: number,
    lingerMs: number,
    onConfirm: () => void,
  ) {
    this.#reader = reader;
    this.#lingerMs = lingerMs;
    this.#tail = tail;
    this.#confirmedOffset = confirmedOffset;
    this.#onConfirm = onConfirm;
  }

  get confirmedOffset(): number {
    return this.#confirmedOffset;
  }

  read(fromOffset: number, maxRecords: number, maxBytes: number): SpoolRecord[] {
    return this.#reader.read(fromOffset, maxRecords, maxBytes);
  }

  confirm(offset: number): void {
    if (!(offset > this.#confirmedOffset)) return;
    this.#confirmedOffset = offset;
    this.#onConfirm();
  }

  stats(): { confirmedOffset: number; unconfirmed: number } {
    return {
      confirmedOffset: this.#confirmedOffset,
      unconfirmed: Math.max(0, this.#reader.nextOffset() - 1 - this.#confirmedOffset),
    };
  }

  onAppend(listener: () => void): () => void {
    let active = true;
    const tail = this.#tail;
    void (async () => {
      let seen = tail.wakeCount();
      while (active) {
        await tail.waitForWake(seen, WAKE_TIMEOUT_MS);
        // Appends that come while it lingers are read with the one that woke it: one socket write and
        // one broker round for all of them.
        if (this.#lingerMs > 0 && tail.wakeCount() !== seen) await sleep(this.#lingerMs);
        seen = tail.wakeCount();
        if (active) listener();
      }
    })();
    return () => {
      active = false;
    };
  }
}
