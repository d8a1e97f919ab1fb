/**
 * A spool record becomes the AMQP message consumers rely on: the same properties and CloudEvents headers
 * whether a client publishes it with amqplib's options (`options`) or the publisher hands its pre-built
 * fields to amqplib's lower level (`fields`, ../../../src/bus/confirm-send.ts), and nothing reused between
 * messages leaks from one to the next (the source text and time string are cached).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeRecord, type OutboundHeader, toOutboundMessage } from '../../../src/bus/outbound-message.ts';
import { PRODUCER_HEADERS } from '../../../src/bus/producer-sequence.ts';
import { exchangeFor } from '../../../src/bus/topology.ts';

const header = (overrides: Partial<OutboundHeader> = {}): OutboundHeader => ({
  eventType: 'model.queried',
  eventId: '0193a5c4-3b1e-7c3e-9f00-000000000001',
  correlationId: 'corr-1',
  timestampMs: Date.UTC(2026, 11, 7, 21, 0, 0, 123),
  source: 'api',
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  modelId: 'model-a',
  stamp: { producer: '6f1c2d3e-0000-4000-8000-000000000000', sequence: 42 },
  ...overrides,
});
const messageOf = (h: OutboundHeader, json = '{"a":1}') =>
  toOutboundMessage(Buffer.from(encodeRecord(h, json)));

test('fields carry the properties and CloudEvents headers; options say the same to publish()', () => {
  const h = header();
  const message = messageOf(h);
  const { fields } = message;
  assert.equal(message.body.toString(), '{"a":1}');
  assert.equal(fields.exchange, exchangeFor('model.queried'));
  assert.equal(fields.routingKey, 'model.queried');
  assert.equal(fields.mandatory, true);
  assert.equal(fields.deliveryMode, 2, 'persistent');
  assert.equal(fields.messageId, h.eventId);
  assert.equal(fields.correlationId, 'corr-1');
  assert.equal(fields.type, 'model.queried');
  assert.equal(fields.timestamp, Math.floor(h.timestampMs / 1000));
  assert.equal(fields.appId, 'telemetry-bus');
  assert.equal(fields.contentType, 'application/json');
  assert.deepEqual(Object.entries(fields.headers), [
    ['cloudEvents:specversion', '1.0'],
    ['cloudEvents:id', h.eventId],
    ['cloudEvents:type', 'model.queried'],
    ['cloudEvents:source', '/telemetry-bus/api'],
    ['cloudEvents:time', '2026-12-07T21:00:00.123Z'],
    ['traceparent', h.traceparent],
    ['model_id', 'model-a'],
    [PRODUCER_HEADERS.producer, h.stamp?.producer],
    [PRODUCER_HEADERS.sequence, 42],
  ]);
  assert.equal(Object.getPrototypeOf(fields.headers), Object.prototype, 'a plain object: no prototype chain');
  assert.deepEqual(message.options, {
    persistent: true,
    mandatory: true,
    contentType: 'application/json',
    messageId: h.eventId,
    correlationId: 'corr-1',
    type: 'model.queried',
    timestamp: fields.timestamp,
    appId: 'telemetry-bus',
    headers: fields.headers,
  });
  assert.equal(message.eventType, 'model.queried');
  assert.equal(message.timestampMs, h.timestampMs);
});

test('what is reused between messages (source text, time string) is never another message’s', () => {
  const first = messageOf(header({ source: 'api', timestampMs: 1_000 }));
  const second = messageOf(header({ source: 'worker', timestampMs: 1_000 }));
  const third = messageOf(header({ source: 'api', timestampMs: 2_001 }));
  assert.equal(first.fields.headers['cloudEvents:source'], '/telemetry-bus/api');
  assert.equal(second.fields.headers['cloudEvents:source'], '/telemetry-bus/worker');
  assert.equal(first.fields.headers['cloudEvents:time'], '1970-01-01T00:00:01.000Z');
  assert.equal(second.fields.headers['cloudEvents:time'], '1970-01-01T00:00:01.000Z');
  assert.equal(third.fields.headers['cloudEvents:time'], '1970-01-01T00:00:02.001Z');
  assert.notEqual(first.fields.headers, second.fields.headers, 'a headers object per message');
});

test('records of releases before producer stamps, and events about no model, get no such headers', () => {
  const message = messageOf(header({ stamp: undefined, modelId: '' }));
  assert.deepEqual(
    Object.keys(message.fields.headers).filter((key) => !key.startsWith('cloudEvents:')),
    ['traceparent'],
  );
});

test('a record that is not ours is refused, not half-published', () => {
  assert.throws(() => toOutboundMessage(Buffer.from('no header line')), /no header line/);
  assert.throws(() => toOutboundMessage(Buffer.from('model.queried\tid\n{}')), /incomplete/);
});
