/**
 * A window of one segment file's bytes held in memory, so records are parsed out of large reads instead
 * of costing a syscall or two each. The recovery scan at open (synchronous) and the reader (asynchronous)
 * share it; only who performs the read differs, hence the step/fill protocol instead of a read call.
 */
import { decodeRecord } from './record-format.ts';

const READ_CHUNK_BYTES = 256 * 1024;

/** Where the caller must read `length` bytes of the file at `filePosition` into `buffer`. */
export interface FillRequest {
  buffer: Buffer;
  bufferOffset: number;
  length: number;
  filePosition: number;
}

export type SegmentStep =
  | { kind: 'record'; offset: number; payloadStart: number; payloadEnd: number; size: number }
  /** Nothing after `position` below the end given: a clean record boundary. */
  | { kind: 'end' }
  /** A record starts but the file (or the end given) stops inside it. */
  | { kind: 'torn' }
  /** The bytes at `position` are not the expected record. */
  | { kind: 'corrupt' }
  | { kind: 'fill'; request: FillRequest };

export class SegmentBuffer {
  /** File position of the next record. */
  position = 0;
  /** Offset the next record must carry. */
  expectedOffset: number;
  #buffer: Buffer = Buffer.alloc(0);
  /** File position of `#buffer[0]`. */
  #windowStart = 0;
  #windowLength = 0;
  /** Set when a read came back short: the file ends here, whatever the caller believed. */
  #fileEnd = Number.POSITIVE_INFINITY;

  constructor(readonly firstOffset: number) {
    this.expectedOffset = firstOffset;
  }

  get buffer(): Buffer {
    return this.#buffer;
  }

  /** Back to the first record; buffered bytes are dropped (the file may have changed under them). */
  rewind(): void {
    this.position = 0;
    this.expectedOffset = this.firstOffset;
    this.#windowStart = 0;
    this.#windowLength = 0;
    this.#fileEnd = Number.POSITIVE_INFINITY;
  }

  /**
   * The next step for the record at `position`, looking no further than file position `end` (the bytes
   * known to be whole records or, for a finished segment, the file size). A 'record' step's payload
   * bounds index {@link buffer} and stay valid until the next fill.
   */
  next(end: number): SegmentStep {
    const limit = Math.min(end, this.#fileEnd);
    const windowEnd = this.#windowStart + this.#windowLength;
    const available = Math.max(0, Math.min(windowEnd, limit) - this.position);
    const decoded = decodeRecord(
      this.#buffer,
      this.position - this.#windowStart,
      available,
      this.expectedOffset,
    );
    if (decoded.status === 'ok') return { kind: 'record', ...decoded };
    if (decoded.status === 'corrupt') return { kind: 'corrupt' };
    const needed = decoded.needed;
    if (this.position + needed > limit) return this.position >= limit ? { kind: 'end' } : { kind: 'torn' };
    return { kind: 'fill', request: this.#planFill(needed, limit) };
  }

  /** Records the result of a fill; a short read means the file is shorter than the caller thought. */
  filled(request: FillRequest, bytesRead: number): void {
    this.#windowLength += bytesRead;
    if (bytesRead < request.length) this.#fileEnd = request.filePosition + bytesRead;
  }

  /** Moves past the record a 'record' step returned. */
  advance(size: number): void {
    this.position += size;
    this.expectedOffset++;
  }

  #planFill(needed: number, limit: number): FillRequest {
    const keep = Math.max(0, this.#windowStart + this.#windowLength - this.position);
    const target = Math.min(limit - this.position, Math.max(needed, READ_CHUNK_BYTES));
    const from = this.position - this.#windowStart;
    if (this.#buffer.length < target) {
      // Never smaller than a chunk: a reader following a growing segment would otherwise reallocate per read.
      const grown = Buffer.allocUnsafe(Math.max(target, READ_CHUNK_BYTES));
      if (keep > 0) this.#buffer.copy(grown, 0, from, from + keep);
      this.#buffer = grown;
    } else if (keep > 0 && from > 0) {
      this.#buffer.copyWithin(0, from, from + keep);
    }
    this.#windowStart = this.position;
    this.#windowLength = keep;
    return {
      buffer: this.#buffer,
      bufferOffset: keep,
      length: target - keep,
      filePosition: this.position + keep,
    };
  }
}
