/**
 * What the spool's tests share: a temporary directory per test whose spools are closed before it is
 * removed (an open spool holds a lock and descriptors), and record payloads a reader can check.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool, type SpoolOptions, type SpoolRecord } from '../../../../src/bus/spool/spool.ts';

export interface Teardown {
  after(fn: () => unknown): void;
}

export interface SpoolSandbox {
  directory: string;
  /** Opens a spool on the sandbox directory; it is closed (if still open) when the test ends. */
  open(options?: Omit<SpoolOptions, 'directory'>): Spool;
}

export function sandbox(t: Teardown): SpoolSandbox {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-test-'));
  const opened: Spool[] = [];
  t.after(async () => {
    for (const spool of opened) await spool.close();
    fs.rmSync(directory, { recursive: true, force: true });
  });
  return {
    directory,
    open(options = {}) {
      const spool = Spool.open({ directory, ...options });
      opened.push(spool);
      return spool;
    },
  };
}

/** A payload of `size` bytes (at least 8) that names its record, so a misplaced one is caught. */
export function payloadFor(index: number, size = 64): Buffer {
  const payload = Buffer.alloc(Math.max(8, size), index % 251);
  payload.writeDoubleLE(index, 0);
  return payload;
}

/** Segment file names, oldest first. */
export function segmentFiles(directory: string): string[] {
  return fs
    .readdirSync(directory)
    .filter((name) => name.endsWith('.seg'))
    .sort();
}

/** Reads from `from` to the end in batches, as the publisher does. */
export async function readAll(
  spool: Spool,
  from = 0,
  batch = 1000,
  maxBytes = 1 << 30,
): Promise<SpoolRecord[]> {
  const all: SpoolRecord[] = [];
  let next = from;
  for (;;) {
    const records = await spool.read(next, batch, maxBytes);
    if (records.length === 0) return all;
    all.push(...records);
    next = (records.at(-1) as SpoolRecord).offset + 1;
  }
}

export function sumOfSegmentSizes(directory: string): number {
  return segmentFiles(directory).reduce((sum, name) => sum + fs.statSync(path.join(directory, name)).size, 0);
}
