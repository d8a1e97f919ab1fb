/**
 * Asynchronous sequential reading of one segment, for the publisher's reads: the event loop must not
 * wait on the disk, so reads go through a FileHandle. Keeping the handle, the position and the buffered
 * bytes between calls is what lets a reader that keeps up never rescan a segment.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { SegmentBuffer, type SegmentStep } from './segment-buffer.ts';
import type { SegmentEntry } from './segment-files.ts';

export type ReadStep = Exclude<SegmentStep, { kind: 'fill' }>;

export class SegmentReader {
  readonly #cursor: SegmentBuffer;
  readonly #handle: FileHandle;
  readonly #onDiskRead: (bytes: number) => void;
  #closed: Promise<void> | undefined;

  private constructor(
    readonly segment: SegmentEntry,
    handle: FileHandle,
    onDiskRead: (bytes: number) => void,
  ) {
    this.#cursor = new SegmentBuffer(segment.firstOffset);
    this.#handle = handle;
    this.#onDiskRead = onDiskRead;
  }

  /** Rejects with ENOENT when the file is gone. */
  static async open(segment: SegmentEntry, onDiskRead: (bytes: number) => void): Promise<SegmentReader> {
    return new SegmentReader(segment, await open(segment.path, 'r'), onDiskRead);
  }

  /** File position of the next record, naming the place of a damaged one. */
  get position(): number {
    return this.#cursor.position;
  }

  /** The bytes a 'record' step's payload bounds index. */
  get buffer(): Buffer {
    return this.#cursor.buffer;
  }

  rewind(): void {
    this.#cursor.rewind();
  }

  /** The next record below file position `end`, or why there is none; does not move past it. */
  async next(end: number): Promise<ReadStep> {
    for (;;) {
      const step = this.#cursor.next(end);
      if (step.kind !== 'fill') return step;
      const { buffer, bufferOffset, length, filePosition } = step.request;
      let total = 0;
      while (total < length) {
        const { bytesRead } = await this.#handle.read(
          buffer,
          bufferOffset + total,
          length - total,
          filePosition + total,
        );
        if (bytesRead === 0) break;
        total += bytesRead;
      }
      this.#onDiskRead(total);
      this.#cursor.filled(step.request, total);
    }
  }

  advance(size: number): void {
    this.#cursor.advance(size);
  }

  close(): Promise<void> {
    this.#closed ??= this.#handle.close();
    return this.#closed;
  }
}
