/**
 * The spool against a real kill -9: a child process appends as fast as it can and is killed mid-stream;
 * everything it was told was appended must be readable after a restart, and a torn tail must be skipped
 * and counted rather than stop the spool from opening.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { encodeRecord, HEADER_BYTES } from '../../src/bus/spool/record-format.ts';
import { Spool, type SpoolRecord } from '../../src/bus/spool/spool.ts';
import { LOCK_FILE } from '../../src/bus/spool/spool-lock.ts';
import { CRASH_SEGMENT_BYTES, crashPayload } from '../fixtures/spool-writer.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WRITER = fileURLToPath(new URL('../fixtures/spool-writer.ts', import.meta.url));

interface Killed {
  /** The highest offset the child printed, i.e. saw append return. */
  lastReported: number;
  pid: number;
}

/** Runs the writer until it has appended for `runMs` after opening, then kills it with SIGKILL. */
async function runAndKill(directory: string, args: string[], runMs: number): Promise<Killed> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, directory, ...args], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // 'close': exited and its stdout drained, so every offset it printed has been seen.
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  let lastReported = -1;
  let ready: () => void = () => {};
  const started = new Promise<void>((resolve) => {
    ready = resolve;
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'ready') ready();
    // A line cut by the kill is a prefix of a number: smaller, so harmless.
    else if (/^\d+$/.test(line)) lastReported = Math.max(lastReported, Number(line));
  });
  const giveUp = new AbortController();
  const startedInTime = await Promise.race([
    started.then(() => true),
    exited.then(() => false),
    sleep(30_000, false, { signal: giveUp.signal }).catch(() => false),
  ]);
  giveUp.abort();
  if (!startedInTime) {
    child.kill('SIGKILL');
    assert.fail(`the writer did not start: ${stderr}`);
  }
  await sleep(runMs);
  assert.ok(child.kill('SIGKILL'));
  // Reaped before the lock is checked, or its pid would still look alive.
  await exited;
  assert.equal(child.signalCode, 'SIGKILL', stderr);
  return { lastReported, pid: child.pid as number };
}

async function readAll(spool: Spool, from: number): Promise<SpoolRecord[]> {
  const all: SpoolRecord[] = [];
  for (let next = from; ; ) {
    const records = await spool.read(next, 5000, 8 * 1024 * 1024);
    if (records.length === 0) return all;
    all.push(...records);
    next = (records.at(-1) as SpoolRecord).offset + 1;
  }
}

function tempDirectory(t: { after(fn: () => unknown): void }): string {
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-crash-'));
  t.after(() => fs.rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/** Half of a record (a whole header promising 1000 bytes, 100 of them there), as a crash leaves one. */
function halfRecord(): Buffer {
  return encodeRecord(0, Buffer.alloc(1000, 0x5a)).subarray(0, HEADER_BYTES + 100);
}

test('after a kill -9, every record the writer saw appended is readable, in order, intact', async (t) => {
  const directory = tempDirectory(t);
  const { lastReported, pid } = await runAndKill(directory, [], 300);
  t.diagnostic(`${lastReported + 1} records reported before the kill`);
  assert.ok(lastReported >= 1000, `only ${lastReported + 1} records reported`);
  assert.equal(JSON.parse(fs.readFileSync(path.join(directory, LOCK_FILE), 'utf8')).pid, pid);

  // And a torn record by hand at the end of the newest segment, on top of whatever the kill left.
  const segments = fs
    .readdirSync(directory)
    .filter((name) => name.endsWith('.seg'))
    .sort();
  assert.ok(segments.length > 2, `${segments.length} segments`);
  const newest = path.join(directory, segments.at(-1) as string);
  fs.appendFileSync(newest, halfRecord());

  const spool = Spool.open({ directory, segmentBytes: CRASH_SEGMENT_BYTES });
  t.after(() => spool.close());
  const stats = spool.stats();
  assert.equal(stats.tornRecords, 1);
  assert.ok(stats.nextOffset > lastReported, `next offset ${stats.nextOffset}, reported ${lastReported}`);

  const records = await readAll(spool, 0);
  assert.equal(records.length, stats.nextOffset);
  for (const [i, record] of records.entries()) {
    assert.equal(record.offset, i);
    assert.deepEqual(record.payload, crashPayload(i), `record ${i}`);
  }
  assert.equal(spool.stats().corruptRecords, 0);
  assert.equal(spool.stats().tornRecords, 1);

  // The spool goes on from there.
  const next = spool.append(crashPayload(stats.nextOffset));
  assert.equal(next, stats.nextOffset);
  assert.deepEqual(await spool.read(next, 10, 1 << 20), [{ offset: next, payload: crashPayload(next) }]);
  assert.equal(JSON.parse(fs.readFileSync(path.join(directory, LOCK_FILE), 'utf8')).pid, process.pid);
});

test('after a kill -9 while confirming, nothing unconfirmed is lost and confirmed segments stay deleted', async (t) => {
  const directory = tempDirectory(t);
  const { lastReported } = await runAndKill(directory, ['--confirm'], 500);
  t.diagnostic(`${lastReported + 1} records reported before the kill`);
  assert.ok(lastReported >= 1000, `only ${lastReported + 1} records reported`);

  const spool = Spool.open({ directory, segmentBytes: CRASH_SEGMENT_BYTES });
  t.after(() => spool.close());
  const { confirmedOffset, nextOffset } = spool.stats();
  // Persisted every 50 ms (and bounded below by the deleted segments): never more than was appended.
  assert.ok(confirmedOffset < nextOffset);
  assert.ok(nextOffset > lastReported);

  const records = await readAll(spool, confirmedOffset + 1);
  assert.equal(records[0]?.offset, confirmedOffset + 1);
  assert.equal(records.length, nextOffset - 1 - confirmedOffset);
  for (const [i, record] of records.entries()) {
    assert.equal(record.offset, confirmedOffset + 1 + i);
    assert.deepEqual(record.payload, crashPayload(record.offset));
  }
  // A kill mid-write may tear the last record (counted as torn); nothing may be corrupt.
  assert.equal(spool.stats().corruptRecords, 0);
  // Given time to fill a few segments, the child deleted those it confirmed, and that was kept.
  if (lastReported >= 5000) {
    assert.ok(confirmedOffset >= 0, `confirmed ${confirmedOffset}`);
    const firstSegment = fs
      .readdirSync(directory)
      .filter((name) => name.endsWith('.seg'))
      .sort()[0] as string;
    assert.ok(Number(firstSegment.slice(0, 20)) > 0, firstSegment);
  }
});
