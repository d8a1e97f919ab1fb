/**
 * closeConnection through a TCP proxy this file controls: a close whose CloseOk can never come (the
 * socket reset mid-close, or a partition) still ends, and the socket is gone afterwards. amqplib's own
 * close() stays pending for ever in the first case, which once hung a whole test run.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChannelModel } from 'amqplib';
import { closeConnection, connectToBroker, destroyConnection } from '../../src/bus/broker-connection.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { waitUntil } from '../support/wait-until.ts';

async function proxiedConnection(t: {
  after(fn: () => unknown): void;
}): Promise<{ proxy: TcpProxy; connection: ChannelModel }> {
  const vhost = await createTestVhost(t);
  const broker = new URL(vhost.url);
  const proxy = await startTcpProxy({ targetPort: Number(broker.port || 5672) });
  const connection = await connectToBroker(proxy.url(vhost.url), { name: 'closeConnection test' });
  connection.on('error', () => {});
  // Resets the connection too if a test failed before closing it.
  t.after(() => proxy.close());
  return { proxy, connection };
}

function socketOf(connection: ChannelModel): { destroyed: boolean } {
  return (connection as unknown as { connection: { stream: { destroyed: boolean } } }).connection.stream;
}

test('closeConnection closes gracefully when the broker answers', async (t) => {
  const { proxy, connection } = await proxiedConnection(t);
  const started = Date.now();
  await closeConnection(connection, 30_000);
  assert.ok(Date.now() - started < 5_000, 'a CloseOk arrives well within the time-out');
  assert.equal(socketOf(connection).destroyed, true);
  await assert.rejects(connection.createChannel(), /closed/i);
  await waitUntil('the proxy to see both ends closed', () => proxy.connections() === 0, 5_000);
});

test('closeConnection ends when the socket is reset before the CloseOk arrives', async (t) => {
  const { proxy, connection } = await proxiedConnection(t);
  // The Close frame disappears into the partition, then the connection is reset: no CloseOk, ever.
  proxy.blackhole(true);
  const closing = closeConnection(connection, 30_000);
  const started = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 100));
  proxy.cut();
  await closing;
  assert.ok(
    Date.now() - started < 5_000,
    `ended ${Date.now() - started} ms after the reset, not at the time-out`,
  );
  assert.equal(socketOf(connection).destroyed, true);
});

test('closeConnection gives up after its time-out when nothing answers, and destroys the socket', async (t) => {
  const { proxy, connection } = await proxiedConnection(t);
  proxy.blackhole(true);
  const started = Date.now();
  await closeConnection(connection, 300);
  const took = Date.now() - started;
  assert.ok(took >= 290 && took < 3_000, `gave up after ${took} ms`);
  assert.equal(socketOf(connection).destroyed, true);
});

test('a black-holed connection is dropped within two heartbeats', async (t) => {
  const vhost = await createTestVhost(t);
  const broker = new URL(vhost.url);
  const proxy = await startTcpProxy({ targetPort: Number(broker.port || 5672) });
  t.after(() => proxy.close());
  const connection = await connectToBroker(proxy.url(vhost.url), {
    name: 'heartbeat test',
    heartbeatSeconds: 1,
  });
  connection.on('error', () => {});
  const closed = new Promise<unknown>((resolve) => connection.once('close', resolve));
  // The broker's last heartbeat came at most half an interval before the partition.
  await new Promise((resolve) => setTimeout(resolve, 1200));
  proxy.blackhole(true);
  const started = Date.now();
  const reason = await closed;
  const took = Date.now() - started;
  assert.ok(took >= 1200 && took <= 2300, `dropped ${took} ms after the partition (heartbeat 1 s)`);
  // Ours, or amqplib's own check when this process was too busy for ours (it comes a little later).
  assert.match(String(reason), /nothing from RabbitMQ for \d+ ms|Heartbeat timeout/);
});

test('a dropped connection ends at once: its close comes and amqplib stops its heartbeat timers', async (t) => {
  const vhost = await createTestVhost(t);
  // No 'error' listener, as with a connection that opened after its connect timed out: dropping it must
  // neither throw an unheard error later nor leave timers that keep the process alive for ever.
  const connection = await connectToBroker(vhost.url, { name: 'drop test', heartbeatSeconds: 5 });
  const closed = new Promise<unknown>((resolve) => connection.once('close', resolve));
  const started = Date.now();
  destroyConnection(connection);
  const reason = await closed;
  const took = Date.now() - started;
  // amqplib's own heartbeat time-out would come only after two intervals (10 s).
  assert.ok(took < 3_000, `closed ${took} ms after the drop`);
  assert.match(String(reason), /dropped by this process/);
  const heart = (
    connection as unknown as {
      connection: { heartbeater: { sendTimer: { _destroyed: boolean }; recvTimer: { _destroyed: boolean } } };
    }
  ).connection.heartbeater;
  assert.equal(heart.sendTimer._destroyed, true, 'the heartbeat send interval is cleared');
  assert.equal(heart.recvTimer._destroyed, true, 'the heartbeat check interval is cleared');
});
