/**
 * Reads a spool's records from another thread than the one appending: the publisher thread's view of the
 * spool (../publisher-thread/). It never writes, deletes or locks anything; it learns how far the segment
 * files hold whole records from the {@link SpoolTail} the appending {@link Spool} publishes, so it never
 * reads a write in progress, and finds segments by listing the directory (their names are their first
 * offsets). Damage it meets is reported to its owner, who counts it in the spool (`Spool.reportDamage`).
 *
 * Reads are synchronous: this thread has nothing else to do meanwhile, and the records at the tail are
 * in the page cache, where one pread costs less than a round trip through the threadpool.
 */
import fs from 'node:fs';
import { SegmentBuffer } from './segment-buffer.ts';
import { listSegments, type SegmentEntry } from './segment-files.ts';
import type { SpoolRecord } from './spool.ts';
import type { SpoolTail, TailSnapshot } from './spool-tail.ts';

export type DamageListener = (segmentFirstOffset: number, position: number, kind: 'torn' | 'corrupt') => void;

interface Cursor {
  segment: SegmentEntry;
  fd: number;
  buffer: SegmentBuffer;
  /** The file's size once the segment is no longer the one being written (it does not grow then). */
  finalSize: number | undefined;
}

export class SpoolTailReader {
  readonly #directory: string;
  readonly #tail: SpoolTail;
  readonly #onDamage: DamageListener;
  readonly #snapshot: TailSnapshot = { nextOffset: 0, writerFirstOffset: 0, writerBytes: 0 };
  #cursor: Cursor | undefined;
  /** Bytes read from segment files. */
  diskReadBytes = 0;

  constructor(directory: string, tail: SpoolTail, onDamage: DamageListener) {
    this.#directory = directory;
    this.#tail = tail;
    this.#onDamage = onDamage;
  }

  /** Offset the next append gets, as last published. */
  nextOffset(): number {
    return this.#tail.read(this.#snapshot).nextOffset;
  }

  /**
   * Records with offset >= fromOffset, in order: at most maxRecords and about maxBytes of payload (at
   * least one record when there is one); [] when there is nothing yet. Records of deleted segments and
   * damaged ones (with the rest of their segment) are skipped, as `Spool.read()` skips them.
   */
  read(fromOffset: number, maxRecords: number, maxBytes: number): SpoolRecord[] {
    const records: SpoolRecord[] = [];
    const tail = this.#tail.read(this.#snapshot);
    if (fromOffset >= tail.nextOffset || !(maxRecords >= 1)) return records;
    let cursor = this.#cursorAt(fromOffset);
    let bytes = 0;
    while (
      cursor !== undefined &&
      records.length < maxRecords &&
      cursor.buffer.expectedOffset < tail.nextOffset
    ) {
      const writing = cursor.segment.firstOffset === tail.writerFirstOffset;
      const end = writing ? tail.writerBytes : this.#finalSize(cursor);
      const step = cursor.buffer.next(end);
      if (step.kind === 'fill') {
        const { buffer, bufferOffset, length, filePosition } = step.request;
        let total = 0;
        while (total < length) {
          const read = fs.readSync(
            cursor.fd,
            buffer,
            bufferOffset + total,
            length - total,
            filePosition + total,
          );
          if (read === 0) break;
          total += read;
        }
        this.diskReadBytes += total;
        cursor.buffer.filled(step.request, total);
        continue;
      }
      if (step.kind === 'record') {
        const length = step.payloadEnd - step.payloadStart;
        if (step.offset >= fromOffset) {
          if (records.length > 0 && bytes + length > maxBytes) break;
          // A copy: the read buffer is reused.
          records.push({
            offset: step.offset,
            payload: Buffer.from(cursor.buffer.buffer.subarray(step.payloadStart, step.payloadEnd)),
          });
          bytes += length;
        }
        cursor.buffer.advance(step.size);
        if (bytes >= maxBytes) break;
        continue;
      }
      // The segment being written has no more whole records yet.
      if (step.kind === 'end' && writing) break;
      if (step.kind !== 'end') this.#onDamage(cursor.segment.firstOffset, cursor.buffer.position, step.kind);
      cursor = this.#moveToSegmentAfter(cursor);
    }
    return records;
  }

  close(): void {
    if (this.#cursor !== undefined) fs.closeSync(this.#cursor.fd);
    this.#cursor = undefined;
  }

  /** The cursor, where reading on reaches `from`: kept when reading on from where it is, else a seek. */
  #cursorAt(from: number): Cursor | undefined {
    const cursor = this.#cursor;
    // The usual read: on from where the last one stopped.
    if (cursor !== undefined && from === cursor.buffer.expectedOffset) return cursor;
    if (cursor !== undefined && from > cursor.buffer.expectedOffset) {
      // Reading on: this segment, or one after it (a jump forward past whole segments is a seek).
      const segments = listSegments(this.#directory);
      const following = segments.find((segment) => segment.firstOffset > cursor.segment.firstOffset);
      if (following === undefined || following.firstOffset > from) return cursor;
    }
    this.close();
    const segments = listSegments(this.#directory);
    let index = segments.findLastIndex((segment) => segment.firstOffset <= from);
    // Below the oldest segment: those records were confirmed and deleted; start at the first that exists.
    if (index < 0) index = 0;
    for (; index < segments.length; index++) {
      const opened = this.#open(segments[index] as SegmentEntry);
      if (opened !== undefined) return opened;
    }
    return undefined;
  }

  #moveToSegmentAfter(cursor: Cursor): Cursor | undefined {
    this.close();
    for (const segment of listSegments(this.#directory)) {
      if (segment.firstOffset <= cursor.segment.firstOffset) continue;
      const opened = this.#open(segment);
      if (opened !== undefined) return opened;
    }
    return undefined;
  }

  #open(segment: SegmentEntry): Cursor | undefined {
    let fd: number;
    try {
      fd = fs.openSync(segment.path, 'r');
    } catch (error) {
      // Deleted (all confirmed) since the listing.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    this.#cursor = { segment, fd, buffer: new SegmentBuffer(segment.firstOffset), finalSize: undefined };
    return this.#cursor;
  }

  #finalSize(cursor: Cursor): number {
    cursor.finalSize ??= fs.fstatSync(cursor.fd).size;
    return cursor.finalSize;
  }
}
