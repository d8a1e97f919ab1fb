import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { InflightWindow } from '../../../src/bus/inflight-window.ts';

test('the settled prefix grows only when its head settles, whatever order confirms come in', () => {
  const window = new InflightWindow();
  const a = window.push(10, 0);
  const b = window.push(11, 0);
  const c = window.push(13, 0);
  assert.equal(window.settle(b), -1);
  assert.equal(window.settle(c), -1);
  assert.equal(window.size, 3);
  assert.equal(window.settle(a), 13);
  assert.equal(window.size, 0);
});

test('after clear(), late settles of the old entries change nothing', () => {
  const window = new InflightWindow();
  const old = window.push(1, 5);
  assert.equal(window.clear(), 1);
  const fresh = window.push(1, 9);
  assert.equal(window.settle(old), -1);
  assert.equal(window.oldestSentAt(), 9);
  assert.equal(window.settle(fresh), 1);
});

test('oldestSentAt follows the head; restartClocks resets the unsettled', () => {
  const window = new InflightWindow();
  const a = window.push(1, 100);
  window.push(2, 200);
  assert.equal(window.oldestSentAt(), 100);
  window.settle(a);
  assert.equal(window.oldestSentAt(), 200);
  window.restartClocks(500);
  assert.equal(window.oldestSentAt(), 500);
});

test('model: the reported prefix always equals the longest fully settled prefix (with compaction)', () => {
  fc.assert(
    fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 12_000 }), (seeds) => {
      const window = new InflightWindow();
      const count = seeds.length;
      const sequences = seeds.map((_seed, index) => window.push(index * 2, 0));
      const order = seeds
        .map((seed, index) => ({ seed, index }))
        .sort((x, y) => x.seed - y.seed || x.index - y.index);
      const settled = new Array<boolean>(count).fill(false);
      let prefix = 0;
      for (const { index } of order) {
        settled[index] = true;
        const reported = window.settle(sequences[index] as number);
        let next = prefix;
        while (next < count && settled[next]) next++;
        assert.equal(reported, next > prefix ? (next - 1) * 2 : -1);
        prefix = next;
      }
      assert.equal(window.size, 0);
    }),
    { numRuns: 30 },
  );
});

test('each entry is counted once, in order, when it joins the settled prefix, however often it is confirmed', () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat(40), { minLength: 1, maxLength: 200 }),
      fc.integer({ min: 1, max: 40 }),
      (confirms, entries) => {
        const window = new InflightWindow();
        const counted: number[] = [];
        const sequences = Array.from({ length: entries }, (_, index) =>
          window.push(index, 0, { eventType: 'api.request', timestampMs: index }),
        );
        const onPrefix = (label: { timestampMs: number }) => counted.push(label.timestampMs);
        // Some confirms arrive twice, in any order; then every entry is confirmed.
        for (const pick of confirms) window.settle(sequences[pick % entries] as number, onPrefix);
        for (const sequence of sequences) window.settle(sequence, onPrefix);
        assert.deepEqual(
          counted,
          sequences.map((_, index) => index),
        );
      },
    ),
  );
});

test('entries without a label are settled but not counted', () => {
  const window = new InflightWindow();
  const counted: string[] = [];
  window.settle(window.push(1, 0), (label) => counted.push(label.eventType));
  window.settle(window.push(2, 0, { eventType: 'model.updated', timestampMs: 0 }), (label) =>
    counted.push(label.eventType),
  );
  assert.deepEqual(counted, ['model.updated']);
});
