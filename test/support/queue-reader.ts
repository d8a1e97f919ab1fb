/**
 * Test support: an independent consumer that records everything the broker delivers on some queues, so a
 * test can check what the application really published (every event id, exactly once or not) instead of
 * trusting the application's own view. It has its own amqplib connection, never the application's, and it
 * outlives broker restarts: fault tests start it, stop the broker, and count ids once the broker is back.
 */
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { closeConnection } from '../../src/bus/broker-connection.ts';

export interface CollectedMessage {
  queue: string;
  fields: ConsumeMessage['fields'];
  properties: ConsumeMessage['properties'];
  content: Buffer;
  /** The content parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
  /** When the reader received it, in Unix milliseconds. */
  receivedAt: number;
  /** Which of the reader's connections delivered it (1 for the first): tells duplicates from reconnects. */
  session: number;
}

export interface ReadQueuesOptions {
  /** Unacknowledged deliveries the broker may push per consumer, in messages. Default 500. */
  prefetch?: number;
  /** How long the first subscription may keep failing before readQueues rejects, in ms. Default 10_000. */
  startTimeoutMs?: number;
  /** Delay before the first reconnect attempt, in ms; doubles per failed attempt. Default 100. */
  reconnectDelayMs?: number;
  /**
   * Upper bound of the reconnect delay, in ms. Default 1_000: the reader should be back within a second of
   * the broker, so a test does not wait on the reader's backoff.
   */
  maxReconnectDelayMs?: number;
  /**
   * AMQP heartbeat, in seconds. Default 5, so a connection that silently died (a black-holed proxy, a
   * killed broker) is noticed and replaced within about 10 s rather than the broker's suggested 60 s.
   */
  heartbeatSeconds?: number;
  /** Called on connection changes, for logging while debugging a test. Default: nothing. */
  onEvent?: (event: QueueReaderEvent) => void;
}

export type QueueReaderEvent =
  | { type: 'subscribed'; session: number }
  | { type: 'disconnected'; session: number; error?: string }
  | { type: 'reconnect-failed'; attempt: number; error: string };

/**
 * What to wait for: a total message count, a minimum count per queue, or any condition on the messages. A
 * condition with a `description` has it quoted when waitFor times out.
 */
export type WaitCondition = number | Readonly<Record<string, number>> | MessagePredicate;

export interface MessagePredicate {
  (messages: readonly CollectedMessage[]): boolean;
  description?: string;
}

export interface QueueReaderStatus {
  connected: boolean;
  /** Connections that got as far as subscribing, the first included. */
  sessions: number;
  /** The most recent connection or subscription failure, if any. */
  lastError: string | undefined;
}

export interface QueueReader {
  /**
   * Resolves with every message collected so far once `condition` holds; rejects after `timeoutMs` (default
   * 10_000 ms) with how many messages arrived per queue and the state of the connection.
   */
  waitFor(condition: WaitCondition, timeoutMs?: number): Promise<CollectedMessage[]>;
  /** The messages collected so far, of one queue or of all, in arrival order; duplicates included. */
  messages(queue?: string): CollectedMessage[];
  /** Messages collected so far per queue. */
  counts(): Record<string, number>;
  status(): QueueReaderStatus;
  /** Stops consuming and closes the connection; pending waitFor calls reject. */
  close(): Promise<void>;
}

/**
 * Starts consuming from each of `queues` (which must exist: the reader never declares them, so it cannot
 * create a queue with arguments the application would then fail to declare) and resolves once all consumers
 * are attached. Whenever the connection is lost it reconnects and resubscribes until closed.
 *
 * Messages are acknowledged as they arrive. A delivery whose acknowledgement is lost with the connection is
 * delivered again after reconnecting, flagged `fields.redelivered`; {@link reportIds} counts those copies
 * separately so they are not mistaken for duplicates published by the application.
 */
export async function readQueues(
  url: string,
  queueNames: readonly string[],
  options: ReadQueuesOptions = {},
): Promise<QueueReader> {
  // A queue named twice would get two consumers splitting its messages between them, to no purpose.
  const queues = [...new Set(queueNames)];
  if (queues.length === 0) throw new Error('readQueues needs at least one queue');
  const prefetch = options.prefetch ?? 500;
  const reconnectDelayMs = options.reconnectDelayMs ?? 100;
  const maxReconnectDelayMs = options.maxReconnectDelayMs ?? 1_000;
  const connectUrl = withHeartbeat(url, options.heartbeatSeconds ?? 5);
  const notify = options.onEvent ?? (() => {});

  const collected: CollectedMessage[] = [];
  const perQueue = new Map<string, CollectedMessage[]>(queues.map((q) => [q, []]));
  const waiters = new Set<Waiter>();
  let model: ChannelModel | undefined;
  let sessions = 0;
  let lastError: string | undefined;
  let closed = false;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let checkScheduled = false;
  // The in-flight connect, so close() can wait for it and shut what it opens.
  let connecting: Promise<void> | undefined;

  function onDelivery(queue: string, channel: Channel, session: number, msg: ConsumeMessage): void {
    const message: CollectedMessage = {
      queue,
      fields: msg.fields,
      properties: msg.properties,
      content: msg.content,
      json: parseJson(msg.content),
      receivedAt: Date.now(),
      session,
    };
    collected.push(message);
    perQueue.get(queue)?.push(message);
    try {
      channel.ack(msg);
    } catch {
      // The channel is already closed: the broker requeues the message and it arrives again, flagged
      // redelivered, once the reader has reconnected.
    }
    scheduleCheck();
  }

  // Conditions are checked once per turn of the event loop rather than per message, so a predicate that scans
  // all messages stays cheap when a prefetch worth of deliveries lands at once.
  function scheduleCheck(): void {
    if (checkScheduled) return;
    checkScheduled = true;
    setImmediate(() => {
      checkScheduled = false;
      for (const waiter of waiters) {
        if (satisfied(waiter.condition)) waiter.settle();
      }
    });
  }

  function satisfied(condition: WaitCondition): boolean {
    if (typeof condition === 'number') return collected.length >= condition;
    if (typeof condition === 'function') return condition(collected);
    return Object.entries(condition).every(([queue, count]) => (perQueue.get(queue)?.length ?? 0) >= count);
  }

  async function connectOnce(): Promise<void> {
    const session = sessions + 1;
    const candidate = await amqp.connect(connectUrl, {
      clientProperties: { connection_name: 'telemetry-bus test queue-reader' },
    });
    let subscribed = false;
    let lost = false;
    candidate.on('error', (err: Error) => {
      lastError = err.message;
    });
    // Listening from the start: amqplib can process a connection.close in the same read as the last
    // consume-ok, before this function resumes, and a close nobody heard would leave the reader dead.
    candidate.on('close', (err?: Error) => {
      lost = true;
      if (model === candidate) model = undefined;
      if (err) lastError = err.message;
      if (!subscribed) return;
      notify({ type: 'disconnected', session, error: err?.message });
      if (!closed) scheduleReconnect();
    });
    try {
      const channel = await candidate.createChannel();
      channel.on('error', (err: Error) => {
        lastError = err.message;
      });
      // A channel closed by the broker (e.g. a 404 on consume) leaves the connection up: close it too, so
      // that all losses take the one reconnect path.
      channel.on('close', () => {
        void closeConnection(candidate);
      });
      await channel.prefetch(prefetch);
      for (const queue of queues) {
        const onMessage = (msg: ConsumeMessage | null) => {
          if (msg) return onDelivery(queue, channel, session, msg);
          // The broker cancelled the consumer (queue deleted, or its node going down): start over, which
          // keeps retrying until the queue is back.
          lastError = `consumer of queue ${queue} was cancelled by the broker`;
          void closeConnection(candidate);
        };
        await channel.consume(queue, onMessage, { noAck: false });
      }
      if (lost) throw new Error(lastError ?? 'connection closed while subscribing');
    } catch (err) {
      await closeConnection(candidate);
      throw err;
    }
    sessions = session;
    if (closed) {
      await closeConnection(candidate);
      return;
    }
    subscribed = true;
    model = candidate;
    attempt = 0;
    notify({ type: 'subscribed', session });
  }

  // Only a failed attempt or the loss of a subscribed connection calls this, and each attempt ends in exactly
  // one of the two, so at most one reconnect is ever pending.
  function scheduleReconnect(): void {
    if (closed) return;
    const delay = Math.min(maxReconnectDelayMs, reconnectDelayMs * 2 ** attempt);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined;
      attempt += 1;
      const attemptNumber = attempt;
      connecting = connectOnce().then(
        () => {
          connecting = undefined;
        },
        (err: Error) => {
          connecting = undefined;
          lastError = err.message;
          notify({ type: 'reconnect-failed', attempt: attemptNumber, error: err.message });
          scheduleReconnect();
        },
      );
    }, delay);
  }

  const startDeadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  for (;;) {
    try {
      await connectOnce();
      break;
    } catch (err) {
      lastError = (err as Error).message;
      if (Date.now() >= startDeadline) {
        throw new Error(`queue-reader could not subscribe to ${queues.join(', ')}: ${lastError}`);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(maxReconnectDelayMs, reconnectDelayMs)));
    }
  }

  function countsText(): string {
    const parts = queues.map((q) => `${q}=${perQueue.get(q)?.length ?? 0}`);
    return `${parts.join(', ')} (total ${collected.length})`;
  }

  const reader: QueueReader = {
    waitFor(condition, timeoutMs = 10_000) {
      if (closed) return Promise.reject(new Error('queue-reader is closed'));
      if (satisfied(condition)) return Promise.resolve([...collected]);
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          condition,
          settle: () => {
            clearTimeout(timer);
            waiters.delete(waiter);
            resolve([...collected]);
          },
          fail: (reason) => {
            clearTimeout(timer);
            waiters.delete(waiter);
            reject(new Error(reason));
          },
        };
        const timer = setTimeout(() => {
          const state = model ? 'connected' : 'not connected';
          waiter.fail(
            `queue-reader waited ${timeoutMs} ms for ${describeCondition(condition)}; arrived per queue: ` +
              `${countsText()}; connection ${state} after ${sessions} session(s)` +
              (lastError ? `, last error: ${lastError}` : ''),
          );
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    messages(queue) {
      return queue === undefined ? [...collected] : [...(perQueue.get(queue) ?? [])];
    },
    counts() {
      return Object.fromEntries(queues.map((q) => [q, perQueue.get(q)?.length ?? 0]));
    },
    status() {
      return { connected: model !== undefined, sessions, lastError };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(reconnectTimer);
      reconnectTimer = undefined;
      for (const waiter of waiters) waiter.fail(`queue-reader closed; arrived per queue: ${countsText()}`);
      await connecting;
      const current = model;
      model = undefined;
      if (current !== undefined) await closeConnection(current);
    },
  };
  return reader;
}

interface Waiter {
  condition: WaitCondition;
  settle(): void;
  fail(reason: string): void;
}

export interface DrainOptions {
  /** Stop once no message has arrived for this long, in ms. Default 500. */
  idleMs?: number;
  /** Give up (rejecting) if the queue is still delivering after this long, in ms. Default 30_000. */
  timeoutMs?: number;
}

/**
 * Consumes `queue` until it has been quiet for `idleMs` and returns what arrived. The messages are
 * acknowledged, so the queue is left empty; use it after the publisher has finished.
 */
export async function drainQueue(
  url: string,
  queue: string,
  options: DrainOptions = {},
): Promise<CollectedMessage[]> {
  const idleMs = options.idleMs ?? 500;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const reader = await readQueues(url, [queue]);
  try {
    const deadline = Date.now() + timeoutMs;
    let seen = -1;
    for (;;) {
      const count = reader.messages().length;
      if (count === seen) return reader.messages();
      if (Date.now() >= deadline) {
        throw new Error(
          `queue ${queue} was still delivering after ${timeoutMs} ms (${count} messages so far)`,
        );
      }
      seen = count;
      await new Promise((resolve) => setTimeout(resolve, idleMs));
    }
  } finally {
    await reader.close();
  }
}

/** How many messages {@link drainQueue} took off `queue`. */
export async function drainCount(url: string, queue: string, timeoutMs?: number): Promise<number> {
  return (await drainQueue(url, queue, { timeoutMs })).length;
}

export interface DuplicateId {
  id: string;
  /** Copies received in all. */
  copies: number;
  /**
   * Copies flagged `fields.redelivered`: usually the reader's own delivery whose acknowledgement was lost to
   * a disconnect, not a second publish. `copies - redelivered > 1` means the id was published more than once.
   */
  redelivered: number;
  /** Queues the copies arrived on, with repeats. */
  queues: string[];
}

export interface IdReport {
  /** Size of the expected set. */
  expected: number;
  /** Messages examined, duplicates included. */
  received: number;
  /** Expected ids that never arrived, in the order they were expected. */
  missing: string[];
  /** Ids that arrived more than once, for whatever reason. */
  duplicates: DuplicateId[];
  /**
   * Ids with two or more copies not flagged redelivered: two first deliveries cannot be one broker message, so
   * these were certainly published more than once. A lower bound: a copy that was in flight when the reader's
   * connection dropped comes back flagged, indistinguishable from the reader's own lost acknowledgement. For
   * an exact count across an outage, start the reader after the broker is back (the messages wait in their
   * durable queue), so that every copy it sees is a separate publish.
   */
  republished: string[];
  /** Ids that arrived but were not expected. */
  unexpected: string[];
  /** Messages without an id. */
  withoutId: number;
  /** Every expected id arrived exactly once, and nothing else arrived. */
  exactlyOnce: boolean;
}

export interface IdOptions {
  /** Where a message's id is; default `properties.messageId`. */
  idOf?: (message: CollectedMessage) => string | undefined;
}

/**
 * A waitFor condition met once every expected id has arrived (on `queue`, or on any queue), however many
 * copies came with them: counting messages would be fooled by redeliveries after a reconnect.
 */
export function hasIds(
  expected: Iterable<string>,
  options: IdOptions & { queue?: string } = {},
): MessagePredicate {
  const expectedIds = [...new Set(expected)];
  const idOf = options.idOf ?? defaultIdOf;
  const predicate: MessagePredicate = (messages) => {
    const arrived = new Set<string | undefined>();
    for (const message of messages) {
      if (options.queue === undefined || message.queue === options.queue) arrived.add(idOf(message));
    }
    const missing = expectedIds.filter((id) => !arrived.has(id));
    // Refreshed on every check, so a timeout says which ids never came.
    const shown = missing.slice(0, 10).join(', ') + (missing.length > 10 ? ', …' : '');
    predicate.description = `all ${expectedIds.length} expected ids (still missing ${missing.length}: ${shown})`;
    return missing.length === 0;
  };
  predicate.description = `all ${expectedIds.length} expected ids`;
  return predicate;
}

/** Messages by id (default `properties.messageId`), each with all its copies in arrival order. */
export function groupById(
  messages: readonly CollectedMessage[],
  options: IdOptions = {},
): Map<string | undefined, CollectedMessage[]> {
  const idOf = options.idOf ?? defaultIdOf;
  const groups = new Map<string | undefined, CollectedMessage[]>();
  for (const message of messages) {
    const id = idOf(message);
    const group = groups.get(id);
    if (group) group.push(message);
    else groups.set(id, [message]);
  }
  return groups;
}

/**
 * Compares the ids of `messages` with the `expected` ones. Pass the messages of a single queue: when an
 * exchange routes an event to two queues, the same id arriving on each is correct, yet counts as duplicate here.
 */
export function reportIds(
  messages: readonly CollectedMessage[],
  expected: Iterable<string>,
  options: IdOptions = {},
): IdReport {
  const expectedIds = [...new Set(expected)];
  const expectedSet = new Set(expectedIds);
  const groups = groupById(messages, options);
  const withoutId = groups.get(undefined)?.length ?? 0;
  const duplicates: DuplicateId[] = [];
  const republished: string[] = [];
  const unexpected: string[] = [];
  for (const [id, copies] of groups) {
    if (id === undefined) continue;
    if (!expectedSet.has(id)) unexpected.push(id);
    if (copies.length > 1) {
      const redelivered = copies.filter((m) => m.fields.redelivered).length;
      duplicates.push({ id, copies: copies.length, redelivered, queues: copies.map((m) => m.queue) });
      if (copies.length - redelivered > 1) republished.push(id);
    }
  }
  const missing = expectedIds.filter((id) => !groups.has(id));
  return {
    expected: expectedIds.length,
    received: messages.length,
    missing,
    duplicates,
    republished,
    unexpected,
    withoutId,
    exactlyOnce:
      missing.length === 0 && duplicates.length === 0 && unexpected.length === 0 && withoutId === 0,
  };
}

/** A one-paragraph summary of a report for assertion messages; lists at most `maxIds` ids per kind. */
export function formatIdReport(report: IdReport, maxIds = 10): string {
  const list = (ids: string[]) =>
    ids.length <= maxIds
      ? ids.join(', ')
      : `${ids.slice(0, maxIds).join(', ')}, … (${ids.length - maxIds} more)`;
  const lines = [`expected ${report.expected} ids, received ${report.received} messages`];
  if (report.missing.length > 0) lines.push(`missing ${report.missing.length}: ${list(report.missing)}`);
  if (report.duplicates.length > 0) {
    const described = report.duplicates.map((d) => `${d.id}×${d.copies} (${d.redelivered} redelivered)`);
    lines.push(`duplicated ${report.duplicates.length}: ${list(described)}`);
  }
  if (report.republished.length > 0) {
    lines.push(`published more than once ${report.republished.length}: ${list(report.republished)}`);
  }
  if (report.unexpected.length > 0)
    lines.push(`unexpected ${report.unexpected.length}: ${list(report.unexpected)}`);
  if (report.withoutId > 0) lines.push(`${report.withoutId} without an id`);
  return lines.join('; ');
}

function defaultIdOf(message: CollectedMessage): string | undefined {
  const id: unknown = message.properties.messageId;
  return typeof id === 'string' ? id : undefined;
}

function describeCondition(condition: WaitCondition): string {
  if (typeof condition === 'number') return `${condition} messages`;
  if (typeof condition === 'function') return condition.description ?? 'the condition';
  const parts = Object.entries(condition).map(([queue, count]) => `${queue}>=${count}`);
  return `at least ${parts.join(', ')}`;
}

function parseJson(content: Buffer): unknown {
  try {
    return JSON.parse(content.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Adds a heartbeat to the URL unless the caller chose one there. */
function withHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('heartbeat')) parsed.searchParams.set('heartbeat', String(seconds));
  return parsed.toString();
}
