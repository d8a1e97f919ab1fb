import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventIdTime, newEventId } from '../../../src/bus/event-id.ts';
import { validateEvent } from '../../../src/bus/event-validator.ts';
import { exampleEvent } from '../../support/event-examples.ts';

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('a UUIDv7: version 7, RFC variant, its time in the first 48 bits, valid as an event_id', () => {
  const now = Date.UTC(2026, 11, 7, 12, 0, 0, 123);
  const id = newEventId(now + 1e9);
  assert.match(id, V7);
  assert.equal(eventIdTime(id), now + 1e9);
  assert.equal(eventIdTime('0b3f6a1c-7d2e-4c5b-9a8f-000000000001'), undefined);
  assert.ok(validateEvent({ ...exampleEvent('model.queried'), event_id: newEventId() }).ok);
});

test('ids of one process sort in the order they were made, within a millisecond and past the counter', () => {
  const ms = Date.now() + 2e9;
  const ids = Array.from({ length: 10_000 }, () => newEventId(ms));
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
  // 10,000 ids in one millisecond overflow the 12-bit counter: the time moves on rather than wrap.
  assert.ok((eventIdTime(ids.at(-1) as string) as number) > ms);
  // A clock that goes back is not followed.
  const later = newEventId(ms - 5000);
  assert.ok(later > (ids.at(-1) as string));
  for (const id of ids.slice(0, 50)) assert.match(id, V7);
});
