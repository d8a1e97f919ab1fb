/**
 * Every request yields exactly one event, and that event arrives — schema-valid, with the right AMQP
 * properties and headers — in exactly the queues its bindings name. Read by an independent consumer on
 * the real broker, in a vhost of this file's own.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { validateEvent } from '../../src/bus/event-validator.ts';
import { buildTopology, exchangeFor, queuesFor, WORK_QUEUES } from '../../src/bus/topology.ts';
import { build, modelBody, type TestApp } from '../helper.ts';
import { type CollectedMessage, type QueueReader, readQueues } from '../support/queue-reader.ts';

const topology = buildTopology();

async function waitForBroker(app: TestApp): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (app.services.bus?.status().publisher.state !== 'connected') {
    if (Date.now() > deadline) throw new Error('the publisher did not connect');
    await sleep(20);
  }
}

const system: TestApp = await build({ after });
await waitForBroker(system);
const reader: QueueReader = await readQueues(system.vhost.url, WORK_QUEUES);
after(() => reader.close());

interface Sent {
  correlationId: string;
  status: number;
}

let counter = 0;
async function request(
  method: string,
  url: string,
  options: { key?: string | null; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Sent & { json: () => unknown; headers: Record<string, unknown> }> {
  const correlationId = `test-${process.pid}-${++counter}`;
  const headers: Record<string, string> = {
    'x-correlation-id': correlationId,
    'user-agent': 'events-test/1.0',
    ...options.headers,
  };
  if (options.key !== null) headers['x-api-key'] = options.key ?? system.keys.admin;
  const response = await system.app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(options.body === undefined ? {} : { payload: options.body as object }),
  });
  return {
    correlationId: String(response.headers['x-correlation-id']),
    status: response.statusCode,
    json: () => response.json(),
    headers: response.headers,
  };
}

/** Waits for the event of a request in every queue it should reach, then returns its copies. */
async function eventOf(sent: Sent, type: TelemetryEvent['event_type']): Promise<CollectedMessage[]> {
  const queues = queuesFor(topology, exchangeFor(type), type);
  const mine = (message: CollectedMessage) => message.properties.correlationId === sent.correlationId;
  await reader.waitFor(
    (messages) => queues.every((queue) => messages.some((m) => m.queue === queue && mine(m))),
    10_000,
  );
  // A grace period in which a copy in a queue it should not reach would also have arrived.
  await sleep(50);
  return reader.messages().filter(mine);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A request's event: every type but the operators' actions, which carry no request metadata. */
type RequestEvent = Exclude<TelemetryEvent, { event_type: 'dlq.replayed' }>;

/** Checks one event's copies: exact queues, one event id, valid schema, properties and headers. */
function checkEvent(copies: CollectedMessage[], type: RequestEvent['event_type'], sent: Sent): RequestEvent {
  const expectedQueues = queuesFor(topology, exchangeFor(type), type).sort();
  assert.deepEqual(
    copies.map((copy) => copy.queue).sort(),
    expectedQueues,
    `${type} lands in exactly ${expectedQueues.join(', ')}`,
  );
  const ids = new Set(copies.map((copy) => copy.properties.messageId));
  assert.equal(ids.size, 1, 'one request, one event');
  const [copy] = copies as [CollectedMessage];
  const validation = validateEvent(copy.json);
  assert.ok(validation.ok, validation.ok ? '' : validation.reason);
  const event = validation.event;
  assert.ok(event.event_type !== 'dlq.replayed', 'a request emits a request event');
  assert.equal(event.event_type, type);
  assert.equal(event.correlation_id, sent.correlationId);
  assert.equal(event.metadata.response_code, sent.status);
  assert.equal(event.source, 'api');

  const { properties, fields } = copy;
  assert.equal(fields.exchange, exchangeFor(type));
  assert.equal(fields.routingKey, type);
  assert.equal(properties.messageId, event.event_id);
  assert.equal(properties.correlationId, sent.correlationId);
  assert.equal(properties.type, type);
  assert.equal(properties.contentType, 'application/json');
  assert.equal(properties.appId, 'telemetry-bus');
  assert.equal(properties.deliveryMode, 2, 'persistent');
  assert.equal(properties.timestamp, Math.floor(Date.parse(event.timestamp) / 1000));
  const headers = properties.headers ?? {};
  assert.equal(headers['cloudEvents:specversion'], '1.0');
  assert.equal(headers['cloudEvents:id'], event.event_id);
  assert.equal(headers['cloudEvents:type'], type);
  assert.equal(headers['cloudEvents:source'], '/telemetry-bus/api');
  assert.equal(headers['cloudEvents:time'], event.timestamp);
  assert.match(String(headers.traceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
  return event;
}

describe('one event per request, in exactly the queues its bindings name', () => {
  const body = modelBody({ vendor_id: 'EventsVendor' });
  const modelId = body.model_id as string;
  const path = `/models/${encodeURIComponent(modelId)}`;

  test('POST /models → model.registered, with the model, its version as sequence, the key hash as user', async () => {
    const sent = await request('POST', '/models', { key: system.keys.writer, body });
    assert.equal(sent.status, 201);
    const event = checkEvent(await eventOf(sent, 'model.registered'), 'model.registered', sent);
    assert.ok(event.event_type === 'model.registered');
    assert.equal(event.sequence, 1);
    assert.equal(event.data.model_id, modelId);
    assert.equal(event.data.vendor_id, 'EventsVendor');
    assert.equal(event.user_id, sha256(system.keys.writer));
    assert.equal(event.metadata.route, '/models');
    assert.equal(event.metadata.method, 'POST');
    assert.equal(event.metadata.user_agent, 'events-test/1.0');
    assert.equal(event.metadata.ip_address, '127.0.0.1');
    assert.equal(event.metadata.cache_hit, null);
    assert.ok(event.metadata.request_duration_ms >= 0);
    assert.deepEqual(event.error, { type: null, message: null, stack_trace: null });
    assert.ok(!JSON.stringify(event).includes(system.keys.writer), 'the key itself is never in an event');
  });

  test('GET /models/:model_id → model.queried, a miss then a hit', async () => {
    const first = await request('GET', path, { key: system.keys.reader });
    const second = await request('GET', path, { key: system.keys.reader });
    const miss = checkEvent(await eventOf(first, 'model.queried'), 'model.queried', first);
    const hit = checkEvent(await eventOf(second, 'model.queried'), 'model.queried', second);
    assert.equal(miss.metadata.cache_hit, false);
    assert.equal(hit.metadata.cache_hit, true);
    assert.equal(miss.metadata.route, '/models/:model_id');
    assert.ok(miss.event_type === 'model.queried' && miss.data.model_id === modelId && miss.sequence === 1);
  });

  test('PATCH → model.updated with changed and the new sequence; a no-op update says changed: false', async () => {
    const changed = await request('PATCH', path, { key: system.keys.writer, body: { context_window: 4096 } });
    const same = await request('PATCH', path, { key: system.keys.writer, body: { context_window: 4096 } });
    const first = checkEvent(await eventOf(changed, 'model.updated'), 'model.updated', changed);
    const second = checkEvent(await eventOf(same, 'model.updated'), 'model.updated', same);
    assert.ok(first.event_type === 'model.updated' && second.event_type === 'model.updated');
    assert.equal(first.data.changed, true);
    assert.equal(first.sequence, 2);
    assert.equal(first.data.context_window, 4096);
    assert.equal(second.data.changed, false);
    assert.equal(second.sequence, 2);
  });

  test('deactivate → model.deactivated', async () => {
    const sent = await request('POST', `${path}/deactivate`, { key: system.keys.writer });
    const event = checkEvent(await eventOf(sent, 'model.deactivated'), 'model.deactivated', sent);
    assert.ok(event.event_type === 'model.deactivated');
    assert.equal(event.data.is_active, false);
    assert.equal(event.data.changed, true);
    assert.equal(event.sequence, 3);
    assert.equal(event.metadata.route, '/models/:model_id/deactivate');
  });

  test('GET /models → filter.executed with the filter as applied and the result count', async () => {
    const sent = await request('GET', '/models?vendor_id=EventsVendor&is_active=false&limit=5', {
      key: system.keys.reader,
    });
    assert.equal(sent.status, 200);
    const event = checkEvent(await eventOf(sent, 'filter.executed'), 'filter.executed', sent);
    assert.ok(event.event_type === 'filter.executed');
    assert.deepEqual(event.data, {
      filters: { vendor_id: 'EventsVendor', is_active: false, limit: 5, sort: 'model_id', cursor: false },
      result_count: 1,
      has_more: false,
    });
    assert.equal(event.metadata.cache_hit, false);
  });

  test('a 404 for a model → api.error with the code, the model id and no stack', async () => {
    const sent = await request('GET', '/models/no-such-model', { key: system.keys.reader });
    assert.equal(sent.status, 404);
    const event = checkEvent(await eventOf(sent, 'api.error'), 'api.error', sent);
    assert.ok(event.event_type === 'api.error');
    assert.equal(event.error.type, 'MODEL_NOT_FOUND');
    assert.equal(event.error.stack_trace, null);
    assert.equal(event.data.model_id, 'no-such-model');
  });

  test('a 400 → api.error naming the field; a 401 without a key → api.error with no user', async () => {
    const invalid = await request('POST', '/models', {
      key: system.keys.writer,
      body: modelBody({ context_window: -1 }),
    });
    assert.equal(invalid.status, 400);
    const bad = checkEvent(await eventOf(invalid, 'api.error'), 'api.error', invalid);
    assert.ok(bad.event_type === 'api.error');
    assert.equal(bad.error.type, 'VALIDATION_FAILED');
    assert.equal(bad.data.field, 'context_window');

    const anonymous = await request('GET', '/models', { key: null });
    assert.equal(anonymous.status, 401);
    const denied = checkEvent(await eventOf(anonymous, 'api.error'), 'api.error', anonymous);
    assert.equal(denied.user_id, null);
    assert.equal(denied.error.type, 'UNAUTHENTICATED');
  });

  test('an unknown route → api.error ROUTE_NOT_FOUND with no route template', async () => {
    const sent = await request('GET', '/nowhere', { key: null });
    assert.equal(sent.status, 404);
    const event = checkEvent(await eventOf(sent, 'api.error'), 'api.error', sent);
    assert.equal(event.metadata.route, null);
    assert.equal(event.error.type, 'ROUTE_NOT_FOUND');
  });

  test('other routes → api.request: /livez, /readyz, /health, /docs/json', async () => {
    for (const url of ['/livez', '/readyz', '/health', '/docs/json']) {
      const sent = await request('GET', url, { key: null });
      assert.equal(sent.status, 200, url);
      const event = checkEvent(await eventOf(sent, 'api.request'), 'api.request', sent);
      assert.equal(event.metadata.route, url);
      assert.deepEqual(event.data, {});
    }
  });
});

describe('correlation and trace context', () => {
  test('a safe x-correlation-id is kept and echoed; an unsafe one is replaced by a generated UUID', async () => {
    const kept = await request('GET', '/livez', {
      key: null,
      headers: { 'x-correlation-id': 'abc-123_X.y:z' },
    });
    assert.equal(kept.correlationId, 'abc-123_X.y:z');
    const replaced = await system.app.inject({
      url: '/livez',
      headers: { 'x-correlation-id': 'has space\tand tab' },
    });
    const generated = String(replaced.headers['x-correlation-id']);
    assert.match(generated, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    await eventOf({ correlationId: generated, status: 200 }, 'api.request');
  });

  test("an incoming traceparent's trace id is continued in the message's traceparent, as a new span", async () => {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const sent = await request('GET', '/livez', { key: null, headers: { traceparent: incoming } });
    const [copy] = await eventOf(sent, 'api.request');
    const traceparent = String(copy?.properties.headers?.traceparent);
    assert.match(traceparent, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    assert.notEqual(traceparent, incoming);
  });
});

describe('the publisher reports itself', () => {
  test('GET /health shows the broker up, the publisher connected, the spool and every queue', async () => {
    // The management API publishes queue statistics every few seconds: wait for the reader's consumers.
    const deadline = Date.now() + 15_000;
    let health = (await system.app.inject('/health')).json();
    while (
      health.queues.items.some((queue: { consumers: number | null }) => queue.consumers === null) &&
      Date.now() < deadline
    ) {
      await sleep(250);
      health = (await system.app.inject('/health')).json();
    }
    assert.equal(health.checks.broker, 'up');
    assert.equal(health.publisher.state, 'connected');
    assert.ok(health.events.emitted > 0);
    assert.deepEqual(health.events.dropped, { spool_full: 0, write_error: 0, invalid_event: 0 });
    assert.equal(health.queues.error, null);
    assert.deepEqual(
      health.queues.items.map((queue: { name: string }) => queue.name).sort(),
      topology.queues.map((queue) => queue.name).sort(),
    );
    for (const queue of health.queues.items) {
      assert.equal(queue.exists, true, queue.name);
      if ((WORK_QUEUES as readonly string[]).includes(queue.name))
        assert.equal(queue.consumers, 1, queue.name);
    }
  });

  test('its counters are in the Prometheus registry with conventional names', async () => {
    const text = await system.services.metrics.metrics();
    for (const name of [
      'telemetry_events_emitted_total',
      'telemetry_events_confirmed_total',
      'telemetry_events_dropped_total',
      'telemetry_events_returned_total',
      'telemetry_events_nacked_total',
      'telemetry_events_resent_total',
      'telemetry_spool_unpublished_events',
      'telemetry_publisher_unconfirmed_events',
      'telemetry_spool_bytes',
      'telemetry_broker_connection_state',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /^telemetry_broker_connection_state\{state="connected"\} 1$/m);
    // By event type now: the total is their sum.
    const emitted = [
      ...text.matchAll(/^telemetry_events_emitted_total\{event_type="[a-z.]+"\} (\d+)$/gm),
    ].reduce((total, match) => total + Number(match[1]), 0);
    assert.ok(emitted > 10);
  });
});
