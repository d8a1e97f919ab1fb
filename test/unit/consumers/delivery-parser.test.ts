import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import type { ConsumeMessage } from 'amqplib';
import { toDelivery } from '../../../src/consumers/delivery-parser.ts';
import { ParsedEvents } from '../../../src/consumers/parsed-events.ts';
import { PoisonMessageError } from '../../../src/consumers/poison-message-error.ts';
import { exampleEvent } from '../../support/event-examples.ts';

/** A message as amqplib delivers it (only what a delivery reads). */
function message(content: Buffer, messageId?: string): ConsumeMessage {
  return {
    content,
    fields: { deliveryTag: 1, redelivered: true, exchange: 'telemetry.models', routingKey: 'model.queried' },
    properties: { messageId, headers: { traceparent: 't' }, contentType: 'application/json' },
  } as unknown as ConsumeMessage;
}

const validated = {};

test('a valid event becomes a delivery with its event, its id and the message fields', () => {
  const event = exampleEvent('model.queried');
  const delivery = toDelivery(
    validated,
    message(Buffer.from(JSON.stringify(event)), event.event_id),
    new ParsedEvents(),
  );
  assert.ok(!(delivery instanceof PoisonMessageError));
  assert.deepEqual(delivery.event, event);
  assert.equal(delivery.id, event.event_id);
  assert.equal(delivery.routingKey, 'model.queried');
  assert.equal(delivery.redelivered, true);
  assert.deepEqual(delivery.properties.headers, { traceparent: 't' });
});

test('a second copy of the same bytes takes the event parsed the first time', () => {
  const event = exampleEvent('model.queried');
  const parsed = new ParsedEvents();
  const bytes = Buffer.from(JSON.stringify(event));
  const first = toDelivery(validated, message(bytes, event.event_id), parsed);
  const second = toDelivery(validated, message(Buffer.from(bytes), event.event_id), parsed);
  assert.ok(!(first instanceof PoisonMessageError) && !(second instanceof PoisonMessageError));
  assert.equal(second.event, first.event, 'the same object: parsed once');
});

test('not JSON, or not a valid event: poison, with the reason', () => {
  const notJson = toDelivery(validated, message(Buffer.from('{nope')), new ParsedEvents());
  assert.ok(notJson instanceof PoisonMessageError);
  assert.match(notJson.message, /^the message is not JSON/);
  const invalid = toDelivery(
    validated,
    message(Buffer.from(JSON.stringify({ ...exampleEvent('model.queried'), source: 42 }))),
    new ParsedEvents(),
  );
  assert.ok(invalid instanceof PoisonMessageError);
  assert.match(invalid.message, /^invalid event: model\.queried: \/source /);
});

test('a raw consumer: no event; its own id, else the message id, else a hash of the bytes; poison if idOf throws', () => {
  const bytes = Buffer.from('raw bytes');
  const raw = (consumer: Parameters<typeof toDelivery>[0], messageId?: string) =>
    toDelivery(consumer, message(bytes, messageId), new ParsedEvents());
  const own = raw({ validate: false, idOf: () => 'own-id' }, 'm1');
  assert.ok(!(own instanceof PoisonMessageError));
  assert.equal(own.event, undefined);
  assert.equal(own.id, 'own-id');
  assert.equal((raw({ validate: false }, 'm1') as { id: string }).id, 'm1');
  assert.equal(
    (raw({ validate: false }) as { id: string }).id,
    `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
  );
  const unidentified = raw({
    validate: false,
    idOf: () => {
      throw new Error('no id');
    },
  });
  assert.ok(unidentified instanceof PoisonMessageError);
  assert.match(unidentified.message, /^cannot identify the message: no id/);
});
