/**
 * The RabbitMQ topology, declared once as data. The publisher applies it at every (re)connect, the
 * consumers read their queue names from it, `telemetry-bus topology show` prints it, and a test holds the
 * AsyncAPI document (`docs/asyncapi.yaml`) to it.
 *
 * Routing: every event goes to exactly one exchange (by its type) with its type as routing key; the
 * bindings fan it out to the queues that want it. Retries are per queue: a consumer republishes a failed
 * message to `retry.<delay>` with the *queue's name* as routing key; when the message's time in that
 * queue is up it is dead-lettered to `retry.requeue`, a direct exchange where each work queue is bound
 * by its own name, so the retry reaches only the queue that failed.
 *
 * Partitions (optional, per work queue; see docs/guides/ordering.md): with `partitions: { 'audit.trail':
 * 4 }` the queue `audit.trail` is replaced by `audit.trail.p0` … `audit.trail.p3`, fed by a
 * consistent-hash exchange `audit.trail.hash` that the topic exchanges are bound to in its place. The
 * exchange hashes the `model_id` header, so all events of a model land in one partition (events without
 * one all land in the same partition), and each partition is single-active-consumer like any work queue:
 * N workers apply N partitions in parallel, each in order. Every partition is a work queue of its own on
 * the retry ladder (`retry.requeue` binds it by its name) and dead-letters like the others.
 */
import type { EventType } from './event-types.ts';

/** `x-consistent-hash` needs the `rabbitmq_consistent_hash_exchange` plugin (only with partitions). */
export type ExchangeType = 'topic' | 'direct' | 'fanout' | 'x-consistent-hash';

export interface ExchangeSpec {
  name: string;
  type: ExchangeType;
  description: string;
  /** Exchange arguments (`hash-header`), exactly as declared; absent when there are none. */
  arguments?: Record<string, QueueArgument>;
}

export type QueueArgument = string | number | boolean;

export interface QueueSpec {
  name: string;
  description: string;
  /** Queue arguments (`x-queue-type`, `x-delivery-limit`, …), exactly as declared. */
  arguments: Record<string, QueueArgument>;
  /**
   * Arguments that only say where a new queue is placed in a cluster (`x-quorum-initial-group-size`,
   * `x-queue-leader-locator`): declared with the others, but a queue that exists keeps the placement it
   * was created with (see apply-topology.ts). Absent: the broker decides.
   */
  placement?: Record<string, QueueArgument>;
}

/** Where new quorum queues go in a cluster. */
export interface QueuePlacement {
  /** Members of a new quorum queue; absent: the broker's default (every node). */
  initialGroupSize?: number;
  /** `balanced` spreads new queues' leaders over the nodes; `client-local` puts them on the declaring client's node; absent: the broker's `queue_leader_locator`. */
  leaderLocator?: 'balanced' | 'client-local';
}

/** The queue arguments a {@link QueuePlacement} sets. */
export const PLACEMENT_ARGUMENTS = {
  initialGroupSize: 'x-quorum-initial-group-size',
  leaderLocator: 'x-queue-leader-locator',
} as const;

export interface BindingSpec {
  exchange: string;
  queue: string;
  /** Binding key: a topic pattern, or the queue name on `retry.requeue`. */
  pattern: string;
}

/** An exchange bound to another: what `source` routes with `pattern` also goes through `destination`. */
export interface ExchangeBindingSpec {
  source: string;
  destination: string;
  /** Binding key: a topic pattern of the source. */
  pattern: string;
}

export interface Topology {
  exchanges: ExchangeSpec[];
  queues: QueueSpec[];
  bindings: BindingSpec[];
  /** Exchange-to-exchange bindings: only partitioned queues have any. */
  exchangeBindings: ExchangeBindingSpec[];
}

export interface TopologyOptions {
  /** Delays of the retry ladder, in milliseconds. @default {@link DEFAULT_RETRY_DELAYS_MS} */
  retryDelaysMs?: readonly number[];
  /**
   * Deliveries of one message before a quorum queue dead-letters it by itself: a backstop for messages
   * that crash their consumer over and over (the consumer's own ladder normally acts first).
   * @default {@link DEFAULT_DELIVERY_LIMIT}
   */
  deliveryLimit?: number;
  /**
   * Partitions of a work queue by model_id, keyed by the queue's name: `{ 'audit.trail': 4 }`. A queue
   * not named, or given 1, is one queue as usual. At most {@link MAX_PARTITIONS}. @default {}
   */
  partitions?: Readonly<Partial<Record<WorkQueue, number>>>;
  /** Where new queues go in a cluster. @default {} (the broker decides) */
  placement?: QueuePlacement;
}

/** Partitions of one queue, at most: beyond that, a worker per partition is more than one machine runs. */
export const MAX_PARTITIONS = 64;

/** The message header a partitioned queue's consistent-hash exchange hashes: set by outbound-message.ts. */
export const PARTITION_HASH_HEADER = 'model_id';

export const EXCHANGES = {
  models: 'models.events',
  metrics: 'metrics.events',
  errors: 'errors.events',
  admin: 'admin.events',
  deadLetters: 'dead.letters',
  retryRequeue: 'retry.requeue',
} as const;

export const QUEUES = {
  metrics: 'metrics.updates',
  analytics: 'analytics.events',
  logging: 'logging.errors',
  audit: 'audit.trail',
  deadLetters: 'dlq.dead_letters',
} as const;

/** Queues consumers work from: each can be retried into and dead-letters into `dlq.dead_letters`. */
export const WORK_QUEUES = [QUEUES.metrics, QUEUES.analytics, QUEUES.logging, QUEUES.audit] as const;
export type WorkQueue = (typeof WORK_QUEUES)[number];

/** `audit.trail.p2`: the name of partition `index` of a work queue. */
export function partitionName(queue: string, index: number): string {
  return `${queue}.p${index}`;
}

/** `audit.trail.hash`: the consistent-hash exchange in front of a partitioned queue. */
export function partitionExchangeName(queue: string): string {
  return `${queue}.hash`;
}

/**
 * The queues consumers of `queue` consume in this topology: the queue itself, or its partitions
 * (`audit.trail.p0` …) when it is partitioned.
 */
export function consumedQueues(topology: Topology, queue: string): string[] {
  if (topology.queues.some((spec) => spec.name === queue)) return [queue];
  const prefix = `${queue}.p`;
  return topology.queues
    .map((spec) => spec.name)
    .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
    .sort((a, b) => Number(a.slice(prefix.length)) - Number(b.slice(prefix.length)));
}

/** Delays of the retry ladder, in milliseconds: a failed message is tried again after 1 s, 5 s, 30 s. */
export const DEFAULT_RETRY_DELAYS_MS = [1000, 5000, 30000] as const;
/** Deliveries of one message before a quorum queue dead-letters it by itself. */
export const DEFAULT_DELIVERY_LIMIT = 20;

/** The exchange an event type is published to; its routing key is the event type itself. */
export function exchangeFor(eventType: EventType): string {
  if (eventType === 'api.error') return EXCHANGES.errors;
  if (eventType === 'api.request') return EXCHANGES.metrics;
  if (eventType === 'dlq.replayed') return EXCHANGES.admin;
  return EXCHANGES.models;
}

/** `retry.1s`, `retry.250ms`: the name of the exchange and queue that hold a retry for `delayMs`. */
export function retryName(delayMs: number): string {
  return delayMs % 1000 === 0 ? `retry.${delayMs / 1000}s` : `retry.${delayMs}ms`;
}

/**
 * Quorum queues replicate and fsync every message, and `at-least-once` dead-lettering (which needs
 * `reject-publish` overflow) makes the broker keep a message until the dead-letter target confirms it.
 */
function quorum(extra: Record<string, QueueArgument> = {}): Record<string, QueueArgument> {
  return {
    'x-queue-type': 'quorum',
    'x-overflow': 'reject-publish',
    'x-dead-letter-strategy': 'at-least-once',
    ...extra,
  };
}

export function buildTopology(options: TopologyOptions = {}): Topology {
  const retryDelaysMs = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  const deliveryLimit = options.deliveryLimit ?? DEFAULT_DELIVERY_LIMIT;
  if (retryDelaysMs.length === 0 || retryDelaysMs.some((delay) => !Number.isInteger(delay) || delay < 1)) {
    throw new RangeError('retryDelaysMs must be positive integers');
  }
  if (new Set(retryDelaysMs.map(retryName)).size !== retryDelaysMs.length) {
    throw new RangeError('retryDelaysMs must not repeat a delay');
  }
  const partitions = options.partitions ?? {};
  for (const [queue, count] of Object.entries(partitions)) {
    if (!(WORK_QUEUES as readonly string[]).includes(queue)) {
      throw new RangeError(`partitions: ${queue} is not a work queue`);
    }
    if (count !== undefined && (!Number.isInteger(count) || count < 1 || count > MAX_PARTITIONS)) {
      throw new RangeError(`partitions of ${queue} must be an integer 1–${MAX_PARTITIONS}`);
    }
  }
  const partitionsOf = (queue: WorkQueue): number => partitions[queue] ?? 1;
  const placement = placementArguments(options.placement ?? {});

  // Single active consumer: however many workers subscribe, one consumes a queue at a time (the others
  // wait to take over), so the queue's order is the order of processing.
  const workQueue = (name: string, description: string): QueueSpec => ({
    name,
    description,
    arguments: quorum({
      'x-delivery-limit': deliveryLimit,
      'x-dead-letter-exchange': EXCHANGES.deadLetters,
      'x-single-active-consumer': true,
    }),
  });

  const exchanges: ExchangeSpec[] = [
    {
      name: EXCHANGES.models,
      type: 'topic',
      description: 'Model lifecycle, model reads and filters: model.* and filter.executed',
    },
    { name: EXCHANGES.metrics, type: 'topic', description: 'Requests to other routes: api.request' },
    { name: EXCHANGES.errors, type: 'topic', description: 'Requests answered 4xx or 5xx: api.error' },
    {
      name: EXCHANGES.admin,
      type: 'topic',
      description: "Operators' actions, for the audit trail only: dlq.replayed",
    },
    {
      name: EXCHANGES.deadLetters,
      type: 'fanout',
      description: 'Messages that exhausted their retries, failed validation, or hit the delivery limit',
    },
    ...retryDelaysMs.map(
      (delay): ExchangeSpec => ({
        name: retryName(delay),
        type: 'fanout',
        description: `Holds a failed message ${delay} ms before it returns to its queue (routing key = queue name)`,
      }),
    ),
    {
      name: EXCHANGES.retryRequeue,
      type: 'direct',
      description: 'Returns a message whose retry delay is over to the one queue named by its routing key',
    },
  ];

  const workQueueDescriptions: Record<WorkQueue, string> = {
    [QUEUES.metrics]: 'Every event, for the real-time metrics rollups',
    [QUEUES.analytics]: 'Model and filter events, for usage analytics',
    [QUEUES.logging]: 'Error events, written as structured log lines',
    [QUEUES.audit]: "Model, filter and error events and operators' actions, for the append-only audit trail",
  };
  // A partitioned queue's exchange, and the partitions, take the queue's place.
  const partitioned = WORK_QUEUES.filter((queue) => partitionsOf(queue) > 1);
  exchanges.push(
    ...partitioned.map(
      (queue): ExchangeSpec => ({
        name: partitionExchangeName(queue),
        type: 'x-consistent-hash',
        description: `Spreads the events for ${queue} over its ${partitionsOf(queue)} partitions by the ${PARTITION_HASH_HEADER} header: all of a model's in one`,
        arguments: { 'hash-header': PARTITION_HASH_HEADER },
      }),
    ),
  );
  const consumed = (queue: WorkQueue): string[] =>
    partitionsOf(queue) > 1
      ? Array.from({ length: partitionsOf(queue) }, (_, index) => partitionName(queue, index))
      : [queue];
  const queues: QueueSpec[] = [
    ...WORK_QUEUES.flatMap((queue) =>
      consumed(queue).map((name, index, all) =>
        workQueue(
          name,
          all.length > 1
            ? `Partition ${index} of ${all.length} of ${queue}: ${workQueueDescriptions[queue]}`
            : workQueueDescriptions[queue],
        ),
      ),
    ),
    {
      name: QUEUES.deadLetters,
      description: 'Dead letters, archived and replayable',
      arguments: { 'x-queue-type': 'quorum' },
    },
    ...retryDelaysMs.map(
      (delay): QueueSpec => ({
        name: retryName(delay),
        description: `Retry after ${delay} ms`,
        arguments: quorum({ 'x-message-ttl': delay, 'x-dead-letter-exchange': EXCHANGES.retryRequeue }),
      }),
    ),
  ];

  // What each work queue takes from the exchanges the events are published to.
  const feeds: Array<{ exchange: string; queue: WorkQueue }> = [
    { exchange: EXCHANGES.models, queue: QUEUES.metrics },
    { exchange: EXCHANGES.metrics, queue: QUEUES.metrics },
    { exchange: EXCHANGES.errors, queue: QUEUES.metrics },
    { exchange: EXCHANGES.models, queue: QUEUES.analytics },
    { exchange: EXCHANGES.errors, queue: QUEUES.logging },
    { exchange: EXCHANGES.models, queue: QUEUES.audit },
    { exchange: EXCHANGES.errors, queue: QUEUES.audit },
    { exchange: EXCHANGES.admin, queue: QUEUES.audit },
  ];
  const bindings: BindingSpec[] = [
    ...feeds
      .filter((feed) => partitionsOf(feed.queue) === 1)
      .map((feed): BindingSpec => ({ exchange: feed.exchange, queue: feed.queue, pattern: '#' })),
    // Each partition takes an equal share of the hash space (the binding key is its weight).
    ...partitioned.flatMap((queue) =>
      consumed(queue).map(
        (name): BindingSpec => ({ exchange: partitionExchangeName(queue), queue: name, pattern: '1' }),
      ),
    ),
    { exchange: EXCHANGES.deadLetters, queue: QUEUES.deadLetters, pattern: '' },
    ...retryDelaysMs.map(
      (delay): BindingSpec => ({ exchange: retryName(delay), queue: retryName(delay), pattern: '' }),
    ),
    // The dead-letter archive can be retried too (its consumer may fail like any other).
    ...[...WORK_QUEUES.flatMap(consumed), QUEUES.deadLetters].map(
      (queue): BindingSpec => ({ exchange: EXCHANGES.retryRequeue, queue, pattern: queue }),
    ),
  ];
  const exchangeBindings: ExchangeBindingSpec[] = feeds
    .filter((feed) => partitionsOf(feed.queue) > 1)
    .map((feed) => ({ source: feed.exchange, destination: partitionExchangeName(feed.queue), pattern: '#' }));

  return {
    exchanges,
    queues: placement === undefined ? queues : queues.map((queue) => ({ ...queue, placement })),
    bindings,
    exchangeBindings,
  };
}

function placementArguments(placement: QueuePlacement): Record<string, QueueArgument> | undefined {
  const { initialGroupSize, leaderLocator } = placement;
  if (initialGroupSize !== undefined && (!Number.isInteger(initialGroupSize) || initialGroupSize < 1)) {
    throw new RangeError('placement.initialGroupSize must be a positive integer');
  }
  const args: Record<string, QueueArgument> = {};
  if (initialGroupSize !== undefined) args[PLACEMENT_ARGUMENTS.initialGroupSize] = initialGroupSize;
  if (leaderLocator !== undefined) args[PLACEMENT_ARGUMENTS.leaderLocator] = leaderLocator;
  return Object.keys(args).length === 0 ? undefined : args;
}

/**
 * The queues a message routed to `exchange` with `routingKey` lands in (topic `#`/`*` semantics), through
 * exchange-to-exchange bindings too. A consistent-hash exchange puts a message in exactly one of its
 * queues, which only its hash decides: all of them are listed, as where it may land.
 */
export function queuesFor(topology: Topology, exchange: string, routingKey: string): string[] {
  const found = new Set<string>();
  const visit = (name: string, seen: Set<string>): void => {
    const spec = topology.exchanges.find((candidate) => candidate.name === name);
    if (spec === undefined || seen.has(name)) return;
    seen.add(name);
    const matches = (pattern: string): boolean => {
      if (spec.type === 'fanout' || spec.type === 'x-consistent-hash') return true;
      if (spec.type === 'direct') return pattern === routingKey;
      return topicMatches(pattern, routingKey);
    };
    for (const binding of topology.bindings) {
      if (binding.exchange === name && matches(binding.pattern)) found.add(binding.queue);
    }
    for (const binding of topology.exchangeBindings) {
      if (binding.source === name && matches(binding.pattern)) visit(binding.destination, seen);
    }
  };
  visit(exchange, new Set());
  return [...found];
}

function topicMatches(pattern: string, routingKey: string): boolean {
  const words = routingKey.split('.');
  const parts = pattern.split('.');
  const match = (p: number, w: number): boolean => {
    if (p === parts.length) return w === words.length;
    if (parts[p] === '#') return match(p + 1, w) || (w < words.length && match(p, w + 1));
    if (w === words.length) return false;
    return (parts[p] === '*' || parts[p] === words[w]) && match(p + 1, w + 1);
  };
  return match(0, 0);
}
