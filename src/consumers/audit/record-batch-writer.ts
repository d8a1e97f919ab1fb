/**
 * The records of one insert, hashed and written into the one buffer PostgreSQL receives, so that each
 * canonical document is encoded to UTF-8 once: the bytes hashed are the bytes inserted.
 *
 * The buffer is jsonb's binary input (a version byte, 1, then JSON text): an array of the records'
 * canonical documents, each with `n` (its index in the batch), `chain_key` (not hashed), `prev_hash` and
 * `hash` (hex) in front:
 *
 *     {"n":0,"chain_key":"…","prev_hash":"…","hash":"…","chain_position":1,"correlation_id":…}
 *
 * Each record is written where it goes, its document behind a gap as long as that prefix: the previous
 * hash is copied into the gap's last 32 bytes, right before the document's opening brace, SHA-256 runs
 * over those bytes in place (`prev_hash ‖ document`, as ./audit-hash.ts defines the hash), then the
 * prefix is written over the gap and the brace.
 */
import { hash as oneShotHash } from 'node:crypto';
import { documentPieces, type OpenDocument } from './audit-hash.ts';

/** jsonb's binary format version. */
const JSONB_VERSION = 1;

/** The prefix of record `n` up to its hashes: `{"n":…,"chain_key":"…",`. */
function prefixHead(n: number, chainKey: string): string {
  return `{"n":${n},"chain_key":${JSON.stringify(chainKey)},`;
}

/** The length in bytes of a prefix whose head is `head`: `…"prev_hash":"…","hash":"…",` (64 hex digits each). */
function prefixLength(head: string): number {
  return Buffer.byteLength(head) + `"prev_hash":"","hash":"",`.length + 128;
}

export class RecordBatchWriter {
  #buffer = Buffer.allocUnsafe(256 * 1024);
  #length = 0;
  readonly #recordedAt: string;

  /** `recordedAt`: the canonical recorded_at of every record of the batch (ASCII, no escaping). */
  constructor(recordedAt: string) {
    this.#recordedAt = recordedAt;
    this.#buffer[0] = JSONB_VERSION;
    this.#buffer[1] = 0x5b; // [
    this.#length = 2;
  }

  /** Appends record `n` of chain `chainKey` (its document completed with `chainPosition`); returns its hash. */
  add(n: number, chainKey: string, open: OpenDocument, chainPosition: number, prevHash: Buffer): Buffer {
    const pieces = documentPieces(open, chainPosition, this.#recordedAt);
    if (prevHash.length !== 32) throw new RangeError('prev_hash must be 32 bytes');
    const head = prefixHead(n, chainKey);
    const gap = prefixLength(head);
    // UTF-8 takes at most 3 bytes per UTF-16 code unit.
    let documentLength = 0;
    for (const piece of pieces) documentLength += piece.length;
    this.#reserve(1 + gap + 3 * documentLength + 1);
    const buffer = this.#buffer;
    const start = this.#length + (this.#length > 2 ? 1 : 0);
    if (start > this.#length) buffer[this.#length] = 0x2c; // ,
    // The document starts with the prefix's last byte (its brace, where the prefix will have a comma).
    const documentStart = start + gap - 1;
    let end = documentStart;
    for (const piece of pieces) end += buffer.write(piece, end, 'utf8');
    prevHash.copy(buffer, documentStart - 32);
    const hash = oneShotHash(
      'sha256',
      buffer.subarray(documentStart - 32, end),
      'buffer',
    ) as unknown as Buffer;
    buffer.write(
      `${head}"prev_hash":"${prevHash.toString('hex')}","hash":"${hash.toString('hex')}",`,
      start,
      'utf8',
    );
    this.#length = end;
    return hash;
  }

  /** The jsonb parameter: the buffer's bytes (valid until the next add). */
  finish(): Buffer {
    this.#reserve(1);
    this.#buffer[this.#length] = 0x5d; // ]
    return this.#buffer.subarray(0, this.#length + 1);
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const larger = Buffer.allocUnsafe(Math.max(2 * this.#buffer.length, this.#length + bytes));
    this.#buffer.copy(larger, 0, 0, this.#length);
    this.#buffer = larger;
  }
}
