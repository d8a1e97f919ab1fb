/**
 * The RabbitMQ topology as data: where each event type lands, how the per-queue retry ladder is wired,
 * and which ladders are refused. No broker needed; the integration tests declare the same data for real.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EVENT_TYPES, type EventType } from '../../../src/bus/event-types.ts';
import {
  buildTopology,
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_RETRY_DELAYS_MS,
  EXCHANGES,
  exchangeFor,
  QUEUES,
  queuesFor,
  retryName,
  type Topology,
  WORK_QUEUES,
} from '../../../src/bus/topology.ts';

const topology = buildTopology();

const queue = (t: Topology, name: string) => {
  const spec = t.queues.find((candidate) => candidate.name === name);
  assert.ok(spec !== undefined, `no queue ${name}`);
  return spec;
};
const exchange = (t: Topology, name: string) => {
  const spec = t.exchanges.find((candidate) => candidate.name === name);
  assert.ok(spec !== undefined, `no exchange ${name}`);
  return spec;
};
const sorted = (names: readonly string[]) => [...names].sort();

describe('routing of each event type', () => {
  const MODEL_QUEUES = [QUEUES.metrics, QUEUES.analytics, QUEUES.audit];
  const expected: Record<EventType, { exchange: string; queues: string[] }> = {
    'model.registered': { exchange: EXCHANGES.models, queues: MODEL_QUEUES },
    'model.updated': { exchange: EXCHANGES.models, queues: MODEL_QUEUES },
    'model.deactivated': { exchange: EXCHANGES.models, queues: MODEL_QUEUES },
    'model.queried': { exchange: EXCHANGES.models, queues: MODEL_QUEUES },
    'filter.executed': { exchange: EXCHANGES.models, queues: MODEL_QUEUES },
    'api.request': { exchange: EXCHANGES.metrics, queues: [QUEUES.metrics] },
    'api.error': { exchange: EXCHANGES.errors, queues: [QUEUES.metrics, QUEUES.logging, QUEUES.audit] },
    'dlq.replayed': { exchange: EXCHANGES.admin, queues: [QUEUES.audit] },
  };

  for (const type of EVENT_TYPES) {
    test(type, () => {
      assert.equal(exchangeFor(type), expected[type].exchange);
      assert.deepEqual(sorted(queuesFor(topology, exchangeFor(type), type)), sorted(expected[type].queues));
    });
  }

  test('every request event reaches metrics.updates, and no event reaches a retry or dead-letter queue directly', () => {
    const reached = new Set(EVENT_TYPES.flatMap((type) => queuesFor(topology, exchangeFor(type), type)));
    const requestTypes = EVENT_TYPES.filter((type) => type !== 'dlq.replayed');
    assert.ok(
      requestTypes.every((type) => queuesFor(topology, exchangeFor(type), type).includes(QUEUES.metrics)),
    );
    assert.deepEqual(sorted([...reached]), sorted(WORK_QUEUES));
  });

  test('an unknown exchange routes nowhere; a topic pattern needs whole words', () => {
    assert.deepEqual(queuesFor(topology, 'no.such.exchange', 'model.registered'), []);
    const custom: Topology = {
      exchanges: [{ name: 'x', type: 'topic', description: '' }],
      queues: [],
      bindings: [
        { exchange: 'x', queue: 'star', pattern: 'model.*' },
        { exchange: 'x', queue: 'hash', pattern: 'model.#' },
        { exchange: 'x', queue: 'exact', pattern: 'model.updated' },
      ],
    };
    assert.deepEqual(sorted(queuesFor(custom, 'x', 'model.updated')), ['exact', 'hash', 'star']);
    assert.deepEqual(sorted(queuesFor(custom, 'x', 'model')), ['hash']);
    assert.deepEqual(sorted(queuesFor(custom, 'x', 'model.a.b')), ['hash']);
    assert.deepEqual(queuesFor(custom, 'x', 'models.updated'), []);
  });
});

describe('retry ladder', () => {
  test('retry names: whole seconds in s, anything else in ms', () => {
    assert.equal(retryName(1000), 'retry.1s');
    assert.equal(retryName(30000), 'retry.30s');
    assert.equal(retryName(250), 'retry.250ms');
    assert.equal(retryName(1500), 'retry.1500ms');
  });

  test('the default ladder has one fanout exchange and one queue per delay, bound to each other', () => {
    for (const delay of DEFAULT_RETRY_DELAYS_MS) {
      const name = retryName(delay);
      assert.equal(exchange(topology, name).type, 'fanout');
      queue(topology, name);
      assert.deepEqual(
        topology.bindings.filter((binding) => binding.exchange === name),
        [{ exchange: name, queue: name, pattern: '' }],
      );
    }
  });

  test('each retry queue holds a message for its delay, then dead-letters it to retry.requeue', () => {
    const custom = buildTopology({ retryDelaysMs: [250, 1000, 60000] });
    for (const delay of [250, 1000, 60000]) {
      const args = queue(custom, retryName(delay)).arguments;
      assert.equal(args['x-message-ttl'], delay);
      assert.equal(args['x-dead-letter-exchange'], EXCHANGES.retryRequeue);
      // The queue's name, kept as routing key, is what retry.requeue routes on: it must not be replaced.
      assert.equal(args['x-dead-letter-routing-key'], undefined);
    }
  });

  test('retry.requeue is direct with one binding per work queue and the DLQ, keyed by the queue name', () => {
    assert.equal(exchange(topology, EXCHANGES.retryRequeue).type, 'direct');
    const bindings = topology.bindings.filter((binding) => binding.exchange === EXCHANGES.retryRequeue);
    assert.deepEqual(
      sorted(bindings.map((binding) => JSON.stringify(binding))),
      sorted(
        [...WORK_QUEUES, QUEUES.deadLetters].map((name) =>
          JSON.stringify({ exchange: EXCHANGES.retryRequeue, queue: name, pattern: name }),
        ),
      ),
    );
    for (const name of [...WORK_QUEUES, QUEUES.deadLetters]) {
      assert.deepEqual(queuesFor(topology, EXCHANGES.retryRequeue, name), [name], `a retry of ${name}`);
    }
  });

  test('a retry published with a queue name as routing key comes back to that queue only', () => {
    for (const delay of DEFAULT_RETRY_DELAYS_MS) {
      for (const name of WORK_QUEUES) {
        const held = queuesFor(topology, retryName(delay), name);
        assert.deepEqual(held, [retryName(delay)]);
        const target = queue(topology, retryName(delay)).arguments['x-dead-letter-exchange'] as string;
        assert.deepEqual(queuesFor(topology, target, name), [name]);
      }
    }
  });

  test('bad ladders throw', () => {
    for (const retryDelaysMs of [[], [0], [-1000], [1.5], [Number.NaN], [1000, 1000], [1000, 5000, 1000]]) {
      assert.throws(() => buildTopology({ retryDelaysMs }), RangeError, JSON.stringify(retryDelaysMs));
    }
  });
});

describe('work and dead-letter queues', () => {
  test('every work queue is a single-active-consumer quorum queue that dead-letters to dead.letters with the delivery limit', () => {
    for (const name of WORK_QUEUES) {
      assert.deepEqual(queue(topology, name).arguments, {
        'x-queue-type': 'quorum',
        'x-overflow': 'reject-publish',
        'x-dead-letter-strategy': 'at-least-once',
        'x-delivery-limit': DEFAULT_DELIVERY_LIMIT,
        'x-dead-letter-exchange': EXCHANGES.deadLetters,
        'x-single-active-consumer': true,
      });
    }
    const custom = buildTopology({ deliveryLimit: 5 });
    assert.ok(WORK_QUEUES.every((name) => queue(custom, name).arguments['x-delivery-limit'] === 5));
  });

  test('dead.letters is a fanout into dlq.dead_letters, which dead-letters nowhere', () => {
    assert.equal(exchange(topology, EXCHANGES.deadLetters).type, 'fanout');
    for (const name of WORK_QUEUES) {
      assert.deepEqual(queuesFor(topology, EXCHANGES.deadLetters, name), [QUEUES.deadLetters]);
    }
    assert.deepEqual(queue(topology, QUEUES.deadLetters).arguments, { 'x-queue-type': 'quorum' });
  });

  test('names are unique, and every binding joins a declared exchange to a declared queue', () => {
    const exchanges = topology.exchanges.map((spec) => spec.name);
    const queues = topology.queues.map((spec) => spec.name);
    assert.equal(new Set(exchanges).size, exchanges.length);
    assert.equal(new Set(queues).size, queues.length);
    for (const binding of topology.bindings) {
      assert.ok(exchanges.includes(binding.exchange), `binding from unknown ${binding.exchange}`);
      assert.ok(queues.includes(binding.queue), `binding to unknown ${binding.queue}`);
    }
    for (const spec of topology.queues) {
      const target = spec.arguments['x-dead-letter-exchange'];
      if (target !== undefined) assert.ok(exchanges.includes(String(target)), `${spec.name} → ${target}`);
    }
  });
});
