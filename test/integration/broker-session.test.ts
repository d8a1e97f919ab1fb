/**
 * The broker session against the real broker, with nodes this file makes dead, silent or cut: a dead
 * node is skipped at once, a silent one costs the connect time-out and no more, a connection the network
 * ends sends the next connect to the next node, and a session where no node answers says why per node,
 * without credentials, and backs off. (Several real nodes: test/cluster/.)
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { BrokerSession, BrokerUnreachableError } from '../../src/bus/broker-session.ts';
import { freePort } from '../support/free-port.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { startTcpProxy } from '../support/tcp-proxy.ts';
import { waitUntil } from '../support/wait-until.ts';

/** `url` with its host's port replaced, credentials kept. */
function atPort(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.port = String(port);
  return parsed.toString();
}

test('a dead node is skipped at once, and its error is not the caller’s problem', async (t) => {
  const vhost = await createTestVhost(t);
  const session = new BrokerSession({
    urls: [atPort(vhost.url, await freePort()), vhost.url],
    name: 'broker-session test',
  });
  const started = Date.now();
  const { connection, node } = await session.connect();
  t.after(() => closeConnection(connection));
  assert.equal(node, `127.0.0.1:${new URL(vhost.url).port || 5672}`);
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  assert.equal(session.preferredNode, node, 'the next connection goes to the node that answered');
});

test('a silent node (black-holed) costs the connect time-out, then the next node answers', async (t) => {
  const vhost = await createTestVhost(t);
  const proxy = await startTcpProxy({ targetPort: Number(new URL(vhost.url).port || 5672) });
  t.after(() => proxy.close());
  proxy.blackhole(true);
  const session = new BrokerSession({
    urls: [proxy.url(vhost.url), vhost.url],
    name: 'broker-session test',
    connectTimeoutMs: 600,
  });
  const started = Date.now();
  const { connection } = await session.connect();
  t.after(() => closeConnection(connection));
  const took = Date.now() - started;
  assert.ok(took >= 550 && took < 3000, `took ${took} ms for a 600 ms connect time-out`);
});

test('a connection ended by the network sends the next connect to the next node; our own close does not', async (t) => {
  const vhost = await createTestVhost(t);
  const port = Number(new URL(vhost.url).port || 5672);
  const first = await startTcpProxy({ targetPort: port });
  const second = await startTcpProxy({ targetPort: port });
  t.after(() => Promise.all([first.close(), second.close()]));
  const session = new BrokerSession({ urls: [first.url(vhost.url), second.url(vhost.url)], name: 'test' });

  const one = await session.connect();
  assert.equal(one.node, `127.0.0.1:${first.port}`);
  await closeConnection(one.connection);
  const again = await session.connect();
  assert.equal(again.node, `127.0.0.1:${first.port}`, 'closed by us: the same node again');

  again.connection.on('error', () => {});
  const closed = new Promise((resolve) => again.connection.once('close', resolve));
  first.cut();
  await closed;
  const next = await session.connect();
  t.after(() => closeConnection(next.connection));
  assert.equal(next.node, `127.0.0.1:${second.port}`, 'cut by the network: the next node');
});

test('no node answering: each node’s reason, no credentials, and a backoff that grows and then resets', async (t) => {
  const vhost = await createTestVhost(t);
  const urls = [
    atPort('amqp://user:Secret-One@127.0.0.1/', await freePort()),
    atPort('amqp://user:Secret-Two@127.0.0.1/', await freePort()),
  ];
  const session = new BrokerSession({
    urls,
    name: 'test',
    reconnectMinDelayMs: 100,
    reconnectMaxDelayMs: 5000,
  });
  const delays: number[] = [];
  for (let round = 0; round < 4; round++) {
    await assert.rejects(session.connect(), (error: Error) => {
      assert.ok(error instanceof BrokerUnreachableError);
      assert.equal(error.failures.length, 2);
      assert.match(error.message, /ECONNREFUSED/);
      assert.doesNotMatch(error.message, /Secret/);
      return true;
    });
    delays.push(session.retryDelay());
  }
  assert.ok(delays[0] !== undefined && delays[0] <= 100, `first delay ${delays[0]}`);
  assert.ok(delays[3] !== undefined && delays[3] >= 400, `fourth delay ${delays[3]}`);

  // A connection its owner could not use (its setup failed) keeps backing off; one in use starts over.
  const back = new BrokerSession({ urls: [urls[0] as string, vhost.url], name: 'test' });
  back.retryDelay();
  back.retryDelay();
  const { connection } = await back.connect();
  t.after(() => closeConnection(connection));
  assert.ok(back.retryDelay() >= 200, 'connected, not yet in use: still backing off');
  back.established();
  assert.ok(back.retryDelay() <= 100, 'in use: the next loss retries at once');
});

test('the connect time-out bounds the whole handshake, not only the TCP connect', async (t) => {
  // Accepts, then answers the protocol header one byte every 200 ms: amqplib's inactivity time-out alone
  // would wait for ever.
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const timer = setInterval(() => socket.write(Buffer.from([0])), 200);
    socket.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as net.AddressInfo;
  const session = new BrokerSession({
    urls: [`amqp://guest:guest@127.0.0.1:${port}`],
    name: 'test',
    connectTimeoutMs: 700,
  });
  const started = Date.now();
  await assert.rejects(session.connect(), BrokerUnreachableError);
  const took = Date.now() - started;
  assert.ok(took >= 650 && took < 3000, `gave up after ${took} ms`);
  await waitUntil(
    'the slow socket to be closed',
    () => [...sockets].every((socket) => socket.destroyed),
    5000,
  );
});
