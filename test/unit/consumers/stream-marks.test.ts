import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  advance,
  claimGaps,
  classify,
  type Gap,
  type GapEdits,
  type StreamCopy,
} from '../../../src/consumers/deduplication/stream-marks.ts';

test('classify: above the high is new, at or below is to be looked up, a second copy in the batch repeats', () => {
  const highs = new Map([['a', 5]]);
  const copies: StreamCopy[] = [
    { stream: 'a', sequence: 6 },
    { stream: 'a', sequence: 5 },
    { stream: 'a', sequence: 6 },
    { stream: 'b', sequence: 1 },
    { stream: 'a', sequence: 2 },
    { stream: 'a', sequence: 2 },
  ];
  assert.deepEqual(classify(copies, highs), ['new', 'below', 'repeat', 'new', 'below', 'repeat']);
});

test('advance: the high moves to the largest number applied; what it jumps over are gaps', () => {
  assert.deepEqual(advance(3, []), { high: 3, gaps: [] });
  assert.deepEqual(advance(3, [4, 5]), { high: 5, gaps: [] });
  assert.deepEqual(advance(0, [9, 4, 6]), {
    high: 9,
    gaps: [
      { first: 1, last: 3 },
      { first: 5, last: 5 },
      { first: 7, last: 8 },
    ],
  });
});

test('claimGaps: a gap keeps its row when its start stays missing; added rows never start on an existing one', () => {
  const edits: GapEdits = { shortened: [], removed: [], added: [] };
  const gaps: Gap[] = [
    { first: 1, last: 3 },
    { first: 10, last: 20 },
    { first: 30, last: 30 },
  ];
  const claimed = claimGaps('s', [10, 15, 20, 30, 2, 25], gaps, edits);
  assert.deepEqual(
    [...claimed].sort((a, b) => a - b),
    [2, 10, 15, 20, 30],
  );
  assert.deepEqual(edits.shortened, [{ stream: 's', first: 1, last: 1 }]);
  assert.deepEqual(edits.removed, [
    { stream: 's', first: 10 },
    { stream: 's', first: 30 },
  ]);
  assert.deepEqual(edits.added, [
    { stream: 's', first: 3, last: 3 },
    { stream: 's', first: 11, last: 14 },
    { stream: 's', first: 16, last: 19 },
  ]);
});

/**
 * The model: streams of numbered events delivered in any order, with copies (redeliveries, resends,
 * replays), late first copies (a message the broker refused, sent again), and failures (the event is
 * not applied by that transaction and comes back later, as the retry ladder or a replay brings it). Per
 * transaction the runtime's rule: new = above the high, or in a gap; applied = new minus failures. Every
 * event must end applied exactly once, and never twice on the way.
 */
test('every event applied exactly once, whatever the order, copies and failures', () => {
  const scenario = fc.record({
    streams: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 3 }),
    shuffle: fc.array(fc.nat(), { minLength: 60, maxLength: 60 }),
    copies: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 20 }),
    failures: fc.array(fc.nat(), { maxLength: 30 }),
    batches: fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 20 }),
  });
  fc.assert(
    fc.property(scenario, ({ streams, shuffle, copies, failures, batches }) => {
      const events: StreamCopy[] = streams.flatMap((length, s) =>
        Array.from({ length }, (_, i) => ({ stream: `p${s}`, sequence: i + 1 })),
      );
      // Mostly in order per stream, but some first copies moved later (refused, then sent again).
      const queue: StreamCopy[] = [...events];
      for (const [i, k] of shuffle.entries()) {
        if (k % 5 !== 0 || queue.length < 2) continue;
        const [moved] = queue.splice(i % queue.length, 1);
        queue.splice(Math.min(queue.length, (i % queue.length) + 1 + (k % 7)), 0, moved as StreamCopy);
      }
      for (const [which, where] of copies) {
        const copy = events[which % events.length] as StreamCopy;
        queue.splice(where % (queue.length + 1), 0, { ...copy });
      }
      const toFail = new Map<string, number>();
      for (const f of failures) {
        const e = events[f % events.length] as StreamCopy;
        const key = `${e.stream}#${e.sequence}`;
        toFail.set(key, (toFail.get(key) ?? 0) + 1);
      }

      const highs = new Map<string, number>();
      const gaps = new Map<string, Gap[]>();
      const applied = new Map<string, number>();
      let b = 0;
      while (queue.length > 0) {
        const batch = queue.splice(0, batches[b++ % batches.length] as number);
        const verdicts = classify(batch, highs);
        const fresh: StreamCopy[] = [];
        const below = new Map<string, number[]>();
        batch.forEach((copy, i) => {
          if (verdicts[i] === 'new') fresh.push(copy);
          else if (verdicts[i] === 'below')
            below.set(copy.stream, [...(below.get(copy.stream) ?? []), copy.sequence]);
        });
        for (const [stream, numbers] of below) {
          const probe: GapEdits = { shortened: [], removed: [], added: [] };
          for (const n of claimGaps(stream, numbers, gaps.get(stream) ?? [], probe))
            fresh.push({ stream, sequence: n });
        }
        // Failures: not applied now, a copy comes back at the end of the queue.
        const done = fresh.filter((copy) => {
          const key = `${copy.stream}#${copy.sequence}`;
          const left = toFail.get(key) ?? 0;
          if (left === 0) return true;
          toFail.set(key, left - 1);
          queue.push({ ...copy });
          return false;
        });
        // The transaction of what was applied: claims, then the highs' moves.
        const byStream = new Map<string, StreamCopy[]>();
        for (const copy of done) byStream.set(copy.stream, [...(byStream.get(copy.stream) ?? []), copy]);
        for (const [stream, list] of byStream) {
          const high = highs.get(stream) ?? 0;
          const claimedNumbers = list.filter((c) => c.sequence <= high).map((c) => c.sequence);
          const edits: GapEdits = { shortened: [], removed: [], added: [] };
          claimGaps(stream, claimedNumbers, gaps.get(stream) ?? [], edits);
          let rows = [...(gaps.get(stream) ?? [])];
          for (const s of edits.shortened)
            rows = rows.map((g) => (g.first === s.first ? { first: g.first, last: s.last } : g));
          for (const r of edits.removed) rows = rows.filter((g) => g.first !== r.first);
          rows.push(...edits.added.map(({ first, last }) => ({ first, last })));
          const moved = advance(
            high,
            list.filter((c) => c.sequence > high).map((c) => c.sequence),
          );
          rows.push(...moved.gaps);
          highs.set(stream, moved.high);
          gaps.set(stream, rows);
          for (const copy of list) {
            const key = `${copy.stream}#${copy.sequence}`;
            applied.set(key, (applied.get(key) ?? 0) + 1);
            assert.equal(applied.get(key), 1, `${key} applied twice`);
          }
        }
      }
      for (const e of events)
        assert.equal(applied.get(`${e.stream}#${e.sequence}`), 1, `${e.stream}#${e.sequence} lost`);
      // No gap left: every number came.
      for (const rows of gaps.values()) assert.deepEqual(rows, []);
    }),
    { numRuns: 500 },
  );
});
