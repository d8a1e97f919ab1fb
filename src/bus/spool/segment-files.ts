/**
 * The segment files of a spool directory: their names, the listing, and the recovery scan at open.
 *
 * A segment is named by the offset of its first record, zero-padded to 20 digits, so that sorting names
 * sorts offsets and a segment's last offset is the next segment's first minus one: no index file to keep
 * in step. Only the newest segment holding bytes is scanned at open, because it is the only one a crash
 * can leave half-written; older ones are checked as they are read.
 */
import fs from 'node:fs';
import path from 'node:path';
import { type FillRequest, SegmentBuffer } from './segment-buffer.ts';

const NAME_PATTERN = /^(\d{20})\.seg$/;

export interface SegmentEntry {
  readonly firstOffset: number;
  readonly path: string;
  /** Bytes of whole records: the writer's committed length, or the file's size for a finished segment. */
  size: number;
  /** Set when the file was deleted, so a reader positioned in it knows to look elsewhere. */
  deleted: boolean;
}

export function segmentFileName(firstOffset: number): string {
  return `${String(firstOffset).padStart(20, '0')}.seg`;
}

/** The directory's segments, oldest first. Other files (lock, confirmed offset, strays) are ignored. */
export function listSegments(directory: string): SegmentEntry[] {
  const segments: SegmentEntry[] = [];
  for (const name of fs.readdirSync(directory)) {
    const match = NAME_PATTERN.exec(name);
    if (match === null) continue;
    const firstOffset = Number(match[1]);
    if (!Number.isSafeInteger(firstOffset)) continue;
    const file = path.join(directory, name);
    segments.push({ firstOffset, path: file, size: fs.statSync(file).size, deleted: false });
  }
  return segments.sort((a, b) => a.firstOffset - b.firstOffset);
}

export interface ScanResult {
  /** Length of the longest prefix made of whole, intact records. */
  validBytes: number;
  records: number;
}

/** Reads a segment from its start, synchronously (open is synchronous), and stops at the first bad byte. */
export function scanSegmentSync(segment: SegmentEntry): ScanResult {
  const fd = fs.openSync(segment.path, 'r');
  try {
    const cursor = new SegmentBuffer(segment.firstOffset);
    for (;;) {
      const step = cursor.next(segment.size);
      if (step.kind === 'record') {
        cursor.advance(step.size);
      } else if (step.kind === 'fill') {
        cursor.filled(step.request, readFullySync(fd, step.request));
      } else {
        return { validBytes: cursor.position, records: cursor.expectedOffset - segment.firstOffset };
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

function readFullySync(fd: number, request: FillRequest): number {
  let total = 0;
  while (total < request.length) {
    const bytesRead = fs.readSync(
      fd,
      request.buffer,
      request.bufferOffset + total,
      request.length - total,
      request.filePosition + total,
    );
    if (bytesRead === 0) break;
    total += bytesRead;
  }
  return total;
}
