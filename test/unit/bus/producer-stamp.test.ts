import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PRODUCER_HEADERS, stampOf } from '../../../src/bus/producer-sequence.ts';

const stamp = (producer: unknown, sequence: unknown) =>
  stampOf({ [PRODUCER_HEADERS.producer]: producer, [PRODUCER_HEADERS.sequence]: sequence });

test('a stamp needs a UUID producer and a positive whole number, however the producer before it was', () => {
  const producer = '0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b';
  assert.equal(stamp('', 1), undefined, 'an empty producer, before any valid one');
  assert.deepEqual(stamp(producer, 2), { producer, sequence: 2 });
  // The valid id is remembered: what differs from it is checked again.
  assert.deepEqual(stamp(producer, 3), { producer, sequence: 3 });
  assert.equal(stamp(`${producer}x`, 4), undefined);
  assert.equal(stamp('', 5), undefined);
  assert.equal(stamp(producer.toUpperCase(), 6), undefined);
  assert.equal(stamp(producer, 0), undefined);
  assert.equal(stamp(producer, 1.5), undefined);
  assert.deepEqual(stamp(Buffer.from(producer), '7'), { producer, sequence: 7 });
  assert.equal(stampOf(undefined), undefined);
});
