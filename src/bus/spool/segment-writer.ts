/**
 * The segment file being appended to.
 *
 * Records are written with a positional write at the committed length rather than in append mode, and
 * a failed or short write is cut back off at once: so the file never holds half a record followed by
 * good ones, and readers, who never look past the committed length, never see a write in progress.
 * Syncing is asynchronous (the threadpool's fdatasync) except when asked to sync every append, and the
 * descriptor is closed only once a sync in flight on it is over, so it cannot be reused under it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type SegmentEntry, segmentFileName } from './segment-files.ts';

export class SegmentWriter {
  readonly #fd: number;
  readonly #onSync: (ok: boolean) => void;
  #syncedSize = 0;
  #syncing: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  /** A failed write could not be cut back off: nothing more may be written to this file. */
  broken = false;

  private constructor(
    readonly entry: SegmentEntry,
    fd: number,
    onSync: (ok: boolean) => void,
  ) {
    this.#fd = fd;
    this.#onSync = onSync;
  }

  /** Creates the file; throws if it exists, since two segments must never share a first offset. */
  static create(directory: string, firstOffset: number, onSync: (ok: boolean) => void): SegmentWriter {
    const file = path.join(directory, segmentFileName(firstOffset));
    const fd = fs.openSync(file, 'wx');
    return new SegmentWriter({ firstOffset, path: file, size: 0, deleted: false }, fd, onSync);
  }

  get dirty(): boolean {
    return this.#syncedSize < this.entry.size;
  }

  /**
   * Writes the first `length` bytes of `bytes` with one write syscall; false (and the file as it was, or
   * `broken` set) when it failed or fell short.
   */
  write(bytes: Buffer, length: number): boolean {
    const at = this.entry.size;
    let written = -1;
    try {
      written = fs.writeSync(this.#fd, bytes, 0, length, at);
    } catch {
      // Counted by the caller as a write error; the file is restored below.
    }
    if (written === length) {
      this.entry.size = at + written;
      return true;
    }
    try {
      fs.ftruncateSync(this.#fd, at);
    } catch {
      this.broken = true;
    }
    return false;
  }

  /** For `fsyncIntervalMs: 0`: the record is on disk before append returns. */
  syncNow(): void {
    if (!this.dirty) return;
    const target = this.entry.size;
    try {
      fs.fdatasyncSync(this.#fd);
      this.#syncedSize = target;
      this.#onSync(true);
    } catch {
      this.#onSync(false);
    }
  }

  /** Resolves once what was written when it was called is synced (or the sync failed, reported). */
  sync(): Promise<void> {
    if (this.#syncing !== undefined) return this.#syncing;
    if (!this.dirty) return Promise.resolve();
    const target = this.entry.size;
    this.#syncing = new Promise((resolve) => {
      fs.fdatasync(this.#fd, (error) => {
        this.#syncing = undefined;
        if (error === null) this.#syncedSize = Math.max(this.#syncedSize, target);
        this.#onSync(error === null);
        resolve();
      });
    });
    return this.#syncing;
  }

  /** Syncs what is unsynced, then closes. Idempotent; never rejects. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.#syncing;
      if (this.dirty) await this.sync();
      await new Promise<void>((resolve) => fs.close(this.#fd, () => resolve()));
    })();
    return this.#closed;
  }
}
