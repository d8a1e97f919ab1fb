/**
 * The publisher thread's reader of the spool (src/bus/spool/spool-tail-reader.ts), driven here in one
 * thread: it sees exactly the records the spool's shared tail says are whole, across segment rolls and
 * deletions, resumes after a seek, and reports damage to its owner.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { SpoolRecord } from '../../../../src/bus/spool/spool.ts';
import { SpoolTail } from '../../../../src/bus/spool/spool-tail.ts';
import { SpoolTailReader } from '../../../../src/bus/spool/spool-tail-reader.ts';
import { payloadFor, sandbox, segmentFiles } from './spool-test-kit.ts';

function readAllFrom(reader: SpoolTailReader, from: number, batch = 7): SpoolRecord[] {
  const all: SpoolRecord[] = [];
  let next = from;
  for (;;) {
    const records = reader.read(next, batch, 1 << 20);
    if (records.length === 0) return all;
    all.push(...records);
    next = (records.at(-1) as SpoolRecord).offset + 1;
  }
}

test('reads what the tail publishes, in order, across rolled segments, as appends go on', (t) => {
  const box = sandbox(t);
  const spool = box.open({ segmentBytes: 600, recentBytes: 0 });
  const tail = new SpoolTail();
  spool.shareTail(tail);
  const reader = new SpoolTailReader(box.directory, new SpoolTail(tail.buffer), () => assert.fail('damage'));
  t.after(() => reader.close());
  assert.deepEqual(reader.read(0, 10, 1 << 20), []);
  const seen: SpoolRecord[] = [];
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 13; i++) spool.append(payloadFor(round * 13 + i));
    seen.push(...readAllFrom(reader, seen.length));
    assert.equal(seen.length, (round + 1) * 13);
  }
  assert.ok(segmentFiles(box.directory).length > 3, 'the records span several segments');
  seen.forEach((record, index) => {
    assert.equal(record.offset, index);
    assert.deepEqual(record.payload, payloadFor(index));
  });
  assert.equal(reader.nextOffset(), 65);
});

test('bytes written but not yet published in the tail are not read (a write in progress)', (t) => {
  const box = sandbox(t);
  const spool = box.open({ recentBytes: 0 });
  const tail = new SpoolTail();
  spool.shareTail(tail);
  for (let i = 0; i < 3; i++) spool.append(payloadFor(i));
  const reader = new SpoolTailReader(box.directory, tail, () => assert.fail('damage'));
  t.after(() => reader.close());
  // A tail that says one record fewer, as while the third append's write is under way.
  const snapshot = tail.read({ nextOffset: 0, writerFirstOffset: 0, writerBytes: 0 });
  const size = snapshot.writerBytes / 3;
  tail.publish(2, snapshot.writerFirstOffset, 2 * size);
  assert.deepEqual(
    readAllFrom(reader, 0).map((record) => record.offset),
    [0, 1],
  );
  tail.publish(snapshot.nextOffset, snapshot.writerFirstOffset, snapshot.writerBytes);
  assert.deepEqual(
    readAllFrom(reader, 2).map((record) => record.offset),
    [2],
  );
});

test('a seek back (a resend) and a start below deleted segments read from what exists', (t) => {
  const box = sandbox(t);
  const spool = box.open({ segmentBytes: 400, recentBytes: 0 });
  const tail = new SpoolTail();
  spool.shareTail(tail);
  for (let i = 0; i < 40; i++) spool.append(payloadFor(i));
  const reader = new SpoolTailReader(box.directory, tail, () => assert.fail('damage'));
  t.after(() => reader.close());
  assert.equal(readAllFrom(reader, 0).length, 40);
  assert.deepEqual(
    readAllFrom(reader, 25).map((record) => record.offset),
    Array.from({ length: 15 }, (_, i) => 25 + i),
  );
  spool.confirm(19);
  const first = Number(segmentFiles(box.directory)[0]?.slice(0, 20));
  assert.ok(first > 0 && first <= 20, 'confirmed segments were deleted');
  const records = readAllFrom(reader, 0);
  assert.equal(records[0]?.offset, first);
  assert.equal(records.at(-1)?.offset, 39);
});

test('damage is reported with its segment and position, and reading goes on in the next segment', (t) => {
  const box = sandbox(t);
  const spool = box.open({ segmentBytes: 400, recentBytes: 0 });
  const tail = new SpoolTail();
  spool.shareTail(tail);
  for (let i = 0; i < 20; i++) spool.append(payloadFor(i));
  const [firstSegment, secondSegment] = segmentFiles(box.directory);
  assert.ok(firstSegment !== undefined && secondSegment !== undefined);
  // Flip a payload byte of the second record of the first segment.
  const file = path.join(box.directory, firstSegment);
  const bytes = fs.readFileSync(file);
  const recordSize = 20 + 64;
  bytes[recordSize + 30] = (bytes[recordSize + 30] as number) ^ 0xff;
  fs.writeFileSync(file, bytes);
  const damage: unknown[] = [];
  const reader = new SpoolTailReader(box.directory, tail, (...report) => damage.push(report));
  t.after(() => reader.close());
  const offsets = readAllFrom(reader, 0).map((record) => record.offset);
  assert.deepEqual(damage, [[0, recordSize, 'corrupt']]);
  const secondFirst = Number(secondSegment.slice(0, 20));
  assert.deepEqual(offsets, [0, ...Array.from({ length: 20 - secondFirst }, (_, i) => secondFirst + i)]);
  spool.reportDamage(0, recordSize, 'corrupt');
  spool.reportDamage(0, recordSize, 'corrupt');
  assert.equal(spool.stats().corruptRecords, 1, 'counted once');
});
