/**
 * The on-disk layout of one spool record, kept in one place so the writer, the recovery scan and the
 * reader cannot disagree about it.
 *
 *   bytes  0..3   magic "TBS" + format version 1
 *   bytes  4..7   CRC-32 (zlib) of bytes 8..end: the length and offset fields as well as the payload, so
 *                 a damaged length or offset is caught, not only a damaged payload
 *   bytes  8..11  payload length, uint32 LE
 *   bytes 12..19  the record's global offset, uint64 LE: a record found where another offset belongs
 *                 (a stale or misplaced file) fails like a checksum does
 *   bytes 20..    payload
 */
import { crc32 } from 'node:zlib';

export const HEADER_BYTES = 20;
/** Larger payloads are refused at append, and a larger length field read back means damage. */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024;
/** "TBS\x01" read as a little-endian uint32. */
const MAGIC = 0x01534254;
const TWO_TO_32 = 0x1_0000_0000;

export type DecodeResult =
  | { status: 'ok'; offset: number; payloadStart: number; payloadEnd: number; size: number }
  /** The bytes at hand end inside the record; `needed` counts from the record's first byte. */
  | { status: 'incomplete'; needed: number }
  | { status: 'corrupt' };

const CORRUPT: DecodeResult = { status: 'corrupt' };
const NEED_HEADER: DecodeResult = { status: 'incomplete', needed: HEADER_BYTES };

/**
 * Lays the record out at the start of `target` (at least HEADER_BYTES + payload.length long) and returns
 * its size: header and payload in one buffer, so the append is a single write syscall, and a buffer the
 * caller can reuse, so an append allocates nothing (allocation is what makes the latency tail).
 */
export function writeRecord(target: Buffer, offset: number, payload: Buffer): number {
  payload.copy(target, HEADER_BYTES);
  return sealRecord(target, offset, payload.length);
}

/**
 * Writes the header of a record whose `length` payload bytes are already in place at HEADER_BYTES, so a
 * string payload can be encoded straight into the write buffer. Returns the record's size.
 */
export function sealRecord(target: Buffer, offset: number, length: number): number {
  const size = HEADER_BYTES + length;
  target.writeUInt32LE(MAGIC, 0);
  target.writeUInt32LE(length, 8);
  target.writeUInt32LE(offset % TWO_TO_32, 12);
  target.writeUInt32LE(Math.floor(offset / TWO_TO_32), 16);
  target.writeUInt32LE(crc32(target.subarray(8, size)), 4);
  return size;
}

/** A record in a buffer of its own. */
export function encodeRecord(offset: number, payload: Buffer): Buffer {
  const record = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  writeRecord(record, offset, payload);
  return record;
}

/**
 * Decodes the record starting at `start` in `buffer`, of which `available` bytes are valid, checking it
 * is whole, intact, and the record numbered `expectedOffset`.
 */
export function decodeRecord(
  buffer: Buffer,
  start: number,
  available: number,
  expectedOffset: number,
): DecodeResult {
  if (available < HEADER_BYTES) return NEED_HEADER;
  if (buffer.readUInt32LE(start) !== MAGIC) return CORRUPT;
  const length = buffer.readUInt32LE(start + 8);
  if (length > MAX_PAYLOAD_BYTES) return CORRUPT;
  const size = HEADER_BYTES + length;
  if (available < size) return { status: 'incomplete', needed: size };
  if (crc32(buffer.subarray(start + 8, start + size)) !== buffer.readUInt32LE(start + 4)) return CORRUPT;
  const offset = buffer.readUInt32LE(start + 16) * TWO_TO_32 + buffer.readUInt32LE(start + 12);
  if (offset !== expectedOffset) return CORRUPT;
  return { status: 'ok', offset, payloadStart: start + HEADER_BYTES, payloadEnd: start + size, size };
}
