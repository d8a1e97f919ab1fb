/**
 * The RabbitMQ topology as data: where each event type lands, how the per-queue retry ladder is wired,
 * and which ladders are refused. No broker needed; the integration tests declare the same data for real.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EVENT_TYPES, type EventType } from '../../../src/bus/event-types.ts';
import {
  buildTopology,
  consumedQueues,
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_RETRY_DELAYS_MS,
  EXCHANGES,
  exchangeFor,
  MAX_PARTITIONS,
  QUEUES,
  queuesFor,
  retryName,
  type Topology,
  WORK_QUEUES,
} from '../../../src/bus/topology.ts';
import { replayTarget } from '../../../src/consumers/dlq/dlq-replay.ts';

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
      exchangeBindings: [],
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

describe('partitions of audit.trail by model_id', () => {
  const partitioned = buildTopology({ partitions: { [QUEUES.audit]: 4 } });
  const PARTITIONS = ['audit.trail.p0', 'audit.trail.p1', 'audit.trail.p2', 'audit.trail.p3'];

  test('by default (and with 1) there are none: one audit.trail queue, no hash exchange', () => {
    assert.deepEqual(buildTopology({ partitions: { [QUEUES.audit]: 1 } }), topology);
    assert.deepEqual(topology.exchangeBindings, []);
    assert.ok(topology.exchanges.every((spec) => spec.type !== 'x-consistent-hash'));
    assert.deepEqual(consumedQueues(topology, QUEUES.audit), [QUEUES.audit]);
  });

  test('N partition queues replace audit.trail, each a work queue like the others', () => {
    const names = partitioned.queues.map((spec) => spec.name);
    assert.ok(!names.includes(QUEUES.audit));
    assert.deepEqual(consumedQueues(partitioned, QUEUES.audit), PARTITIONS);
    for (const name of PARTITIONS) {
      assert.deepEqual(queue(partitioned, name).arguments, queue(topology, QUEUES.audit).arguments);
      assert.equal(queue(partitioned, name).arguments['x-single-active-consumer'], true);
    }
    // The other work queues are untouched.
    for (const name of [QUEUES.metrics, QUEUES.analytics, QUEUES.logging]) {
      assert.deepEqual(queue(partitioned, name), queue(topology, name));
      assert.deepEqual(consumedQueues(partitioned, name), [name]);
    }
  });

  test('a consistent-hash exchange on the model_id header, fed by every exchange audit.trail was bound to', () => {
    const hash = exchange(partitioned, 'audit.trail.hash');
    assert.equal(hash.type, 'x-consistent-hash');
    assert.deepEqual(hash.arguments, { 'hash-header': 'model_id' });
    assert.deepEqual(
      partitioned.bindings.filter((binding) => binding.exchange === 'audit.trail.hash'),
      PARTITIONS.map((name) => ({ exchange: 'audit.trail.hash', queue: name, pattern: '1' })),
      'equal weights',
    );
    const fedBy = topology.bindings.filter(
      (binding) => binding.queue === QUEUES.audit && binding.exchange !== EXCHANGES.retryRequeue,
    );
    assert.deepEqual(
      sorted(partitioned.exchangeBindings.map((binding) => `${binding.source} ${binding.pattern}`)),
      sorted(fedBy.map((binding) => `${binding.exchange} ${binding.pattern}`)),
    );
    assert.ok(partitioned.exchangeBindings.every((binding) => binding.destination === 'audit.trail.hash'));
    assert.ok(partitioned.bindings.every((binding) => binding.queue !== QUEUES.audit));
  });

  test('every event that reached audit.trail may reach any partition, and the other queues as before', () => {
    for (const type of EVENT_TYPES) {
      const before = queuesFor(topology, exchangeFor(type), type);
      const after = queuesFor(partitioned, exchangeFor(type), type);
      const expected = before.flatMap((name) => (name === QUEUES.audit ? PARTITIONS : [name]));
      assert.deepEqual(sorted(after), sorted(expected), type);
    }
  });

  test('the retry ladder returns a message to the partition it failed in, and only there', () => {
    for (const name of PARTITIONS) {
      assert.deepEqual(queuesFor(partitioned, EXCHANGES.retryRequeue, name), [name]);
    }
    assert.deepEqual(queuesFor(partitioned, EXCHANGES.retryRequeue, QUEUES.audit), []);
  });

  test('partition counts outside 1–64, or of a queue that is not a work queue, are refused', () => {
    for (const count of [0, -1, 1.5, MAX_PARTITIONS + 1]) {
      assert.throws(
        () => buildTopology({ partitions: { [QUEUES.audit]: count } }),
        RangeError,
        String(count),
      );
    }
    assert.throws(
      () => buildTopology({ partitions: { [QUEUES.deadLetters]: 2 } as never }),
      /not a work queue/,
    );
    assert.equal(
      consumedQueues(buildTopology({ partitions: { [QUEUES.audit]: MAX_PARTITIONS } }), QUEUES.audit).length,
      64,
    );
  });

  test('names are unique and every binding joins declared ends', () => {
    const exchanges = partitioned.exchanges.map((spec) => spec.name);
    const queues = partitioned.queues.map((spec) => spec.name);
    assert.equal(new Set(exchanges).size, exchanges.length);
    assert.equal(new Set(queues).size, queues.length);
    for (const binding of partitioned.bindings) {
      assert.ok(exchanges.includes(binding.exchange) && queues.includes(binding.queue));
    }
    for (const binding of partitioned.exchangeBindings) {
      assert.ok(exchanges.includes(binding.source) && exchanges.includes(binding.destination));
    }
  });

  test('a dead letter is replayed into its partition; a queue the partitions replaced, through the hash', () => {
    const requeue = (routingKey: string) => ({ exchange: EXCHANGES.retryRequeue, routingKey });
    assert.deepEqual(replayTarget(partitioned, 'audit.trail.p2'), requeue('audit.trail.p2'));
    assert.deepEqual(replayTarget(partitioned, QUEUES.audit), {
      exchange: 'audit.trail.hash',
      routingKey: '',
    });
    assert.deepEqual(replayTarget(partitioned, 'audit.trail.p9'), {
      exchange: 'audit.trail.hash',
      routingKey: '',
    });
    assert.deepEqual(replayTarget(topology, 'audit.trail.p2'), requeue(QUEUES.audit));
    assert.deepEqual(replayTarget(partitioned, QUEUES.analytics), requeue(QUEUES.analytics));
    assert.equal(replayTarget(partitioned, 'no.such.queue'), undefined);
    assert.equal(replayTarget(partitioned, 'retry.1s'), undefined);
    assert.equal(replayTarget(partitioned, null), undefined);
  });
});

describe('placement of new queues in a cluster', () => {
  test('by default the broker decides: no placement arguments', () => {
    for (const spec of topology.queues) assert.equal(spec.placement, undefined, spec.name);
  });

  test('every queue gets the initial group size and the leader locator, apart from its arguments', () => {
    const placed = buildTopology({ placement: { initialGroupSize: 3, leaderLocator: 'balanced' } });
    assert.equal(placed.queues.length, topology.queues.length);
    for (const spec of placed.queues) {
      assert.deepEqual(spec.placement, {
        'x-quorum-initial-group-size': 3,
        'x-queue-leader-locator': 'balanced',
      });
      assert.deepEqual(spec.arguments, queue(topology, spec.name).arguments, spec.name);
    }
    const located = buildTopology({ placement: { leaderLocator: 'client-local' } });
    assert.deepEqual(queue(located, QUEUES.metrics).placement, { 'x-queue-leader-locator': 'client-local' });
  });

  test('an initial group size below 1 is refused', () => {
    assert.throws(() => buildTopology({ placement: { initialGroupSize: 0 } }), RangeError);
  });
});
