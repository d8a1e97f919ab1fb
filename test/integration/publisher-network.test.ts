/**
 * The publisher's connection goes through a TCP proxy this file controls, so the network can fail
 * without touching the broker every other test shares: connections reset mid-stream, a partition that
 * passes no byte (found by heartbeats), and the spool filling up to its cap while the broker is
 * unreachable — then exactly the overflow is dropped and counted, and everything kept arrives.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { build, modelBody, type TestApp } from '../helper.ts';
import { runLoad } from '../support/http-load.ts';
import { readQueues } from '../support/queue-reader.ts';
import { TEST_RABBITMQ_URL } from '../support/rabbitmq-vhost.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { waitUntil } from '../support/wait-until.ts';

interface ProxiedSystem {
  system: TestApp;
  proxy: TcpProxy;
  base: string;
  path: string;
}

/** A system whose RABBITMQ_URL points at a proxy in front of its own vhost. */
async function proxiedSystem(env: Record<string, string>, blackholed = false): Promise<ProxiedSystem> {
  const port = Number(new URL(TEST_RABBITMQ_URL).port || 5672);
  const proxy = await startTcpProxy({ targetPort: port });
  after(() => proxy.close());
  if (blackholed) proxy.blackhole(true);
  // The vhost is made by build(); point its URL at the proxy before the bus opens.
  const system = await build({ after }, env, { rabbitmqUrl: (url) => proxy.url(url) });
  const base = await system.app.listen({ host: '127.0.0.1', port: 0 });
  const body = modelBody();
  const created = await system.app.inject({
    method: 'POST',
    url: '/models',
    headers: { 'x-api-key': system.keys.writer },
    payload: body,
  });
  assert.equal(created.statusCode, 201);
  return { system, proxy, base, path: `/models/${encodeURIComponent(body.model_id as string)}` };
}

/** Every correlation id in `expected` has an event in metrics.updates; returns the distinct event ids. */
async function delivered(system: TestApp, expected: Set<string>, timeoutMs = 60_000): Promise<Set<string>> {
  const reader = await readQueues(system.vhost.url, ['metrics.updates']);
  try {
    await reader.waitFor((messages) => {
      const seen = new Set(messages.map((message) => message.properties.correlationId));
      for (const id of expected) if (!seen.has(id)) return false;
      return true;
    }, timeoutMs);
    await sleep(200);
    return new Set(
      reader
        .messages('metrics.updates')
        .filter((message) => expected.has(String(message.properties.correlationId)))
        .map((message) => String(message.properties.messageId)),
    );
  } finally {
    await reader.close();
  }
}

describe('network failures between the publisher and RabbitMQ', () => {
  test('connections reset mid-stream, again and again: nothing lost, the publisher reconnects each time', async () => {
    const { system, proxy, base, path } = await proxiedSystem({});
    const bus = system.services.bus;
    assert.ok(bus !== undefined);
    await waitUntil('the publisher to connect', () => bus.status().publisher.state === 'connected', 15_000);
    let cuts = 0;
    const load = runLoad(base, {
      count: 6000,
      concurrency: 8,
      correlationPrefix: 'cut',
      request: () => ({ method: 'GET', path, headers: { 'x-api-key': system.keys.reader } }),
    });
    const cutter = (async () => {
      for (let i = 0; i < 4; i++) {
        await sleep(150);
        const connects = bus.status().publisher.counters.connects;
        proxy.cut();
        cuts++;
        await waitUntil(
          'the publisher to reconnect',
          () =>
            bus.status().publisher.counters.connects > connects &&
            bus.status().publisher.state === 'connected',
          15_000,
        );
      }
    })();
    const [results] = await Promise.all([load, cutter]);
    assert.equal(cuts, 4);
    assert.ok(results.every((result) => result.status === 200));
    await waitUntil('the spool to drain', () => bus.status().spool.unconfirmed === 0, 60_000);
    const eventIds = await delivered(system, new Set(results.map((result) => result.correlationId)));
    assert.equal(eventIds.size, results.length, 'one event per request, none missing');
    const publisher = bus.status().publisher;
    assert.equal(publisher.counters.connects, cuts + 1, 'one new connection per cut');
    assert.ok(publisher.counters.resent > 0, 'messages in flight at a cut were resent');
    assert.ok(proxy.connections() <= 1, 'no connection leaked');
  });

  test('a partition that passes no byte is detected by heartbeats, and the spool drains after it heals', async () => {
    const { system, proxy, base, path } = await proxiedSystem({ RABBITMQ_HEARTBEAT_S: '1' });
    const bus = system.services.bus;
    assert.ok(bus !== undefined);
    await waitUntil('the publisher to connect', () => bus.status().publisher.state === 'connected', 15_000);
    proxy.blackhole(true);
    const started = Date.now();
    const results = await runLoad(base, {
      count: 1000,
      concurrency: 8,
      correlationPrefix: 'partition',
      request: () => ({ method: 'GET', path, headers: { 'x-api-key': system.keys.reader } }),
    });
    assert.ok(results.every((result) => result.status === 200));
    await waitUntil(
      'heartbeats to find the dead connection',
      () => bus.status().publisher.state !== 'connected',
      15_000,
    );
    console.log(`partition detected after ${Date.now() - started} ms with a 1 s heartbeat`);
    proxy.blackhole(false);
    await waitUntil('the spool to drain', () => bus.status().spool.unconfirmed === 0, 60_000);
    const eventIds = await delivered(system, new Set(results.map((result) => result.correlationId)));
    assert.equal(eventIds.size, results.length);
  });
});

describe('the spool cap', () => {
  test('with the broker unreachable, exactly the overflow is dropped and counted; all that was kept arrives', async () => {
    // 1 MiB holds about a thousand events of a GET: three thousand requests overflow it.
    const { system, proxy, base, path } = await proxiedSystem(
      { SPOOL_MAX_BYTES: String(1024 * 1024), SPOOL_SEGMENT_BYTES: String(64 * 1024) },
      true,
    );
    const bus = system.services.bus;
    assert.ok(bus !== undefined);
    const before = bus.status();
    const results = await runLoad(base, {
      count: 3000,
      concurrency: 1,
      correlationPrefix: 'cap',
      request: () => ({ method: 'GET', path, headers: { 'x-api-key': system.keys.reader } }),
    });
    assert.ok(
      results.every((result) => result.status === 200),
      'the API never blocks or fails on a full spool',
    );
    const full = bus.status();
    const emitted = full.emitted - before.emitted;
    const dropped = full.dropped.spool_full;
    assert.equal(emitted, 3000);
    assert.ok(dropped > 0 && dropped < 3000, `some dropped (${dropped}), some kept`);
    assert.ok(full.spool.bytes <= 1024 * 1024, 'the spool never exceeds its cap');

    proxy.blackhole(false);
    await waitUntil('the spool to drain', () => bus.status().spool.unconfirmed === 0, 60_000);
    // Sequential requests: the first ones filled the spool, and (records differ by a few bytes, so a
    // slightly smaller one may still squeeze in) almost all later ones were dropped.
    const keptCount = 3000 - dropped;
    const firstKept = results.slice(0, keptCount - 10).map((result) => result.correlationId);
    const reader = await readQueues(system.vhost.url, ['metrics.updates']);
    try {
      await reader.waitFor((messages) => {
        const arrived = new Set(
          messages
            .map((message) => String(message.properties.correlationId))
            .filter((id) => id.startsWith('cap-')),
        );
        return arrived.size >= keptCount;
      }, 60_000);
      await sleep(300);
      const arrived = new Set(
        reader
          .messages('metrics.updates')
          .map((message) => String(message.properties.correlationId))
          .filter((id) => id.startsWith('cap-')),
      );
      assert.equal(
        arrived.size,
        keptCount,
        'exactly what was kept arrives: the overflow, and only it, is lost',
      );
      assert.ok(
        firstKept.every((id) => arrived.has(id)),
        'what was kept is what came first',
      );
    } finally {
      await reader.close();
    }
    const text = await system.services.metrics.metrics();
    assert.match(
      text,
      new RegExp(`^telemetry_events_dropped_total\\{reason="spool_full"\\} ${dropped}$`, 'm'),
    );
  });
});
