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
 */
import type { EventType } from './event-types.ts';

export type ExchangeType = 'topic' | 'direct' | 'fanout';

export interface ExchangeSpec {
  name: string;
  type: ExchangeType;
  description: string;
}

export type QueueArgument = string | number | boolean;

export interface QueueSpec {
  name: string;
  description: string;
  /** Queue arguments (`x-queue-type`, `x-delivery-limit`, …), exactly as declared. */
  arguments: Record<string, QueueArgument>;
}

export interface BindingSpec {
  exchange: string;
  queue: string;
  /** Binding key: a topic pattern, or the queue name on `retry.requeue`. */
  pattern: string;
}

export interface Topology {
  exchanges: ExchangeSpec[];
  queues: QueueSpec[];
  bindings: BindingSpec[];
}

export interface TopologyOptions {
  /** Delays of the retry ladder, in milliseconds. @default [1000, 5000, 30000] */
  retryDelaysMs?: readonly number[];
  /**
   * Deliveries of one message before a quorum queue dead-letters it by itself: a backstop for messages
   * that crash their consumer over and over (the consumer's own ladder normally acts first). @default 20
   */
  deliveryLimit?: number;
}

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

export const DEFAULT_RETRY_DELAYS_MS = [1000, 5000, 30000] as const;
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

  const queues: QueueSpec[] = [
    workQueue(QUEUES.metrics, 'Every event, for the real-time metrics rollups'),
    workQueue(QUEUES.analytics, 'Model and filter events, for usage analytics'),
    workQueue(QUEUES.logging, 'Error events, written as structured log lines'),
    workQueue(
      QUEUES.audit,
      "Model, filter and error events and operators' actions, for the append-only audit trail",
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

  const bindings: BindingSpec[] = [
    { exchange: EXCHANGES.models, queue: QUEUES.metrics, pattern: '#' },
    { exchange: EXCHANGES.metrics, queue: QUEUES.metrics, pattern: '#' },
    { exchange: EXCHANGES.errors, queue: QUEUES.metrics, pattern: '#' },
    { exchange: EXCHANGES.models, queue: QUEUES.analytics, pattern: '#' },
    { exchange: EXCHANGES.errors, queue: QUEUES.logging, pattern: '#' },
    { exchange: EXCHANGES.models, queue: QUEUES.audit, pattern: '#' },
    { exchange: EXCHANGES.errors, queue: QUEUES.audit, pattern: '#' },
    { exchange: EXCHANGES.admin, queue: QUEUES.audit, pattern: '#' },
    { exchange: EXCHANGES.deadLetters, queue: QUEUES.deadLetters, pattern: '' },
    ...retryDelaysMs.map(
      (delay): BindingSpec => ({ exchange: retryName(delay), queue: retryName(delay), pattern: '' }),
    ),
    // The dead-letter archive can be retried too (its consumer may fail like any other).
    ...[...WORK_QUEUES, QUEUES.deadLetters].map(
      (queue): BindingSpec => ({ exchange: EXCHANGES.retryRequeue, queue, pattern: queue }),
    ),
  ];

  return { exchanges, queues, bindings };
}

/** The queues a message routed to `exchange` with `routingKey` lands in (topic `#`/`*` semantics). */
export function queuesFor(topology: Topology, exchange: string, routingKey: string): string[] {
  const spec = topology.exchanges.find((candidate) => candidate.name === exchange);
  if (spec === undefined) return [];
  const matches = (pattern: string): boolean => {
    if (spec.type === 'fanout') return true;
    if (spec.type === 'direct') return pattern === routingKey;
    return topicMatches(pattern, routingKey);
  };
  return [
    ...new Set(
      topology.bindings
        .filter((binding) => binding.exchange === exchange && matches(binding.pattern))
        .map((binding) => binding.queue),
    ),
  ];
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
