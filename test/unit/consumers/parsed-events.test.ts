import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ParsedEvents } from '../../../src/consumers/parsed-events.ts';
import { exampleEvent } from '../../support/event-examples.ts';

test('a copy with the same id and bytes gets the event parsed before; other bytes, another id, or evicted: none', () => {
  const cache = new ParsedEvents(2);
  const event = exampleEvent('model.queried');
  const bytes = Buffer.from(JSON.stringify(event));
  cache.set(event.event_id, bytes, event);
  assert.equal(cache.get(event.event_id, Buffer.from(JSON.stringify(event))), event);
  assert.equal(
    cache.get(event.event_id, Buffer.from(JSON.stringify({ ...event, source: 'admin' }))),
    undefined,
  );
  assert.equal(cache.get(undefined, bytes), undefined);
  assert.equal(cache.get('another', bytes), undefined);
  cache.set('b', bytes, event);
  cache.set('c', bytes, event);
  assert.equal(cache.get(event.event_id, bytes), undefined, 'the oldest went first');
  assert.equal(cache.get('c', bytes), event);
});
