/**
 * Tests of the RabbitMQ test support itself, against the real broker: the integration and fault tests trust
 * these helpers to isolate, count and break things correctly, so a helper bug would pass as an application
 * bug or, worse, hide one. Nothing here stops the broker; test/faults/ does that.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import amqp, { type ChannelModel } from 'amqplib';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { drainCount, formatIdReport, hasIds, readQueues, reportIds } from '../support/queue-reader.ts';
import {
  amqpUrlForVhost,
  createTestVhost,
  isStaleTestVhost,
  listQueues,
  listTestVhosts,
  TEST_RABBITMQ_URL,
  type Teardown,
  waitForQueueStats,
} from '../support/rabbitmq-vhost.ts';
import { resetSocket, startTcpProxy } from '../support/tcp-proxy.ts';

const BROKER = new URL(TEST_RABBITMQ_URL);
const BROKER_PORT = Number(BROKER.port || 5672);

/** Opens an amqplib connection that is closed after the test, unless the test closed it already. */
async function connect(
  t: Teardown,
  url: string,
  socketOptions: Record<string, unknown> = {},
): Promise<ChannelModel> {
  const model = await amqp.connect(url, socketOptions);
  // Tests break connections on purpose; an 'error' without a listener would crash the test process.
  model.on('error', () => {});
  t.after(() => closeConnection(model));
  return model;
}

function ids(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `evt-${from + i}`);
}

async function publishIds(model: ChannelModel, queue: string, messageIds: readonly string[]): Promise<void> {
  const channel = await model.createConfirmChannel();
  for (const messageId of messageIds) {
    channel.sendToQueue(queue, Buffer.from(JSON.stringify({ event_id: messageId })), {
      messageId,
      persistent: true,
      contentType: 'application/json',
    });
  }
  await channel.waitForConfirms();
  await channel.close();
}

/**
 * The error a connection closed with (undefined for a clean close). Not events.once: it rejects on the
 * 'error' amqplib emits just before 'close' when the connection fails.
 */
function closeOf(model: ChannelModel): Promise<Error | undefined> {
  return new Promise((resolve) => model.once('close', (err?: Error) => resolve(err)));
}

/** Resolves with the outcome of `promise`, or 'pending' if it has not settled after `ms`. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  try {
    return await Promise.race([promise, pending]);
  } finally {
    clearTimeout(timer);
  }
}

const createdVhosts: string[] = [];
after(async () => {
  // Every vhost made by this file must be gone once its teardown has run.
  const left = await listTestVhosts();
  assert.deepEqual(
    createdVhosts.filter((v) => left.includes(v)),
    [],
  );
});

async function vhostFor(t: Teardown) {
  const testVhost = await createTestVhost(t);
  createdVhosts.push(testVhost.vhost);
  return testVhost;
}

test('createTestVhost makes an isolated vhost and its teardown deletes it', async (t) => {
  const teardowns: (() => unknown)[] = [];
  const first = await createTestVhost({ after: (fn) => teardowns.push(fn) });
  createdVhosts.push(first.vhost);
  // If an assertion fails before the explicit teardown below, the vhost still goes.
  t.after(async () => {
    for (const fn of teardowns) await fn();
  });
  const second = await vhostFor(t);

  assert.match(first.vhost, /^tb_test_[0-9a-f]{32}$/);
  assert.equal(new URL(first.url).pathname, `/${first.vhost}`);
  assert.ok((await listTestVhosts()).includes(first.vhost));

  const model = await connect(t, first.url);
  const channel = await model.createChannel();
  await channel.assertQueue('isolated', { durable: true });
  await channel.close();
  assert.deepEqual(
    (await listQueues(first.managementUrl, first.vhost)).map((q) => q.name),
    ['isolated'],
  );
  assert.deepEqual(await listQueues(second.managementUrl, second.vhost), []);
  const other = await connect(t, second.url);
  const otherChannel = await other.createChannel();
  otherChannel.on('error', () => {});
  await assert.rejects(otherChannel.checkQueue('isolated'), /NOT_FOUND/);

  const closed = closeOf(model);
  for (const fn of teardowns.splice(0)) await fn();
  assert.ok(!(await listTestVhosts()).includes(first.vhost));
  // Deleting the vhost closes the connections still open in it.
  await closed;
  await assert.rejects(amqp.connect(first.url));
});

test('amqpUrlForVhost percent-encodes the vhost and keeps the rest of the URL', () => {
  assert.equal(
    amqpUrlForVhost('amqp://guest:guest@127.0.0.1:5672?heartbeat=5', 'a/b c'),
    'amqp://guest:guest@127.0.0.1:5672/a%2Fb%20c?heartbeat=5',
  );
  assert.equal(amqpUrlForVhost('amqp://u:p@h:1/old', 'tb_test_1'), 'amqp://u:p@h:1/tb_test_1');
});

test('isStaleTestVhost goes by the creation time in the description, and never touches other vhosts', () => {
  const now = Date.parse('2025-01-01T12:00:00Z');
  const hour = 3_600_000;
  const made = (iso: string) => ({
    name: 'tb_test_x',
    description: `telemetry-bus test vhost created_at=${iso}`,
  });
  assert.equal(isStaleTestVhost(made('2025-01-01T10:00:00Z'), hour, now), true);
  assert.equal(isStaleTestVhost(made('2025-01-01T11:30:00Z'), hour, now), false);
  assert.equal(isStaleTestVhost({ name: 'tb_test_y', description: '' }, hour, now), true);
  assert.equal(isStaleTestVhost({ name: '/', description: '' }, hour, now), false);
  assert.equal(isStaleTestVhost({ name: 'production' }, 0, now), false);
});

test('waitForQueueStats sees messages published in the vhost', async (t) => {
  const { vhost, url, managementUrl } = await vhostFor(t);
  const model = await connect(t, url);
  const channel = await model.createChannel();
  await channel.assertQueue('counted', { durable: true });
  await channel.close();
  await publishIds(model, 'counted', ids(1, 3));
  const stats = await waitForQueueStats(managementUrl, vhost, 'counted', (s) => s.messages === 3);
  assert.deepEqual(stats, { messages: 3, messages_ready: 3, messages_unacknowledged: 0, consumers: 0 });
});

test('queue-reader collects every message per queue and reports missing and duplicate ids', async (t) => {
  const { url } = await vhostFor(t);
  const model = await connect(t, url);
  const channel = await model.createChannel();
  await channel.assertQueue('first', { durable: true });
  await channel.assertQueue('second', { durable: true });
  await channel.close();

  const reader = await readQueues(url, ['first', 'second']);
  t.after(() => reader.close());
  // evt-7 published twice and evt-100 never: the reader must show both, not smooth them over.
  await publishIds(model, 'first', [...ids(1, 99), 'evt-7']);
  await publishIds(model, 'second', ids(1, 50));
  await reader.waitFor({ first: 100, second: 50 });
  assert.deepEqual(reader.counts(), { first: 100, second: 50 });

  const first = reportIds(reader.messages('first'), ids(1, 100));
  assert.deepEqual(first.missing, ['evt-100']);
  assert.deepEqual(first.duplicates, [
    { id: 'evt-7', copies: 2, redelivered: 0, queues: ['first', 'first'] },
  ]);
  assert.deepEqual(first.republished, ['evt-7']);
  assert.deepEqual(first.unexpected, []);
  assert.equal(first.exactlyOnce, false);
  assert.match(formatIdReport(first), /missing 1: evt-100; duplicated 1: evt-7×2 \(0 redelivered\)/);

  const second = reportIds(reader.messages('second'), ids(1, 50));
  assert.equal(second.exactlyOnce, true, formatIdReport(second));
  const unexpected = reportIds(reader.messages('second'), ids(1, 49));
  assert.deepEqual(unexpected.unexpected, ['evt-50']);

  const [message] = reader.messages('second');
  assert.deepEqual(message?.json, { event_id: 'evt-1' });
  assert.equal(message?.properties.messageId, 'evt-1');
  assert.equal(message?.session, 1);
  // Everything was acknowledged, so nothing comes back when the reader reconnects.
  const check = await model.createChannel();
  assert.equal((await check.checkQueue('first')).messageCount, 0);
  await check.close();
});

test('queue-reader.waitFor rejects with how many messages arrived per queue', async (t) => {
  const { url } = await vhostFor(t);
  const model = await connect(t, url);
  const channel = await model.createChannel();
  await channel.assertQueue('a', { durable: true });
  await channel.assertQueue('b', { durable: true });
  await channel.close();
  const reader = await readQueues(url, ['a', 'b']);
  t.after(() => reader.close());
  await publishIds(model, 'a', ids(1, 2));
  await assert.rejects(
    reader.waitFor(5, 500),
    /waited 500 ms for 5 messages; arrived per queue: a=2, b=0 \(total 2\)/,
  );
  await assert.rejects(
    reader.waitFor(hasIds(ids(1, 3)), 300),
    /waited 300 ms for all 3 expected ids \(still missing 1: evt-3\); arrived per queue: a=2, b=0/,
  );
  const pending = assert.rejects(
    reader.waitFor((messages) => messages.length > 10, 5_000),
    /queue-reader closed; arrived per queue: a=2, b=0/,
  );
  await reader.close();
  await pending;
});

test('drainCount takes every message off a queue and counts it', async (t) => {
  const { url } = await vhostFor(t);
  const model = await connect(t, url);
  const channel = await model.createChannel();
  await channel.assertQueue('drained', { durable: true });
  await publishIds(model, 'drained', ids(1, 7));
  assert.equal(await drainCount(url, 'drained'), 7);
  assert.equal((await channel.checkQueue('drained')).messageCount, 0);
  assert.equal(await drainCount(url, 'drained'), 0);
});

test('queue-reader refuses to start on a queue that does not exist', async (t) => {
  const { url } = await vhostFor(t);
  await assert.rejects(
    readQueues(url, ['absent'], { startTimeoutMs: 300 }),
    /could not subscribe to absent: .*NOT_FOUND/,
  );
});

test('queue-reader reconnects and resubscribes when its connection is reset', async (t) => {
  const { url } = await vhostFor(t);
  const model = await connect(t, url);
  const channel = await model.createChannel();
  await channel.assertQueue('events', { durable: true });
  await channel.close();
  const proxy = await startTcpProxy({ targetHost: BROKER.hostname, targetPort: BROKER_PORT });
  t.after(() => proxy.close());
  const events: string[] = [];
  const reader = await readQueues(proxy.url(url), ['events'], { onEvent: (e) => events.push(e.type) });
  t.after(() => reader.close());

  await publishIds(model, 'events', ids(1, 10));
  await reader.waitFor(10);
  proxy.cut();
  // Published while the reader is away: the broker keeps them for its next session.
  await publishIds(model, 'events', ids(11, 20));
  // Not a count of 20: redelivered copies of the first ten would meet it before the last ten arrived.
  await reader.waitFor(hasIds(ids(1, 20)), 10_000);
  assert.deepEqual(events, ['subscribed', 'disconnected', 'subscribed']);
  assert.equal(reader.status().sessions, 2);
  assert.equal(reader.status().connected, true);
  // Acknowledgements still on their way when the connection was reset are lost with it, so some of the first
  // ten may come back flagged redelivered; nothing may be missing and nothing counts as published twice.
  const report = reportIds(reader.messages(), ids(1, 20));
  assert.deepEqual(
    [report.missing, report.republished, report.unexpected],
    [[], [], []],
    formatIdReport(report),
  );
  for (const duplicate of report.duplicates) assert.equal(duplicate.redelivered, duplicate.copies - 1);
  const fresh = reader.messages().filter((m) => m.session === 2 && !m.fields.redelivered);
  assert.deepEqual(
    fresh.map((m) => m.properties.messageId),
    ids(11, 20),
  );
});

test('tcp-proxy passes AMQP traffic and cut() resets the client connection', async (t) => {
  const { url } = await vhostFor(t);
  const proxy = await startTcpProxy({ targetHost: BROKER.hostname, targetPort: BROKER_PORT });
  t.after(() => proxy.close());
  assert.match(proxy.url(url), new RegExp(`^amqp://guest:guest@127\\.0\\.0\\.1:${proxy.port}/tb_test_`));

  const model = await connect(t, proxy.url(url));
  assert.equal(proxy.connections(), 1);
  const channel = await model.createChannel();
  await channel.assertQueue('through-proxy', { durable: false });
  channel.sendToQueue('through-proxy', Buffer.from('hello'));
  let got: amqp.GetMessage | false = false;
  for (let i = 0; i < 50 && !got; i++) {
    got = await channel.get('through-proxy', { noAck: true });
    if (!got) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(got ? got.content.toString() : got, 'hello');

  const errors: Error[] = [];
  model.on('error', (err: Error) => errors.push(err));
  const closed = closeOf(model);
  proxy.cut();
  const closeError = await closed;
  assert.match(String(closeError ?? errors[0]), /ECONNRESET|Unexpected close|socket/i);
  assert.equal(proxy.connections(), 0);

  // The proxy itself keeps working for new connections.
  const again = await connect(t, proxy.url(url));
  await (await again.createChannel()).close();
  assert.equal(proxy.connections(), 1);
});

test('tcp-proxy blackhole stops traffic without closing, and heartbeats notice', async (t) => {
  const { url } = await vhostFor(t);
  const proxy = await startTcpProxy({ targetHost: BROKER.hostname, targetPort: BROKER_PORT });
  t.after(() => proxy.close());
  const quiet = await connect(t, proxy.url(url), { heartbeat: 0 });
  const quietEvents: string[] = [];
  quiet.on('close', () => quietEvents.push('close'));
  quiet.on('error', () => quietEvents.push('error'));
  const watchful = await connect(t, `${proxy.url(url)}?heartbeat=1`);
  const watchfulClosed = closeOf(watchful);
  const channel = await quiet.createChannel();
  await channel.assertQueue('blackholed', { durable: false });

  proxy.blackhole(true);
  const check = channel.checkQueue('blackholed');
  check.catch(() => {});
  assert.equal(await settledWithin(check, 1_000), 'pending');
  // A new connection is accepted, then hangs in the handshake like the others.
  const late = amqp.connect(proxy.url(url));
  late.then(
    (m) => m.close(),
    () => {},
  );
  assert.equal(await settledWithin(late, 500), 'pending');
  assert.equal(proxy.connections(), 3);
  // heartbeat=1: amqplib gives up after two silent intervals, though the proxy never closed anything.
  const heartbeatError = await watchfulClosed;
  assert.match(String(heartbeatError), /heartbeat/i);
  assert.deepEqual(quietEvents, []);

  // Healing resets what one end gave up on during the partition, and leaves the rest open and usable.
  proxy.blackhole(false);
  assert.equal(proxy.connections(), 2);
  await (await quiet.createChannel()).close();
  assert.deepEqual(quietEvents, []);

  await proxy.close();
  assert.equal(proxy.connections(), 0);
  await assert.rejects(late);
  await assert.rejects(
    new Promise((resolve, reject) => {
      const socket = net.connect(proxy.port, '127.0.0.1', () => resolve(socket.destroy()));
      socket.on('error', reject);
    }),
    /ECONNREFUSED/,
  );
});

test('resetSocket closes a socket whose FIN is still being sent (resetAndDestroy would never emit close)', async (t) => {
  const server = net.createServer((peer) => {
    peer.on('error', () => {});
    peer.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const socket = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1' });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const closed = new Promise<'closed'>((resolve) => socket.once('close', () => resolve('closed')));
  socket.end();
  assert.ok(socket.writableEnded && !socket.writableFinished, 'the shutdown is in flight');
  resetSocket(socket);
  const timedOut = new Promise<'timed out'>((resolve) =>
    setTimeout(() => resolve('timed out'), 2000).unref(),
  );
  assert.equal(await Promise.race([closed, timedOut]), 'closed');
});
