/**
 * Random appends, confirms, reads and reopens against a model of what the spool must hold: every record
 * appended and not confirmed is readable, in order, with its payload; confirmed ones may be gone.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { HEADER_BYTES } from '../../../../src/bus/spool/record-format.ts';
import { Spool, type SpoolOptions } from '../../../../src/bus/spool/spool.ts';
import { payloadFor, readAll, segmentFiles, sumOfSegmentSizes } from './spool-test-kit.ts';

type Command =
  | { kind: 'append'; size: number; count: number }
  | { kind: 'confirm'; fraction: number }
  | { kind: 'read'; fraction: number; maxRecords: number; maxBytes: number }
  | { kind: 'reopen' };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('append'),
      size: fc.integer({ min: 8, max: 300 }),
      count: fc.integer({ min: 1, max: 12 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('confirm'),
      fraction: fc.double({ min: -0.2, max: 1.2, noNaN: true }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('read'),
      fraction: fc.double({ min: -0.1, max: 1.1, noNaN: true }),
      maxRecords: fc.integer({ min: 1, max: 20 }),
      maxBytes: fc.integer({ min: 1, max: 3000 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

const settings = fc.record({
  segmentBytes: fc.integer({ min: 100, max: 3000 }),
  maxBytes: fc.integer({ min: 2000, max: 20_000 }),
  fsyncIntervalMs: fc.constantFrom(0, 50),
});

test('the spool behaves like its model through random appends, confirms, reads and reopens', async () => {
  await fc.assert(
    fc.asyncProperty(settings, fc.array(command, { maxLength: 50 }), async (options, commands) => {
      const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'spool-model-'));
      const open = () => Spool.open({ directory, ...options } satisfies SpoolOptions);
      let spool = open();
      const sizes = new Map<number, number>();
      let next = 0;
      let confirmed = -1;
      try {
        for (const step of commands) {
          switch (step.kind) {
            case 'append':
              for (let i = 0; i < step.count; i++) {
                const full = spool.stats().bytes + HEADER_BYTES + step.size > options.maxBytes;
                const offset = spool.append(payloadFor(next, step.size));
                if (full) {
                  assert.equal(offset, -1);
                } else {
                  assert.equal(offset, next);
                  sizes.set(next++, step.size);
                }
              }
              break;
            case 'confirm': {
              const target = Math.round(confirmed + step.fraction * (next - 1 - confirmed));
              spool.confirm(target);
              confirmed = Math.max(confirmed, Math.min(target, next - 1));
              break;
            }
            case 'read': {
              const from = Math.round(step.fraction * next);
              const records = await spool.read(from, step.maxRecords, step.maxBytes);
              assert.ok(records.length <= step.maxRecords);
              if (records.length > 1) {
                const bytes = records.reduce((sum, record) => sum + record.payload.length, 0);
                assert.ok(bytes <= step.maxBytes, `${bytes} > ${step.maxBytes}`);
              }
              const mustStartBy = Math.max(from, confirmed + 1);
              if (mustStartBy < next) assert.ok(records.length > 0, `nothing from ${from}`);
              for (const [i, record] of records.entries()) {
                if (i === 0)
                  assert.ok(
                    record.offset >= from && record.offset <= mustStartBy,
                    `starts at ${record.offset}`,
                  );
                else assert.equal(record.offset, (records[i - 1]?.offset as number) + 1);
                assert.deepEqual(record.payload, payloadFor(record.offset, sizes.get(record.offset)));
              }
              break;
            }
            case 'reopen':
              await spool.close();
              spool = open();
              assert.equal(spool.stats().nextOffset, next);
              assert.equal(spool.stats().confirmedOffset, confirmed);
              break;
          }
          const stats = spool.stats();
          assert.equal(stats.bytes, sumOfSegmentSizes(directory));
          assert.equal(stats.segments, segmentFiles(directory).length);
          assert.equal(stats.confirmedOffset, confirmed);
          assert.equal(stats.unconfirmed, next - 1 - confirmed);
          assert.equal(stats.corruptRecords + stats.tornRecords, 0);
        }
        const rest = await readAll(spool, confirmed + 1, 7, 500);
        assert.deepEqual(
          rest.map((record) => record.offset),
          Array.from({ length: next - 1 - confirmed }, (_, i) => confirmed + 1 + i),
        );
      } finally {
        await spool.close();
        fs.rmSync(directory, { recursive: true, force: true });
      }
    }),
    { numRuns: 80 },
  );
});
