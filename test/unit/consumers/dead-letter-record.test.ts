/**
 * What the archive makes of a message, without a broker: the id (given, or derived stably), the fields of
 * runtime-made and broker-made dead letters, messages with nothing in them, and the JSON form of headers,
 * which must survive jsonb and come back as amqplib publishes them. Plus the headers a replay sends.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { Delivery } from '../../../src/consumers/consumer.ts';
import {
  deadLetterIdOf,
  fromJsonValue,
  toDeadLetterRecord,
  toJsonValue,
} from '../../../src/consumers/dlq/dead-letter-record.ts';
import { replayHeaders } from '../../../src/consumers/dlq/dlq-replay.ts';
import { FAILURE_HEADERS } from '../../../src/consumers/failure-policy.ts';
import { exampleEvent } from '../../support/event-examples.ts';

function message(
  content: Buffer,
  headers: Record<string, unknown>,
  properties: Partial<Delivery['properties']> = {},
): Omit<Delivery, 'id' | 'event'> {
  return {
    content,
    exchange: 'dead.letters',
    routingKey: 'model.queried',
    redelivered: false,
    properties: {
      messageId: undefined,
      correlationId: undefined,
      type: undefined,
      timestamp: undefined,
      headers,
      ...properties,
    },
  };
}

function delivery(raw: Omit<Delivery, 'id' | 'event'>): Delivery {
  return { ...raw, id: deadLetterIdOf(raw), event: undefined };
}

const brokerDeath = (count: number) => ({
  'x-death': [
    {
      count,
      reason: 'delivery_limit',
      queue: 'audit.trail',
      time: { '!': 'timestamp', value: 1_736_937_000 },
      exchange: 'models.events',
      'routing-keys': ['model.updated'],
    },
  ],
  'x-first-death-queue': 'audit.trail',
  'x-first-death-reason': 'delivery_limit',
  'x-delivery-count': 21,
});

describe('dead letter id', () => {
  test('the runtime’s x-dead-letter-id when it is a UUID', () => {
    const id = randomUUID();
    assert.equal(deadLetterIdOf(message(Buffer.from('{}'), { [FAILURE_HEADERS.deadLetterId]: id })), id);
  });

  test('derived when absent or not a UUID: stable for the same copy, different for another death', () => {
    const body = Buffer.from('{"event_id":"e"}');
    const first = deadLetterIdOf(message(body, brokerDeath(1), { messageId: 'm1' }));
    assert.match(first, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(deadLetterIdOf(message(body, brokerDeath(1), { messageId: 'm1' })), first);
    assert.notEqual(deadLetterIdOf(message(body, brokerDeath(2), { messageId: 'm1' })), first);
    assert.notEqual(deadLetterIdOf(message(body, brokerDeath(1), { messageId: 'm2' })), first);
    const invalid = message(body, { [FAILURE_HEADERS.deadLetterId]: 'not-a-uuid' });
    assert.equal(deadLetterIdOf(invalid), deadLetterIdOf(invalid));
    assert.notEqual(deadLetterIdOf(invalid), 'not-a-uuid');
    assert.notEqual(
      deadLetterIdOf(message(Buffer.from('a'), {})),
      deadLetterIdOf(message(Buffer.from('b'), {})),
    );
  });
});

describe('dead letter record', () => {
  test('runtime-made: error, history and route from the failure headers, fields from the envelope', () => {
    const event = exampleEvent('model.updated');
    const id = randomUUID();
    const record = toDeadLetterRecord(
      delivery(
        message(
          Buffer.from(JSON.stringify(event)),
          {
            [FAILURE_HEADERS.attempts]: 4,
            [FAILURE_HEADERS.firstFailureAt]: '2025-01-15T10:30:01.000Z',
            [FAILURE_HEADERS.lastFailureAt]: '2025-01-15T10:30:37.000Z',
            [FAILURE_HEADERS.errorType]: 'TypeError',
            [FAILURE_HEADERS.errorMessage]: 'boom',
            [FAILURE_HEADERS.errorStack]: 'TypeError: boom\n    at x',
            [FAILURE_HEADERS.originalExchange]: 'models.events',
            [FAILURE_HEADERS.originalRoutingKey]: 'model.updated',
            [FAILURE_HEADERS.originalQueue]: 'audit.trail',
            [FAILURE_HEADERS.deadLetterId]: id,
          },
          { messageId: event.event_id, type: 'model.updated' },
        ),
      ),
    );
    assert.equal(record.id, id);
    assert.equal(record.eventId, event.event_id);
    assert.equal(record.eventType, 'model.updated');
    assert.equal(record.modelId, event.data.model_id);
    assert.equal(record.reason, 'retries_exhausted');
    assert.equal(record.attempts, 4);
    assert.equal(record.errorType, 'TypeError');
    assert.equal(record.errorStack, 'TypeError: boom\n    at x');
    assert.equal(record.originalQueue, 'audit.trail');
    assert.equal(record.firstFailureAt.toISOString(), '2025-01-15T10:30:01.000Z');
    assert.equal(record.lastFailureAt.toISOString(), '2025-01-15T10:30:37.000Z');
  });

  test('broker-made: reason, queue and time from x-death', () => {
    const record = toDeadLetterRecord(
      delivery(message(Buffer.from('{}'), brokerDeath(1), { messageId: 'm' })),
    );
    assert.equal(record.reason, 'delivery_limit');
    assert.equal(record.errorType, 'DELIVERY_LIMIT');
    assert.match(record.errorMessage, /RabbitMQ dead-lettered the message from audit\.trail/);
    assert.equal(record.originalQueue, 'audit.trail');
    assert.equal(record.originalExchange, 'models.events');
    assert.equal(record.originalRoutingKey, 'model.updated');
    assert.equal(record.attempts, 21);
    assert.equal(record.lastFailureAt.getTime(), 1_736_937_000_000);
    assert.equal(record.eventId, 'm');
  });

  test('nothing to go on: no headers, a binary body with NUL bytes; nothing throws, text is storable', () => {
    const content = Buffer.from([0, 1, 2, 255, 0]);
    const record = toDeadLetterRecord(
      delivery(message(content, { 'x-error-type': 'Bad\u0000Type', weird: Buffer.from([0, 1]) })),
    );
    assert.equal(record.reason, 'retries_exhausted');
    assert.equal(record.errorType, 'Bad\uFFFDType');
    assert.equal(record.eventId, null);
    assert.equal(record.originalQueue, null);
    assert.equal(record.content, content);
    assert.deepEqual(record.headers.weird, { $bytes: 'AAE=' });
    const empty = toDeadLetterRecord(delivery(message(Buffer.alloc(0), {})));
    assert.equal(empty.reason, 'unknown');
    assert.equal(empty.errorType, 'UNKNOWN');
  });

  test('indexed text is cut short', () => {
    const record = toDeadLetterRecord(delivery(message(Buffer.from('x'), {}, { type: 'a'.repeat(10_000) })));
    assert.equal(record.eventType?.length, 256);
  });
});

describe('headers as JSON', () => {
  test('round trip: bytes, NUL strings and typed values come back as amqplib publishes them', () => {
    const headers = {
      text: 'plain',
      nul: 'a\u0000b',
      bytes: Buffer.from([0, 255]),
      number: 4,
      typed: { '!': 'timestamp', value: 1_736_937_000 },
      list: [{ nested: Buffer.from('x') }],
      big: 10n,
    };
    const json = JSON.parse(JSON.stringify(toJsonValue(headers)));
    assert.ok(!JSON.stringify(json).includes('\\u0000'), 'jsonb refuses \\u0000');
    const back = fromJsonValue(json) as Record<string, unknown>;
    assert.equal(back.text, 'plain');
    assert.equal(back.nul, 'a\u0000b');
    assert.deepEqual(back.bytes, Buffer.from([0, 255]));
    assert.deepEqual(back.typed, { '!': 'timestamp', value: 1_736_937_000 });
    assert.deepEqual((back.list as Array<{ nested: Buffer }>)[0]?.nested, Buffer.from('x'));
    assert.equal(back.big, '10');
  });
});

describe('replay headers', () => {
  test('a fresh retry budget: failure history and x-death gone, original route kept, replay marked', () => {
    const headers = replayHeaders(
      {
        id: '11111111-1111-4111-8111-111111111111',
        content: Buffer.alloc(0),
        properties: {},
        headers: toJsonValue({
          ...brokerDeath(1),
          [FAILURE_HEADERS.attempts]: 4,
          [FAILURE_HEADERS.errorStack]: 'stack',
          [FAILURE_HEADERS.deadLetterId]: '22222222-2222-4222-8222-222222222222',
          [FAILURE_HEADERS.originalQueue]: 'audit.trail',
          'x-replayed-from': '33333333-3333-4333-8333-333333333333',
          traceparent: '00-abc-def-01',
          bytes: Buffer.from([1]),
        }) as Record<string, unknown>,
        original_exchange: 'models.events',
        original_routing_key: 'model.updated',
        original_queue: 'audit.trail',
      },
      { label: 'api-key:k', keyId: 'k' },
    );
    for (const name of ['x-attempts', 'x-error-stack', 'x-dead-letter-id', 'x-death', 'x-delivery-count']) {
      assert.equal(headers[name], undefined, name);
    }
    assert.equal(headers['x-first-death-queue'], undefined);
    assert.equal(headers[FAILURE_HEADERS.originalExchange], 'models.events');
    assert.equal(headers[FAILURE_HEADERS.originalRoutingKey], 'model.updated');
    assert.equal(headers['x-replayed-from'], '11111111-1111-4111-8111-111111111111');
    assert.equal(headers['x-replayed-by'], 'api-key:k');
    assert.equal(headers.traceparent, '00-abc-def-01');
    assert.deepEqual(headers.bytes, Buffer.from([1]));
  });
});
