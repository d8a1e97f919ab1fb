/**
 * The write-ahead spool: an append-only, checksummed log of outbound telemetry events on disk.
 *
 * The HTTP API appends one record per request, synchronously, before it answers; the publisher reads the
 * records in order, sends them to RabbitMQ and confirms how far it got. The spool is the only buffer
 * between the two, so it must survive a kill -9 at any moment: every append is one write syscall (in the
 * page cache before append returns, so a crash of the process loses nothing), fdatasync runs every
 * `fsyncIntervalMs` (what a power cut can lose), and a record torn by a crash is cut off at the next open
 * and counted, never a reason to refuse to start.
 *
 * The log is a series of segment files named by their first offset (see segment-files.ts); whole
 * segments are deleted once all their records are confirmed, which is how the spool gives space back.
 */
import fs from 'node:fs';
import { ConfirmedOffsetFile } from './confirmed-offset-file.ts';
import { RecentRecords } from './recent-records.ts';
import { HEADER_BYTES, MAX_PAYLOAD_BYTES, sealRecord } from './record-format.ts';
import { listSegments, type SegmentEntry, scanSegmentSync } from './segment-files.ts';
import { SegmentReader } from './segment-reader.ts';
import { SegmentWriter } from './segment-writer.ts';
import { SpoolLock } from './spool-lock.ts';
import type { SpoolTail } from './spool-tail.ts';

export { MAX_PAYLOAD_BYTES } from './record-format.ts';

export interface SpoolOptions {
  /** Directory holding the segment files; created if missing. */
  directory: string;
  /** Total bytes of segment files above which appends are dropped (counted as 'spool_full'). @default {@link SPOOL_DEFAULTS} */
  maxBytes?: number;
  /** Size at which the current segment is closed and a new one started, in bytes. @default {@link SPOOL_DEFAULTS} */
  segmentBytes?: number;
  /** Interval between fdatasync calls while there are unsynced writes, in ms; 0 syncs after every append. @default {@link SPOOL_DEFAULTS} */
  fsyncIntervalMs?: number;
  /** Payload bytes of the newest records kept in memory for a reader at the tail; 0 reads only from disk. @default {@link SPOOL_DEFAULTS} */
  recentBytes?: number;
}

export const SPOOL_DEFAULTS = {
  /** Total bytes of segment files above which appends are dropped: 1 GiB. */
  maxBytes: 1024 * 1024 * 1024,
  /** Size at which a segment is closed and the next started, in bytes: 64 MiB. */
  segmentBytes: 64 * 1024 * 1024,
  /** Interval between fdatasync calls while there are unsynced writes, in milliseconds. */
  fsyncIntervalMs: 50,
  /** Payload bytes of the newest records kept in memory for a reader at the tail: 8 MiB. */
  recentBytes: 8 * 1024 * 1024,
} as const;

export type DropReason = 'spool_full' | 'write_error';

export interface SpoolRecord {
  offset: number;
  payload: Buffer;
}

export interface SpoolStats {
  /** Records appended since open. */
  appended: number;
  dropped: Record<DropReason, number>;
  /** Torn or incomplete records skipped: a segment's cut-off tail at open counts once, as does one met while reading. */
  tornRecords: number;
  /** Checksum (or header) failures found while reading, each counted once; the rest of that segment is skipped. */
  corruptRecords: number;
  /** Current total size of the segment files. */
  bytes: number;
  segments: number;
  /** Offset the next append gets. */
  nextOffset: number;
  /** Highest offset confirmed; -1 when none. */
  confirmedOffset: number;
  /** nextOffset - 1 - confirmedOffset. */
  unconfirmed: number;
  /** Completed fdatasync calls on segment files and the confirmed-offset file. */
  fsyncs: number;
  /** fdatasync calls that failed. */
  fsyncErrors: number;
  /** Reads that had to start from a segment's beginning (the first read, and every rewind). */
  readSeeks: number;
  /** Bytes read from segment files by read(). */
  diskReadBytes: number;
}

/** Records up to this size are laid out in a buffer kept for the next append; larger ones get their own. */
const SCRATCH_BYTES = 1024 * 1024;

interface ReadCursor {
  reader: SegmentReader;
  /**
   * Highest offset the cursor has moved past. Every record above it still lies ahead of the cursor (or
   * does not exist), so a read from above it can go on from here instead of seeking.
   */
  passed: number;
}

type State = 'open' | 'closing' | 'closed';

export class Spool {
  readonly directory: string;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #fsyncIntervalMs: number;
  readonly #lock: SpoolLock;
  readonly #confirmedFile: ConfirmedOffsetFile;
  /** Oldest first. The last one is the writer's, unless creating a new one failed. */
  readonly #segments: SegmentEntry[];
  #writer: SegmentWriter | undefined;
  /** Reused by every append (writes are synchronous), so appending allocates nothing. */
  #scratch = Buffer.allocUnsafe(64 * 1024);
  /** The newest appended records, served to a reader at the tail without touching the disk. */
  readonly #recent: RecentRecords;
  /** Writers of finished segments, syncing before they close. */
  readonly #retiring = new Set<Promise<void>>();
  #state: State = 'open';

  #bytes: number;
  #nextOffset: number;
  #confirmedOffset: number;
  #persistedConfirmed: number;
  #appended = 0;
  readonly #dropped: Record<DropReason, number> = { spool_full: 0, write_error: 0 };
  #tornRecords = 0;
  #corruptRecords = 0;
  #fsyncs = 0;
  #fsyncErrors = 0;
  #readSeeks = 0;
  #diskReadBytes = 0;
  /** Damage already counted, by segment and position, so a rewind over it does not count it again. */
  readonly #damageSeen = new Set<string>();

  #syncTimer: NodeJS.Timeout | undefined;
  #directoryDirty = false;
  readonly #listeners = new Set<() => void>();
  #notifyPending = false;
  #cursor: ReadCursor | undefined;
  /** Reads run one at a time: they share the cursor. */
  #reads: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  /** Where another thread reading the segment files learns how far they hold whole records. */
  #tail: SpoolTail | undefined;

  private constructor(options: Required<SpoolOptions>, lock: SpoolLock) {
    this.directory = options.directory;
    this.#maxBytes = options.maxBytes;
    this.#segmentBytes = options.segmentBytes;
    this.#fsyncIntervalMs = options.fsyncIntervalMs;
    this.#recent = new RecentRecords(options.recentBytes);
    this.#lock = lock;

    const found = listSegments(this.directory);
    // Offsets below the newest segment's name were handed out, even if that segment is empty.
    let nextOffset = found.at(-1)?.firstOffset ?? 0;
    // Only confirmed segments are ever deleted, so everything before the oldest one left was confirmed.
    const confirmedLowerBound = (found[0]?.firstOffset ?? 0) - 1;
    const newest = found.findLast((segment) => segment.size > 0);
    if (newest !== undefined) {
      const scan = scanSegmentSync(newest);
      if (scan.validBytes < newest.size) {
        fs.truncateSync(newest.path, scan.validBytes);
        newest.size = scan.validBytes;
        this.#tornRecords++;
      }
      nextOffset = Math.max(nextOffset, newest.firstOffset + scan.records);
    }
    // Empty files hold nothing and would clash with the new segment's name.
    for (const segment of found) if (segment.size === 0) fs.rmSync(segment.path, { force: true });
    this.#segments = found.filter((segment) => segment.size > 0);

    this.#confirmedFile = ConfirmedOffsetFile.open(this.directory);
    try {
      this.#confirmedOffset = Math.max(this.#confirmedFile.loaded ?? -1, confirmedLowerBound);
      this.#persistedConfirmed = this.#confirmedOffset;
      // A confirmed offset beyond the records found means their tail was lost with the page cache (a
      // power cut after they were published): never hand those offsets out again.
      this.#nextOffset = Math.max(nextOffset, this.#confirmedOffset + 1);
      this.#writer = SegmentWriter.create(this.directory, this.#nextOffset, this.#onSegmentSync);
    } catch (error) {
      void this.#confirmedFile.close();
      throw error;
    }
    this.#segments.push(this.#writer.entry);
    this.#bytes = this.#segments.reduce((sum, segment) => sum + segment.size, 0);
    this.#directoryDirty = true;
    this.#deleteConfirmedSegments();
    if (this.#fsyncIntervalMs === 0) this.#syncDirectoryNow();
    else this.#scheduleSync();
  }

  /**
   * Opens (and recovers) the spool synchronously: takes the directory's lock (a stale lock of a dead
   * process is taken over; a live one throws a ConfigError), scans the newest segment and cuts off a
   * torn tail (counted), loads the confirmed offset. Appends after open go to a new segment file.
   */
  static open(options: SpoolOptions): Spool {
    const settings = validate(options);
    fs.mkdirSync(settings.directory, { recursive: true });
    const lock = SpoolLock.acquire(settings.directory);
    try {
      return new Spool(settings, lock);
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /**
   * Appends one record with one write syscall and returns its offset, or -1 when it is dropped: the
   * spool is full, the payload is over 16 MiB, the write failed, or the spool is closed. Never throws.
   * A string payload is stored as UTF-8, encoded straight into the write buffer (no copy of its own).
   */
  append(payload: Buffer | string): number {
    const length = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (this.#state !== 'open' || length > MAX_PAYLOAD_BYTES) return this.#drop('write_error');
    const size = HEADER_BYTES + length;
    if (this.#bytes + size > this.#maxBytes) return this.#drop('spool_full');
    let writer = this.#writer;
    if (writer === undefined || (writer.entry.size > 0 && writer.entry.size + size > this.#segmentBytes)) {
      writer = this.#roll();
      if (writer === undefined) return this.#drop('write_error');
    }
    const offset = this.#nextOffset;
    let scratch = this.#scratch;
    if (size > scratch.length) {
      if (size > SCRATCH_BYTES) scratch = Buffer.allocUnsafe(size);
      else
        scratch = this.#scratch = Buffer.allocUnsafe(
          Math.min(SCRATCH_BYTES, Math.max(size, 2 * scratch.length)),
        );
    }
    if (typeof payload === 'string') scratch.write(payload, HEADER_BYTES, length, 'utf8');
    else payload.copy(scratch, HEADER_BYTES);
    if (!writer.write(scratch, sealRecord(scratch, offset, length))) {
      // Cut back off when possible; otherwise the rest of that file is unusable and a new one starts.
      if (writer.broken) this.#roll();
      return this.#drop('write_error');
    }
    this.#bytes += size;
    this.#nextOffset = offset + 1;
    this.#appended++;
    this.#tail?.publish(this.#nextOffset, writer.entry.firstOffset, writer.entry.size);
    // A Buffer payload may be the caller's to reuse: keep a copy (strings are immutable).
    if (this.#recent.enabled) {
      this.#recent.add(offset, typeof payload === 'string' ? payload : Buffer.from(payload), length);
    }
    if (this.#fsyncIntervalMs === 0) writer.syncNow();
    else if (this.#syncTimer === undefined) this.#scheduleSync();
    if (this.#listeners.size > 0 && !this.#notifyPending) {
      this.#notifyPending = true;
      setImmediate(this.#notify);
    }
    return offset;
  }

  /**
   * Records with offset >= fromOffset, in order: at most maxRecords, and about maxBytes of payload (at
   * least one record when there is one). [] when there is nothing yet. Records whose segment was deleted
   * are skipped, as are damaged ones and the rest of their segment (counted). Sequential reads continue
   * from a kept cursor; only a rewind or a jump seeks from a segment's start.
   */
  read(fromOffset: number, maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    if (this.#state !== 'open') return Promise.reject(new Error(`spool ${this.directory} is closed`));
    // Records of deleted segments are gone from memory too: start at the oldest that still exists.
    const oldest = this.#segments[0]?.firstOffset ?? this.#nextOffset;
    const recent = this.#recent.read(Math.max(fromOffset, oldest), maxRecords, maxBytes);
    if (recent !== undefined) return Promise.resolve(recent);
    const result = this.#reads.then(() => this.#readOrForgetCursor(fromOffset, maxRecords, maxBytes));
    this.#reads = result.catch(() => undefined);
    return result;
  }

  /**
   * Confirms every record up to `offset` (a lower value than before is ignored; one beyond the last
   * record is taken as the last record). Deletes the segments made only of confirmed records, never the
   * one being written, and persists the offset at the next sync (at once with fsyncIntervalMs 0).
   */
  confirm(offset: number): void {
    if (this.#state === 'closed' || Number.isNaN(offset)) return;
    const confirmed = Math.min(Math.floor(offset), this.#nextOffset - 1);
    if (confirmed <= this.#confirmedOffset) return;
    this.#confirmedOffset = confirmed;
    this.#deleteConfirmedSegments();
    if (this.#state !== 'open') return;
    if (this.#fsyncIntervalMs === 0) this.#persistConfirmedNow();
    else this.#scheduleSync();
  }

  /**
   * Publishes the tail (how far the segment files hold whole records) to `tail` from now on, after every
   * append and new segment, for a reader in another thread (./spool-tail-reader.ts).
   */
  shareTail(tail: SpoolTail): void {
    this.#tail = tail;
    const writer = this.#writer;
    tail.publish(this.#nextOffset, writer?.entry.firstOffset ?? this.#nextOffset, writer?.entry.size ?? 0);
  }

  /**
   * Damage another thread's reader met at `position` of the segment starting at `segmentFirstOffset`:
   * counted once, as a read of this spool would, and a new segment started if it is the one being written.
   */
  reportDamage(segmentFirstOffset: number, position: number, kind: 'torn' | 'corrupt'): void {
    const segment = this.#segments.find((entry) => entry.firstOffset === segmentFirstOffset);
    if (segment !== undefined) this.#countDamage(segment, position, kind);
  }

  /** Calls `listener` after appends, at most once per event-loop turn. Returns the unsubscribe function. */
  onAppend(listener: () => void): () => void {
    const subscription = () => listener();
    this.#listeners.add(subscription);
    return () => {
      this.#listeners.delete(subscription);
    };
  }

  stats(): SpoolStats {
    return {
      appended: this.#appended,
      dropped: { ...this.#dropped },
      tornRecords: this.#tornRecords,
      corruptRecords: this.#corruptRecords,
      bytes: this.#bytes,
      segments: this.#segments.length,
      nextOffset: this.#nextOffset,
      confirmedOffset: this.#confirmedOffset,
      unconfirmed: this.#nextOffset - 1 - this.#confirmedOffset,
      fsyncs: this.#fsyncs,
      fsyncErrors: this.#fsyncErrors,
      readSeeks: this.#readSeeks,
      diskReadBytes: this.#diskReadBytes,
    };
  }

  /** Syncs the segments, persists the confirmed offset, closes every file and releases the lock. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    clearTimeout(this.#syncTimer);
    this.#syncTimer = undefined;
    try {
      await this.#reads;
      await this.#cursor?.reader.close();
      this.#cursor = undefined;
      const writer = this.#writer;
      this.#writer = undefined;
      if (writer !== undefined) this.#retire(writer);
      await Promise.all(this.#retiring);
      if (this.#directoryDirty) await this.#syncDirectory();
      // Confirms still count until here; later ones would not be persisted.
      this.#state = 'closed';
      if (this.#confirmedOffset > this.#persistedConfirmed) await this.#persistConfirmed();
      await this.#confirmedFile.close();
    } finally {
      this.#state = 'closed';
      this.#lock.release();
    }
  }

  #drop(reason: DropReason): -1 {
    this.#dropped[reason]++;
    return -1;
  }

  /** Finishes the current segment and starts one at the next offset; undefined if creating it failed. */
  #roll(): SegmentWriter | undefined {
    const previous = this.#writer;
    if (previous !== undefined) {
      this.#writer = undefined;
      this.#retire(previous);
      // An empty one would share the new one's name.
      if (previous.entry.size === 0) {
        this.#segments.pop();
        previous.entry.deleted = true;
        try {
          fs.rmSync(previous.entry.path, { force: true });
        } catch {
          // Then creating its successor fails below, and the append is dropped as a write error.
        }
      }
    }
    let writer: SegmentWriter;
    try {
      writer = SegmentWriter.create(this.directory, this.#nextOffset, this.#onSegmentSync);
    } catch {
      return undefined;
    }
    this.#writer = writer;
    this.#segments.push(writer.entry);
    this.#tail?.publish(this.#nextOffset, writer.entry.firstOffset, 0);
    this.#directoryDirty = true;
    if (this.#fsyncIntervalMs === 0) this.#syncDirectoryNow();
    else this.#scheduleSync();
    return writer;
  }

  #retire(writer: SegmentWriter): void {
    const closing = writer.close().finally(() => this.#retiring.delete(closing));
    this.#retiring.add(closing);
  }

  #deleteConfirmedSegments(): void {
    // The last segment always stays: it is the writer's, and its name records the next offset.
    while (this.#segments.length > 1) {
      const [oldest, following] = this.#segments as [SegmentEntry, SegmentEntry];
      if (following.firstOffset - 1 > this.#confirmedOffset) return;
      try {
        fs.unlinkSync(oldest.path);
      } catch (error) {
        // Left in place (and counted in bytes) to be tried again at the next confirm.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return;
      }
      this.#segments.shift();
      oldest.deleted = true;
      this.#bytes -= oldest.size;
    }
  }

  readonly #onSegmentSync = (ok: boolean): void => {
    if (ok) this.#fsyncs++;
    else this.#fsyncErrors++;
  };

  readonly #notify = (): void => {
    this.#notifyPending = false;
    let failure: { error: unknown } | undefined;
    for (const listener of [...this.#listeners]) {
      try {
        listener();
      } catch (error) {
        failure ??= { error };
      }
    }
    // Every listener got its call; a listener's bug still surfaces as the uncaught exception it is.
    if (failure !== undefined) throw failure.error;
  };

  // -------------------------------------------------------------------------------------------------
  // Syncing

  #scheduleSync(): void {
    if (this.#syncTimer !== undefined || this.#state !== 'open') return;
    this.#syncTimer = setTimeout(this.#onSyncTimer, this.#fsyncIntervalMs);
    this.#syncTimer.unref();
  }

  readonly #onSyncTimer = (): void => {
    this.#syncTimer = undefined;
    void this.#syncAll().then(() => {
      if (this.#writer?.dirty || this.#confirmedOffset > this.#persistedConfirmed || this.#directoryDirty) {
        this.#scheduleSync();
      }
    });
  };

  async #syncAll(): Promise<void> {
    const pending: Promise<unknown>[] = [];
    if (this.#writer?.dirty) pending.push(this.#writer.sync());
    if (this.#confirmedOffset > this.#persistedConfirmed) pending.push(this.#persistConfirmed());
    if (this.#directoryDirty) pending.push(this.#syncDirectory());
    await Promise.all(pending);
  }

  async #persistConfirmed(): Promise<void> {
    const offset = this.#confirmedOffset;
    if (!this.#confirmedFile.write(offset)) return;
    this.#persistedConfirmed = Math.max(this.#persistedConfirmed, offset);
    this.#onSegmentSync(await this.#confirmedFile.sync());
  }

  #persistConfirmedNow(): void {
    const offset = this.#confirmedOffset;
    if (!this.#confirmedFile.write(offset)) return;
    this.#persistedConfirmed = offset;
    this.#onSegmentSync(this.#confirmedFile.syncNow());
  }

  /** A new segment's directory entry must reach the disk too, or a power cut could lose the whole file. */
  async #syncDirectory(): Promise<void> {
    this.#directoryDirty = false;
    try {
      const handle = await fs.promises.open(this.directory, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch {
      // Some file systems cannot sync a directory; the segment's own sync is then all there is.
    }
  }

  #syncDirectoryNow(): void {
    this.#directoryDirty = false;
    try {
      const fd = fs.openSync(this.directory, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      // As in #syncDirectory.
    }
  }

  // -------------------------------------------------------------------------------------------------
  // Reading

  async #readOrForgetCursor(
    fromOffset: number,
    maxRecords: number,
    maxBytes: number,
  ): Promise<SpoolRecord[]> {
    try {
      return await this.#read(fromOffset, maxRecords, maxBytes);
    } catch (error) {
      // A failed disk read leaves the cursor in an unknown state: the next read seeks afresh.
      const cursor = this.#cursor;
      this.#cursor = undefined;
      await cursor?.reader.close().catch(() => undefined);
      throw error;
    }
  }

  async #read(fromOffset: number, maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> {
    const records: SpoolRecord[] = [];
    if (!(maxRecords >= 1)) return records;
    const from = Number.isNaN(fromOffset) ? 0 : fromOffset;
    const cursor = await this.#cursorFor(from);
    if (cursor === undefined) return records;
    let bytes = 0;
    while (records.length < maxRecords) {
      const { reader } = cursor;
      const segment = reader.segment;
      const step = await reader.next(segment.size);
      if (step.kind === 'record') {
        const length = step.payloadEnd - step.payloadStart;
        if (step.offset >= from) {
          if (records.length > 0 && bytes + length > maxBytes) break;
          // A copy: the read buffer is reused.
          records.push({
            offset: step.offset,
            payload: Buffer.from(reader.buffer.subarray(step.payloadStart, step.payloadEnd)),
          });
          bytes += length;
        }
        reader.advance(step.size);
        cursor.passed = step.offset;
        if (bytes >= maxBytes && records.length > 0) break;
        continue;
      }
      if (step.kind === 'end' && segment === this.#writer?.entry) break;
      if (step.kind !== 'end') this.#countDamage(segment, reader.position, step.kind);
      const following = this.#segmentAfter(segment);
      if (following === undefined) break;
      await reader.close();
      const next = await this.#openReader(following);
      if (next === undefined) {
        this.#cursor = undefined;
        break;
      }
      cursor.reader = next;
    }
    return records;
  }

  /** The cursor, moved to read from `from`: kept when reading on from where it is, else a seek. */
  async #cursorFor(from: number): Promise<ReadCursor | undefined> {
    const cursor = this.#cursor;
    if (cursor !== undefined && !cursor.reader.segment.deleted && from > cursor.passed) {
      const following = this.#segmentAfter(cursor.reader.segment);
      if (following === undefined || following.firstOffset > from) return cursor;
      // Starts in the next segment: where reading on would get to anyway, minus the rest of this one.
      const afterThat = this.#segmentAfter(following);
      if (afterThat === undefined || afterThat.firstOffset > from) {
        await cursor.reader.close();
        const reader = await this.#openReader(following);
        this.#cursor = reader === undefined ? undefined : { reader, passed: cursor.passed };
        return this.#cursor;
      }
    }
    this.#readSeeks++;
    let index = this.#lastSegmentStartingAtOrBefore(from);
    // Below the oldest segment: those records were confirmed and deleted; start at the first that exists.
    if (index < 0) index = 0;
    const segment = this.#segments[index];
    if (segment === undefined) return undefined;
    const passed = index === 0 ? Number.NEGATIVE_INFINITY : segment.firstOffset - 1;
    if (cursor !== undefined && cursor.reader.segment === segment) {
      cursor.reader.rewind();
      cursor.passed = passed;
      return cursor;
    }
    await cursor?.reader.close();
    this.#cursor = undefined;
    const reader = await this.#openReader(segment);
    if (reader === undefined) return undefined;
    this.#cursor = { reader, passed };
    return this.#cursor;
  }

  /** A reader at the start of `segment`, or of the first later one whose file still exists. */
  async #openReader(segment: SegmentEntry): Promise<SegmentReader | undefined> {
    let target: SegmentEntry | undefined = segment;
    while (target !== undefined) {
      try {
        return await SegmentReader.open(target, this.#onDiskRead);
      } catch (error) {
        // Deleted (all confirmed) while the read was on its way to it.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        target = this.#segmentAfter(target);
      }
    }
    return undefined;
  }

  readonly #onDiskRead = (bytes: number): void => {
    this.#diskReadBytes += bytes;
  };

  #countDamage(segment: SegmentEntry, position: number, kind: 'torn' | 'corrupt'): void {
    const key = `${segment.firstOffset}:${position}`;
    if (!this.#damageSeen.has(key)) {
      this.#damageSeen.add(key);
      if (kind === 'torn') this.#tornRecords++;
      else this.#corruptRecords++;
    }
    // Damage in the segment being written would hide every later append: go on in a new one.
    if (segment === this.#writer?.entry && this.#state === 'open') this.#roll();
  }

  /** Index of the last segment whose first offset is <= offset; -1 when there is none. */
  #lastSegmentStartingAtOrBefore(offset: number): number {
    let low = 0;
    let high = this.#segments.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if ((this.#segments[middle] as SegmentEntry).firstOffset <= offset) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }

  /** The segment after `segment`, found by offset since `segment` may have been deleted meanwhile. */
  #segmentAfter(segment: SegmentEntry): SegmentEntry | undefined {
    return this.#segments[this.#lastSegmentStartingAtOrBefore(segment.firstOffset) + 1];
  }
}

function validate(options: SpoolOptions): Required<SpoolOptions> {
  const settings = {
    directory: options.directory,
    maxBytes: options.maxBytes ?? SPOOL_DEFAULTS.maxBytes,
    segmentBytes: options.segmentBytes ?? SPOOL_DEFAULTS.segmentBytes,
    fsyncIntervalMs: options.fsyncIntervalMs ?? SPOOL_DEFAULTS.fsyncIntervalMs,
    recentBytes: options.recentBytes ?? SPOOL_DEFAULTS.recentBytes,
  };
  if (typeof settings.directory !== 'string' || settings.directory === '') {
    throw new TypeError('spool directory must be a non-empty path');
  }
  for (const name of ['maxBytes', 'segmentBytes'] as const) {
    if (!Number.isSafeInteger(settings[name]) || settings[name] <= 0) {
      throw new RangeError(`spool ${name} must be a positive integer, got ${settings[name]}`);
    }
  }
  if (!Number.isSafeInteger(settings.fsyncIntervalMs) || settings.fsyncIntervalMs < 0) {
    throw new RangeError(`spool fsyncIntervalMs must be an integer >= 0, got ${settings.fsyncIntervalMs}`);
  }
  return settings;
}
