/**
 * RabbitMQ stopped, then blocked by a memory alarm, while the API serves thousands of requests: every
 * request succeeds, no slower than with the broker up, and once the broker is back every request's event
 * arrives — counted by correlation id and event id. The broker is restored in `after`, whatever happens.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { build, modelBody } from '../helper.ts';
import { restoreBroker, setMemoryAlarm, startBrokerApp, stopBrokerApp } from '../support/broker-control.ts';
import { type LoadResult, percentile, runLoad } from '../support/http-load.ts';
import { readQueues } from '../support/queue-reader.ts';
import { waitUntil } from '../support/wait-until.ts';

after(restoreBroker);

const system = await build({ after });
const maybeBus = system.services.bus;
assert.ok(maybeBus !== undefined);
const bus = maybeBus;
const base = await system.app.listen({ host: '127.0.0.1', port: 0 });
const body = modelBody();
const path = `/models/${encodeURIComponent(body.model_id as string)}`;
const created = await system.app.inject({
  method: 'POST',
  url: '/models',
  headers: { 'x-api-key': system.keys.writer },
  payload: body,
});
assert.equal(created.statusCode, 201);

const publisherState = () => bus.status().publisher.state;
const get = () => ({ method: 'GET', path, headers: { 'x-api-key': system.keys.reader } });

/** Waits until the spool is drained, then checks every request's event reached metrics.updates once. */
async function assertAllDelivered(results: LoadResult[]): Promise<void> {
  await waitUntil('the spool to drain', () => bus.status().spool.unconfirmed === 0, 90_000);
  const expected = new Set(results.map((result) => result.correlationId));
  const reader = await readQueues(system.vhost.url, ['metrics.updates']);
  try {
    await reader.waitFor((messages) => {
      const seen = new Set(messages.map((message) => message.properties.correlationId));
      for (const id of expected) if (!seen.has(id)) return false;
      return true;
    }, 60_000);
    const mine = reader
      .messages('metrics.updates')
      .filter((message) => expected.has(String(message.properties.correlationId)));
    const eventIds = new Set(mine.map((message) => message.properties.messageId));
    assert.equal(eventIds.size, expected.size, 'exactly one event id per request');
  } finally {
    await reader.close();
  }
  assert.deepEqual(bus.status().dropped, { spool_full: 0, write_error: 0, invalid_event: 0 });
}

test('rabbitmqctl stop_app under 5,000 requests: all succeed at the same p99, and every event arrives after start_app', async () => {
  await waitUntil('the publisher to connect', () => publisherState() === 'connected', 15_000);
  await runLoad(base, { count: 500, concurrency: 10, request: get, correlationPrefix: 'warmup' });
  const up = await runLoad(base, { count: 5000, concurrency: 10, request: get, correlationPrefix: 'up' });

  await stopBrokerApp();
  try {
    await waitUntil('the publisher to notice', () => publisherState() !== 'connected', 15_000);
    const down = await runLoad(base, {
      count: 5000,
      concurrency: 10,
      request: get,
      correlationPrefix: 'down',
    });
    const ready = await system.app.inject('/readyz');
    assert.equal(ready.statusCode, 200, 'the API stays ready: the spool covers the outage');
    assert.equal(ready.json().checks.broker, 'down');
    assert.ok(bus.status().spool.unconfirmed >= 5000, 'the outage’s events wait in the spool');

    assert.ok(up.every((result) => result.status === 200));
    assert.ok(
      down.every((result) => result.status === 200),
      'every request succeeds while the broker is down',
    );
    const p99Up = percentile(
      up.map((result) => result.latencyMs),
      99,
    );
    const p99Down = percentile(
      down.map((result) => result.latencyMs),
      99,
    );
    console.log(`API p99 with the broker up ${p99Up.toFixed(2)} ms, down ${p99Down.toFixed(2)} ms`);
    assert.ok(p99Down <= p99Up + 2, `p99 while down (${p99Down} ms) within 2 ms of up (${p99Up} ms)`);

    await startBrokerApp();
    await assertAllDelivered([...up, ...down]);
  } finally {
    await restoreBroker();
  }
});

test('a memory alarm blocks publishing: requests go on, the publisher shows blocked, and all events arrive after', async () => {
  await waitUntil('the publisher to connect', () => publisherState() === 'connected', 30_000);
  await setMemoryAlarm(true);
  try {
    const blocked = await runLoad(base, {
      count: 2000,
      concurrency: 10,
      request: get,
      correlationPrefix: 'blocked',
    });
    assert.ok(blocked.every((result) => result.status === 200));
    await waitUntil('the publisher to be blocked', () => publisherState() === 'blocked', 15_000);
    const health = (await system.app.inject('/health')).json();
    assert.equal(health.checks.broker, 'blocked');
    assert.equal(health.publisher.state, 'blocked');
    assert.ok(health.events.unpublished > 0);
    await setMemoryAlarm(false);
    await waitUntil('the publisher to be unblocked', () => publisherState() === 'connected', 15_000);
    await assertAllDelivered(blocked);
  } finally {
    await restoreBroker();
  }
});
