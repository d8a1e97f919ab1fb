/**
 * The broker session's pure parts: the backoff table of its doc comment, how nodes are named, and that
 * its errors carry no credentials. Connecting, failing over and the connect time-out are proven against
 * the real broker in test/integration/broker-session.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BrokerSession,
  BrokerUnreachableError,
  nodeLabel,
  reconnectDelay,
} from '../../../src/bus/broker-session.ts';

test('reconnectDelay doubles its ceiling per round up to the maximum, drawn from the upper half', () => {
  const table: Array<[number, number, number]> = [
    [0, 50, 100],
    [1, 100, 200],
    [2, 200, 400],
    [3, 400, 800],
    [4, 800, 1600],
    [5, 1600, 3200],
    [6, 2500, 5000],
    [60, 2500, 5000],
  ];
  for (const [attempt, low, high] of table) {
    assert.equal(
      reconnectDelay(attempt, 100, 5000, () => 0),
      low,
      `attempt ${attempt} at its lowest`,
    );
    assert.equal(
      reconnectDelay(attempt, 100, 5000, () => 1),
      high,
      `attempt ${attempt} at its highest`,
    );
    const drawn = reconnectDelay(attempt, 100, 5000);
    assert.ok(drawn >= low && drawn <= high, `attempt ${attempt}: ${drawn}`);
  }
});

test('reconnectDelay spreads processes that lost the broker at the same moment', () => {
  const delays = new Set(Array.from({ length: 50 }, () => reconnectDelay(4, 100, 5000)));
  assert.ok(delays.size > 25, `only ${delays.size} distinct delays of 50`);
});

test('nodes are named host:port, never with credentials', () => {
  assert.equal(nodeLabel('amqp://u:secret@rabbit-1:5681/v'), 'rabbit-1:5681');
  assert.equal(nodeLabel('amqp://u:secret@rabbit-1'), 'rabbit-1:5672');
  assert.equal(nodeLabel('amqps://u:secret@rabbit-1/v'), 'rabbit-1:5671');
  const session = new BrokerSession({ urls: ['amqp://a:s1@n1:1', 'amqp://b:s2@n2:2'], name: 'test' });
  assert.deepEqual(session.nodes, ['n1:1', 'n2:2']);
  assert.equal(session.preferredNode, 'n1:1');
});

test('BrokerUnreachableError says why, node by node', () => {
  const error = new BrokerUnreachableError([
    { node: 'n1:1', reason: 'connect ECONNREFUSED' },
    { node: 'n2:2', reason: 'connect: no AMQP handshake within 5000 ms' },
  ]);
  assert.equal(
    error.message,
    'no RabbitMQ node answered: n1:1 (connect ECONNREFUSED); n2:2 (connect: no AMQP handshake within 5000 ms)',
  );
});

test('a session needs a node', () => {
  assert.throws(() => new BrokerSession({ urls: [], name: 'test' }), RangeError);
});
