/**
 * The confirmed offset, kept across restarts so a restart does not resend everything still on disk.
 *
 * Two fixed 16-byte checksummed slots, written in turn with one positional write each: a write torn by a
 * crash spoils only the slot being written and the other still holds the previous value. A lower value
 * costs duplicates downstream, never loss, so that is the whole recovery; no temp file, rename or
 * directory sync is needed.
 *
 *   slot: magic "TBC\x01" (uint32 LE) · CRC-32 of bytes 8..15 (uint32 LE) · offset (float64 LE)
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

export const CONFIRMED_OFFSET_FILE = 'confirmed.offset';
const SLOT_BYTES = 16;
const MAGIC = 0x01434254;

export class ConfirmedOffsetFile {
  readonly #fd: number;
  #nextSlot: number;
  readonly #syncing = new Set<Promise<boolean>>();
  #closed: Promise<void> | undefined;

  private constructor(
    fd: number,
    nextSlot: number,
    /** The value found at open; undefined when there was none or neither slot was intact. */
    readonly loaded: number | undefined,
  ) {
    this.#fd = fd;
    this.#nextSlot = nextSlot;
  }

  static open(directory: string): ConfirmedOffsetFile {
    const fd = fs.openSync(
      path.join(directory, CONFIRMED_OFFSET_FILE),
      fs.constants.O_RDWR | fs.constants.O_CREAT,
    );
    try {
      const bytes = Buffer.alloc(2 * SLOT_BYTES);
      fs.readSync(fd, bytes, 0, bytes.length, 0);
      const slots = [decodeSlot(bytes, 0), decodeSlot(bytes, SLOT_BYTES)];
      const [first, second] = slots;
      let best: number | undefined;
      let bestSlot = 1;
      if (first !== undefined) [best, bestSlot] = [first, 0];
      if (second !== undefined && (best === undefined || second > best)) [best, bestSlot] = [second, 1];
      // Overwrite the older slot, so the newest value survives a torn write.
      return new ConfirmedOffsetFile(fd, 1 - bestSlot, best);
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
  }

  /** False when the write failed; the caller tries again later. */
  write(offset: number): boolean {
    const slot = Buffer.alloc(SLOT_BYTES);
    slot.writeUInt32LE(MAGIC, 0);
    slot.writeDoubleLE(offset, 8);
    slot.writeUInt32LE(crc32(slot.subarray(8)), 4);
    try {
      fs.writeSync(this.#fd, slot, 0, SLOT_BYTES, this.#nextSlot * SLOT_BYTES);
    } catch {
      return false;
    }
    this.#nextSlot = 1 - this.#nextSlot;
    return true;
  }

  /** True when the data sync succeeded. */
  syncNow(): boolean {
    try {
      fs.fdatasyncSync(this.#fd);
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves true when the data sync succeeded. */
  sync(): Promise<boolean> {
    const syncing = new Promise<boolean>((resolve) =>
      fs.fdatasync(this.#fd, (error) => resolve(error === null)),
    );
    this.#syncing.add(syncing);
    void syncing.then(() => this.#syncing.delete(syncing));
    return syncing;
  }

  /** Closes once no sync is in flight, so the descriptor cannot be reused under one. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await Promise.all(this.#syncing);
      await new Promise<void>((resolve) => fs.close(this.#fd, () => resolve()));
    })();
    return this.#closed;
  }
}

function decodeSlot(bytes: Buffer, start: number): number | undefined {
  if (bytes.readUInt32LE(start) !== MAGIC) return undefined;
  if (crc32(bytes.subarray(start + 8, start + SLOT_BYTES)) !== bytes.readUInt32LE(start + 4))
    return undefined;
  const offset = bytes.readDoubleLE(start + 8);
  return Number.isSafeInteger(offset) && offset >= -1 ? offset : undefined;
}
