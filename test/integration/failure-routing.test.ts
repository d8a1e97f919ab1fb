/**
 * Failure routing alone, against the real broker: a failed message goes up the retry ladder and comes
 * back to its own queue after the step's delay, with its failure history in headers; a poison message, or
 * one past the last step, goes to the dead-letter queue; without a channel the batch is abandoned.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { buildTopology, EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import { AbandonBatch } from '../../src/consumers/abandon-batch.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import { routeFailure } from '../../src/consumers/failure-routing.ts';
import { PoisonMessageError } from '../../src/consumers/poison-message-error.ts';
import { drainQueue } from '../support/queue-reader.ts';
import { createTestVhost, type TestVhost } from '../support/rabbitmq-vhost.ts';

const RETRY_DELAYS_MS = [200, 400];
/** A vhost of the test's own with the topology declared, and a confirm channel on it. */
async function broker(t: TestContext): Promise<{ vhost: TestVhost; confirm: ConfirmChannel }> {
  const vhost = await createTestVhost(t);
  const connection: ChannelModel = await amqp.connect(vhost.url);
  t.after(() => closeConnection(connection));
  await applyTopology(connection, buildTopology({ retryDelaysMs: RETRY_DELAYS_MS }));
  return { vhost, confirm: await connection.createConfirmChannel() };
}

/** A delivery of `metrics.updates`, as the consumer runtime got it (the broker's fields and properties). */
function delivered(body: string, headers: Record<string, unknown> = {}): ConsumeMessage {
  return {
    content: Buffer.from(body),
    fields: {
      deliveryTag: 1,
      redelivered: false,
      exchange: EXCHANGES.metrics,
      routingKey: 'api.request',
      consumerTag: 'test',
    },
    properties: {
      contentType: 'application/json',
      messageId: `m-${body}`,
      headers,
    },
  } as unknown as ConsumeMessage;
}

test('a first failure goes to the first retry step and comes back to its queue, history in headers', async (t) => {
  const { vhost, confirm } = await broker(t);
  const decision = await routeFailure(
    confirm,
    QUEUES.metrics,
    delivered('one'),
    new Error('database said no'),
    {
      poison: false,
      retryDelaysMs: RETRY_DELAYS_MS,
    },
  );
  assert.equal(decision.action, 'retry');
  assert.equal(decision.action === 'retry' ? decision.delayMs : 0, 200);
  const [back, ...more] = await drainQueue(vhost.url, QUEUES.metrics, { idleMs: 1000 });
  assert.equal(more.length, 0);
  assert.ok(back, 'the message came back to metrics.updates');
  assert.equal(back.content.toString(), 'one');
  assert.equal(back.properties.messageId, 'm-one');
  const headers = back.properties.headers ?? {};
  assert.equal(headers[FAILURE_HEADERS.attempts], 1);
  assert.match(String(headers[FAILURE_HEADERS.errorMessage]), /database said no/);
});

test('poison, or a failure past the last step, goes to the dead-letter queue with its original route', async (t) => {
  const { vhost, confirm } = await broker(t);
  await routeFailure(confirm, QUEUES.metrics, delivered('poison'), new PoisonMessageError('not JSON'), {
    poison: true,
    retryDelaysMs: RETRY_DELAYS_MS,
  });
  const last = await routeFailure(
    confirm,
    QUEUES.metrics,
    delivered('tired', { [FAILURE_HEADERS.attempts]: RETRY_DELAYS_MS.length }),
    new Error('still no'),
    { poison: false, retryDelaysMs: RETRY_DELAYS_MS },
  );
  assert.equal(last.action, 'dead-letter');
  const dead = await drainQueue(vhost.url, QUEUES.deadLetters, { idleMs: 500 });
  assert.deepEqual(dead.map((message) => message.content.toString()).sort(), ['poison', 'tired']);
  for (const message of dead) {
    assert.equal(message.fields.routingKey, 'api.request', 'dead-lettered under its original routing key');
    assert.equal(message.properties.headers?.[FAILURE_HEADERS.originalQueue], QUEUES.metrics);
  }
});

test('without a publishing channel the batch is abandoned, not the message blamed', async () => {
  await assert.rejects(
    routeFailure(undefined, QUEUES.metrics, delivered('x'), new Error('e'), {
      poison: false,
      retryDelaysMs: RETRY_DELAYS_MS,
    }),
    AbandonBatch,
  );
});
