/**
 * Fault tests of the broker controls themselves: they stop the real broker and raise a real memory alarm,
 * so they run on their own (`node --import tsx --test test/faults/broker-control.test.ts`), never beside
 * other RabbitMQ tests. Each test restores the broker in `finally`, and the file checks at the end that the
 * broker is healthy and that its vhosts are gone.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import amqp, { type ChannelModel } from 'amqplib';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import {
  brokerAlarms,
  brokerRunning,
  memoryAlarmActive,
  rabbitmqctl,
  restoreBroker,
  setMemoryAlarm,
  startBrokerApp,
  stopBrokerApp,
} from '../support/broker-control.ts';
import { formatIdReport, hasIds, readQueues, reportIds } from '../support/queue-reader.ts';
import { createTestVhost, listTestVhosts } from '../support/rabbitmq-vhost.ts';

const createdVhosts: string[] = [];

after(async () => {
  // A safety net for a test that failed inside its own restore, then the health checks the brief asks for.
  await restoreBroker();
  assert.equal(await brokerRunning(), true);
  await rabbitmqctl(['status']);
  const left = await listTestVhosts();
  assert.deepEqual(
    createdVhosts.filter((v) => left.includes(v)),
    [],
  );
});

function ids(from: number, to: number): string[] {
  return Array.from({ length: to - from + 1 }, (_, i) => `evt-${from + i}`);
}

async function publishIds(model: ChannelModel, queue: string, messageIds: readonly string[]): Promise<void> {
  const channel = await model.createConfirmChannel();
  for (const messageId of messageIds) {
    channel.sendToQueue(queue, Buffer.from(JSON.stringify({ event_id: messageId })), {
      messageId,
      persistent: true,
    });
  }
  await channel.waitForConfirms();
  await channel.close();
}

async function connect(url: string): Promise<ChannelModel> {
  const model = await amqp.connect(url);
  // Stopping the broker makes amqplib emit 'error'; unheard, it would crash the test process.
  model.on('error', () => {});
  return model;
}

function closeOf(model: ChannelModel): Promise<Error | undefined> {
  return new Promise((resolve) => model.once('close', (err?: Error) => resolve(err)));
}

function eventOf(model: ChannelModel, event: 'blocked' | 'unblocked', timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${timeoutMs} ms`)), timeoutMs);
    model.once(event, (reason?: unknown) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

test('stop_app closes connections and refuses new ones; a queue-reader counts every id across the restart', async (t) => {
  const { vhost, url } = await createTestVhost(t);
  createdVhosts.push(vhost);
  let publisher = await connect(url);
  const setup = await publisher.createChannel();
  await setup.assertQueue('events', { durable: true });
  await setup.close();
  const reader = await readQueues(url, ['events']);
  try {
    await publishIds(publisher, 'events', ids(1, 20));
    await reader.waitFor(hasIds(ids(1, 20)));
    // Published but not yet consumed when the broker stops: must survive in the durable queue.
    const publisherClosed = closeOf(publisher);

    await stopBrokerApp();
    assert.equal(await brokerRunning(), false);
    await publisherClosed;
    for (let i = 0; i < 50 && reader.status().connected; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(reader.status().connected, false);
    await assert.rejects(amqp.connect(url));

    await startBrokerApp();
    assert.equal(await brokerRunning(), true);
    publisher = await connect(url);
    await publishIds(publisher, 'events', ids(21, 40));
    await reader.waitFor(hasIds(ids(1, 40)), 30_000);
    assert.ok(reader.status().sessions >= 2, `sessions: ${reader.status().sessions}`);
    const report = reportIds(reader.messages(), ids(1, 40));
    assert.deepEqual([report.missing, report.republished], [[], []], formatIdReport(report));
  } finally {
    await reader.close();
    await closeConnection(publisher);
    await restoreBroker();
  }
});

test('a memory alarm sends connection.blocked to a publishing connection, and clearing it unblocks', async (t) => {
  const { vhost, url } = await createTestVhost(t);
  createdVhosts.push(vhost);
  const publisher = await connect(url);
  try {
    const channel = await publisher.createChannel();
    await channel.assertQueue('held', { durable: true });
    await setMemoryAlarm(true);
    assert.equal(await memoryAlarmActive(), true);
    // The broker blocks a connection when it next publishes, not when the alarm goes off.
    const blocked = eventOf(publisher, 'blocked', 10_000);
    channel.sendToQueue('held', Buffer.from('{}'), { messageId: 'held-1' });
    assert.match(String(await blocked), /memory/);

    const unblocked = eventOf(publisher, 'unblocked', 15_000);
    await setMemoryAlarm(false);
    await unblocked;
    // The publish held back during the alarm goes through once it is cleared.
    const check = await publisher.createChannel();
    for (let i = 0; i < 50 && (await check.checkQueue('held')).messageCount === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal((await check.checkQueue('held')).messageCount, 1);
  } finally {
    await closeConnection(publisher);
    await restoreBroker();
  }
});

test('restoreBroker brings back a broker left stopped with its memory alarm raised', async () => {
  try {
    await setMemoryAlarm(true);
    await stopBrokerApp();
    assert.equal(await brokerRunning(), false);
  } finally {
    await restoreBroker();
  }
  assert.equal(await brokerRunning(), true);
  assert.deepEqual(await brokerAlarms(), []);
  const watermark = await rabbitmqctl(['eval', 'vm_memory_monitor:get_vm_memory_high_watermark().']);
  assert.equal(watermark.trim(), '0.4');
  // Idempotent: a second call on a healthy broker changes nothing and does not fail.
  await restoreBroker();
});
