/**
 * The one consumer runtime every consumer runs on.
 *
 * - A connection of its own for consuming, and another for publishing retries and dead letters (never
 *   the API's publisher), both with heartbeats, both on the same node; when either goes, both are
 *   reopened on the next node that answers (../bus/broker-session.ts) and every consumer resubscribes
 *   (also after a consumer cancel), until stopped.
 * - Per consumer: a channel with a prefetch; deliveries are gathered into batches (up to `batchSize`, or
 *   what arrived within `batchWaitMs`), applied in one PostgreSQL transaction that also records what was
 *   applied (./deduplication/: per producer stream, so a redelivered, resent or replayed duplicate
 *   changes nothing) and counts it in the ledger — usually as one statement, the consumer's writes with
 *   the runtime's — then acknowledged with one multiple-ack (partial batches' acknowledgements wait up to
 *   `ackDelayMs` to go together). Batches of a queue are applied one after
 *   another, in queue order; the next one is parsed and validated while the
 *   one before is in PostgreSQL.
 * - An invalid message is poison: dead-lettered at once with the reason. A failing batch is split to find
 *   the message(s) at fault; each goes up the retry ladder (only in its own queue), then to the
 *   dead-letter queue with its failure history in headers. A retry or dead letter is confirmed by the
 *   broker before the original is acknowledged, so nothing is lost in between.
 * - PostgreSQL unreachable is not a message's fault: the batch waits, unacknowledged, and is tried again
 *   until PostgreSQL is back — consumption pauses (the prefetch bounds what is held), no retry is spent.
 *
 * This file is the batching: deliveries gathered per consumer, batches pipelined in queue order, the
 * pause while PostgreSQL is away, the acknowledgement. The other parts, each readable and testable alone:
 * the connections (./consumer-connections.ts), a message as a delivery (./delivery-parser.ts), a batch
 * applied once with its de-duplication and ledger rows (./apply-batch.ts), and where a failed message
 * goes (./failure-routing.ts, by ./failure-policy.ts).
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import { BROKER_SESSION_DEFAULTS } from '../bus/broker-session.ts';
import type { PublisherLogger } from '../bus/spool-publisher.ts';
import type { Topology } from '../bus/topology.ts';
import { isDatabaseUnavailable } from '../db/database-unavailable.ts';
import { ConsumerMetrics } from '../prometheus/consumer-metrics.ts';
import { redactedMessage as describe } from '../redact-credentials.ts';
import { withTimeout } from '../with-timeout.ts';
import { AbandonBatch } from './abandon-batch.ts';
import { applyBatch, type BatchTarget } from './apply-batch.ts';
import type { Consumer, Delivery } from './consumer.ts';
import { ConsumerConnections } from './consumer-connections.ts';
import { Deduplicator } from './deduplication/deduplicator.ts';
import { toDelivery } from './delivery-parser.ts';
import { routeFailure } from './failure-routing.ts';
import { ParsedEvents } from './parsed-events.ts';
import { PoisonMessageError } from './poison-message-error.ts';

export interface ConsumerRuntimeOptions {
  /** AMQP URLs of the broker's nodes, tried in order. */
  urls: readonly string[];
  pool: pg.Pool;
  topology: Topology;
  consumers: Consumer[];
  /** Delays of the retry ladder, in ms; must match the topology's retry queues. */
  retryDelaysMs: readonly number[];
  /** Unacknowledged deliveries per consumer. @default {@link CONSUMER_RUNTIME_DEFAULTS} */
  prefetch?: number;
  /** Messages applied in one transaction, at most. @default {@link CONSUMER_RUNTIME_DEFAULTS} */
  batchSize?: number;
  /** Time a partial batch waits for more messages, in ms. @default {@link CONSUMER_RUNTIME_DEFAULTS} */
  batchWaitMs?: number;
  /**
   * Time the acknowledgement of a committed partial batch may wait, in ms, so that the acknowledgements
   * of several batches and consumers reach RabbitMQ together; 0 acknowledges each batch at once.
   * @default {@link CONSUMER_RUNTIME_DEFAULTS}
   */
  ackDelayMs?: number;
  /** AMQP heartbeat, in seconds. @default {@link CONSUMER_RUNTIME_DEFAULTS} */
  heartbeatSeconds?: number;
  /** Wait between attempts while PostgreSQL is unreachable, in ms. @default {@link CONSUMER_RUNTIME_DEFAULTS} */
  databaseRetryMs?: number;
  /** Upper bound of the first reconnect delay, in ms (doubles per failed round). @default {@link CONSUMER_RUNTIME_DEFAULTS} */
  reconnectMinDelayMs?: number;
  logger?: PublisherLogger;
  /**
   * The process's Prometheus registry: the runtime registers its `telemetry_consumer_*` metrics on it
   * (one runtime per registry). None: no metrics.
   */
  metrics?: Registry;
}

export const CONSUMER_RUNTIME_DEFAULTS = {
  /** Unacknowledged deliveries per consumer: what one consumer holds in memory at most. */
  prefetch: 500,
  /** Messages applied in one PostgreSQL transaction, at most. */
  batchSize: 250,
  /** Time a partial batch waits for more messages, in milliseconds. */
  batchWaitMs: 10,
  /**
   * Time the acknowledgement of committed partial batches may wait, in milliseconds. On a quorum queue
   * every acknowledgement is a Raft command the broker appends to its log; at a few hundred events a
   * second a batch holds a handful of events, and each cost one (measured at 400 events/s end to end:
   * RabbitMQ 916 µs of CPU per event acknowledging each batch, 775 with this wait). Waiting delays no
   * event (it is committed; only its redelivery after a crash is likelier, and de-duplicated), and a
   * full batch's worth is acknowledged at once, so the prefetch never runs dry.
   */
  ackDelayMs: 50,
  /** AMQP heartbeat interval, in seconds. */
  heartbeatSeconds: BROKER_SESSION_DEFAULTS.heartbeatSeconds,
  /** Wait between attempts while PostgreSQL is unreachable, in milliseconds. */
  databaseRetryMs: 1000,
  /** Upper bound of the first reconnect delay, in milliseconds (doubles per failed round). */
  reconnectMinDelayMs: BROKER_SESSION_DEFAULTS.reconnectMinDelayMs,
} as const;

export interface ConsumerCounters {
  /** Events applied (first time). */
  applied: number;
  /** Deliveries skipped because their event was applied before. */
  duplicates: number;
  /** Messages sent up the retry ladder. */
  retried: number;
  /** Messages sent to the dead-letter queue after the ladder. */
  deadLettered: number;
  /** Invalid messages sent to the dead-letter queue at once. */
  poison: number;
  /** Batches held back because PostgreSQL was unreachable. */
  databasePauses: number;
}

export interface ConsumerStatus {
  name: string;
  queue: string;
  state: 'starting' | 'consuming' | 'paused' | 'stopped';
  lastError: string | null;
  counters: ConsumerCounters;
}

interface Worker extends BatchTarget {
  channel: Channel | undefined;
  consumerTag: string | undefined;
  pending: ConsumeMessage[];
  /** Messages of the batch being applied (delivered, not yet acknowledged). */
  processing: number;
  /** The last delivery of committed batches whose acknowledgement waits (see `ackDelayMs`), and how many. */
  ackDue: { channel: Channel; message: ConsumeMessage; count: number } | undefined;
  timer: NodeJS.Timeout | undefined;
  flushing: Promise<void> | undefined;
  /** Set by the drain while a batch starts: called once that batch's first statement is sent. */
  onStatementSent: (() => void) | undefined;
  state: ConsumerStatus['state'];
  lastError: string | null;
  counters: ConsumerCounters;
}

const ignore = () => {};

/** Messages a consumer has sent up the ladder or to the dead-letter queue so far. */
const failures = (worker: Worker): number =>
  worker.counters.retried + worker.counters.deadLettered + worker.counters.poison;

const silentLogger: PublisherLogger = { info() {}, warn() {}, error() {} };

/**
 * Time a consumer channel's orderly close (its waiting acknowledgement, then Channel.Close and its
 * CloseOk) may take before the connection is closed anyway, in ms.
 */
const CHANNEL_CLOSE_TIMEOUT_MS = 2000;

/** In-place retries of a transaction that hit a deadlock or serialization failure. */
const TRANSIENT_CONFLICT_RETRIES = 5;

/** SQLSTATE 40001 (serialization failure) and 40P01 (deadlock detected). */
function isTransientConflict(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '40001' || code === '40P01';
}

/** Deliveries taken from a channel as one batch, parsed and validated (or the reason each is poison). */
interface PreparedBatch {
  channel: Channel;
  batch: ConsumeMessage[];
  deliveries: Array<Delivery | PoisonMessageError>;
}

export class ConsumerRuntime {
  readonly #options: Required<Omit<ConsumerRuntimeOptions, 'logger' | 'metrics'>>;
  readonly #logger: PublisherLogger;
  readonly #metrics: ConsumerMetrics | undefined;
  readonly #workers: Worker[];
  readonly #connections: ConsumerConnections;
  #stopping = false;
  #running: Promise<void> | undefined;
  #connected: (() => void) | undefined;
  #markStopped: () => void = () => {};
  readonly #stopped = new Promise<void>((resolve) => {
    this.#markStopped = resolve;
  });
  #lastLogAt = new Map<string, number>();
  /** One timer for every consumer's waiting acknowledgements, so that they reach the broker together. */
  #ackTimer: NodeJS.Timeout | undefined;
  /** Consumer channels being closed (#closeChannel), until they are. */
  readonly #channelCloses = new WeakMap<Channel, Promise<void>>();
  /**
   * Events parsed and validated by any of this runtime's consumers, for the other copies of them; none
   * when at most one consumer validates: remembering an event costs a copy of its bytes per delivery
   * that no other consumer would read.
   */
  readonly #parsed: ParsedEvents | undefined;

  constructor(options: ConsumerRuntimeOptions) {
    const { logger, metrics, ...rest } = options;
    this.#logger = logger ?? silentLogger;
    this.#options = {
      ...CONSUMER_RUNTIME_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    } as Required<Omit<ConsumerRuntimeOptions, 'logger' | 'metrics'>>;
    this.#connections = new ConsumerConnections(this.#options);
    const validating = options.consumers.filter((consumer) => consumer.validate !== false).length;
    this.#parsed = validating > 1 ? new ParsedEvents() : undefined;
    this.#workers = options.consumers.map((consumer) => {
      const worker: Worker = {
        pool: this.#options.pool,
        consumer,
        deduplicator: new Deduplicator(consumer.name),
        statementSent: () => {
          const sent = worker.onStatementSent;
          worker.onStatementSent = undefined;
          sent?.();
        },
        committed: (applied, duplicates, effective) =>
          this.#committed(worker, applied, duplicates, effective),
        channel: undefined,
        consumerTag: undefined,
        pending: [],
        processing: 0,
        ackDue: undefined,
        timer: undefined,
        flushing: undefined,
        onStatementSent: undefined,
        state: 'starting',
        lastError: null,
        counters: { applied: 0, duplicates: 0, retried: 0, deadLettered: 0, poison: 0, databasePauses: 0 },
      };
      return worker;
    });
    this.#metrics =
      metrics === undefined
        ? undefined
        : new ConsumerMetrics(
            metrics,
            { status: () => this.status(), inFlight: () => this.#inFlight() },
            { prefetch: this.#options.prefetch, retryDelaysMs: this.#options.retryDelaysMs },
          );
  }

  /** Starts consuming in the background; resolves once every consumer is subscribed the first time. */
  async start(): Promise<void> {
    if (this.#running === undefined) {
      const connected = new Promise<void>((resolve) => {
        this.#connected = resolve;
      });
      this.#running = this.#run();
      await Promise.race([connected, this.#stopped]);
    }
  }

  /** Stops taking deliveries, finishes and acknowledges the batches in hand (within `timeoutMs`), closes. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    await Promise.all(
      this.#workers.map(async (worker) => {
        if (worker.channel !== undefined && worker.consumerTag !== undefined) {
          await worker.channel.cancel(worker.consumerTag).catch(() => {});
        }
      }),
    );
    const deadline = Date.now() + timeoutMs;
    for (const worker of this.#workers) {
      clearTimeout(worker.timer);
      await this.#withDeadline(this.#flush(worker), deadline);
    }
    this.#markStopped();
    // Sends the acknowledgements still waiting, each channel closed after its own (#closeConnections).
    await this.#closeConnections();
    await this.#running;
    for (const worker of this.#workers) worker.state = 'stopped';
  }

  status(): ConsumerStatus[] {
    return this.#workers.map((worker) => ({
      name: worker.consumer.name,
      queue: worker.consumer.queue,
      state: worker.state,
      lastError: worker.lastError,
      counters: { ...worker.counters },
    }));
  }

  /**
   * Deliveries held and not acknowledged, per consumer: waiting for a batch, in the one being applied, or
   * committed with their acknowledgement waiting.
   */
  #inFlight(): Map<string, number> {
    return new Map(
      this.#workers.map((worker) => [
        worker.consumer.name,
        worker.pending.length + worker.processing + (worker.ackDue?.count ?? 0),
      ]),
    );
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      try {
        const { lost, node } = await this.#connect();
        this.#connections.established();
        this.#connected?.();
        await Promise.race([lost, this.#stopped]);
        if (!this.#stopping)
          this.#logger.warn({ node }, 'consumers lost their RabbitMQ connection; reconnecting');
      } catch (error) {
        if (!this.#stopping) {
          this.#throttledLog('broker', { err: describe(error) }, 'consumers cannot reach RabbitMQ; retrying');
        }
      }
      if (this.#stopping) break;
      await this.#closeConnections();
      const delay = this.#connections.retryDelay();
      await Promise.race([new Promise((resolve) => setTimeout(resolve, delay)), this.#stopped]);
    }
  }

  /** Opens both connections and subscribes every consumer; `lost` resolves when either connection goes. */
  async #connect(): Promise<{ lost: Promise<void>; node: string }> {
    const { consuming, node, lost } = await this.#connections.open();
    for (const worker of this.#workers) await this.#subscribe(worker, consuming);
    this.#logger.info(
      { node, consumers: this.#workers.map((worker) => worker.consumer.name) },
      'consumers connected to RabbitMQ',
    );
    // Wrapped: an async function returning a promise would wait for it.
    return { lost, node };
  }

  async #subscribe(worker: Worker, connection: ChannelModel): Promise<void> {
    const channel = await connection.createChannel();
    channel.on('error', (error: unknown) => {
      worker.lastError = describe(error);
    });
    channel.on('close', () => {
      if (worker.channel !== channel) return;
      worker.channel = undefined;
      worker.consumerTag = undefined;
      // Unacknowledged deliveries of a closed channel come back to the queue: drop our copies.
      worker.pending = [];
      worker.ackDue = undefined;
      if (!this.#stopping && this.#connections.isConsuming(connection)) {
        setTimeout(() => {
          if (!this.#stopping && this.#connections.isConsuming(connection) && worker.channel === undefined) {
            this.#subscribe(worker, connection).catch(() => this.#connections.lose());
          }
        }, 500).unref();
      }
    });
    await channel.prefetch(this.#options.prefetch);
    worker.channel = channel;
    const { consumerTag } = await channel.consume(
      worker.consumer.queue,
      (message) => {
        if (message === null) {
          // The broker cancelled the consumer (queue deleted, node going down): resubscribe afresh.
          this.#throttledLog(
            `cancel:${worker.consumer.name}`,
            {},
            'consumer cancelled by RabbitMQ; resubscribing',
          );
          void this.#closeChannel(worker, channel);
          return;
        }
        this.#receive(worker, message);
      },
      { noAck: false },
    );
    worker.consumerTag = consumerTag;
    worker.state = 'consuming';
  }

  #receive(worker: Worker, message: ConsumeMessage): void {
    // Parsed and validated when the batch before it has its statement in PostgreSQL (#drain), not now:
    // measured, doing it on arrival cost more node CPU per event (the parsed events outlive a young-
    // generation collection and are promoted) than the overlap won.
    worker.pending.push(message);
    if (worker.pending.length >= this.#options.batchSize) {
      clearTimeout(worker.timer);
      worker.timer = undefined;
      void this.#flush(worker);
    } else if (worker.timer === undefined) {
      worker.timer = setTimeout(() => {
        worker.timer = undefined;
        void this.#flush(worker);
      }, this.#options.batchWaitMs);
    }
  }

  /** Applies what is pending, batch after batch, one flush at a time per consumer. */
  #flush(worker: Worker): Promise<void> {
    if (worker.flushing !== undefined) return worker.flushing;
    if (worker.pending.length === 0 || worker.channel === undefined) return Promise.resolve();
    const flushing = this.#drain(worker).finally(() => {
      worker.flushing = undefined;
      // Deliveries that arrived as the drain was ending found it still running: take them now.
      if (worker.pending.length > 0 && worker.channel !== undefined) void this.#flush(worker);
    });
    worker.flushing = flushing;
    return flushing;
  }

  /**
   * Pipelined: while a batch's statement runs in PostgreSQL, the next batch (already delivered) is parsed
   * and validated — work that depends on nothing the running batch changes. Everything that does (the
   * de-duplication decision, the consumer's writes, dead-lettering poison, the commit, the acknowledgement)
   * still happens batch after batch, in queue order: batch N+1 is applied only once batch N committed and
   * was acknowledged, so per-model order, exactly-once and the pause while PostgreSQL is away are as before.
   */
  async #drain(worker: Worker): Promise<void> {
    let next: PreparedBatch | undefined;
    while (next !== undefined || (worker.pending.length > 0 && worker.channel !== undefined)) {
      const channel = worker.channel;
      // A batch prepared on a channel that closed since: its deliveries come back on the new one.
      const current =
        next !== undefined && next.channel === channel ? next : this.#prepareNext(worker, channel);
      next = undefined;
      if (current === undefined || channel === undefined) break;
      const { batch } = current;
      const startedAt = process.hrtime.bigint();
      const failuresBefore = failures(worker);
      worker.processing = batch.length;
      const sent = new Promise<void>((resolve) => {
        worker.onStatementSent = resolve;
      });
      const applying = this.#process(worker, current);
      // Once its statement is sent (or it ended without one), while PostgreSQL runs it.
      await Promise.race([sent, applying.then(ignore, ignore)]);
      worker.onStatementSent = undefined;
      next = this.#prepareNext(worker, channel);
      try {
        await applying;
      } catch (error) {
        worker.processing = 0;
        if (!(error instanceof AbandonBatch)) {
          this.#logger.error(
            { consumer: worker.consumer.name, err: describe(error) },
            'unexpected failure in the consumer runtime; the batch will be redelivered',
          );
        }
        // Left unacknowledged (with the batch prepared behind it): the broker redelivers them on the
        // next channel. What committed before this batch is acknowledged first.
        void this.#closeChannel(worker, channel);
        return;
      }
      const failed = failures(worker) !== failuresBefore;
      worker.processing = next?.batch.length ?? 0;
      this.#acknowledge(worker, channel, batch[batch.length - 1] as ConsumeMessage, batch.length, failed);
      this.#metrics?.observeBatch(
        worker.consumer.name,
        Number(process.hrtime.bigint() - startedAt) / 1e9,
        batch.length,
      );
    }
  }

  /**
   * Acknowledges a committed batch (with every delivery before it: one multiple-ack), now or with the
   * others waiting (`ackDelayMs`). At once when a batch's worth is waiting, so the prefetch keeps the
   * next batches coming, and when the batch sent a message up the ladder or to the dead-letter queue: its
   * retry or dead letter is confirmed, and the original should not come back to be sent twice.
   */
  #acknowledge(worker: Worker, channel: Channel, last: ConsumeMessage, count: number, failed: boolean): void {
    if (worker.channel !== channel) return;
    const waiting = worker.ackDue?.channel === channel ? worker.ackDue.count : 0;
    worker.ackDue = { channel, message: last, count: waiting + count };
    // Half the prefetch at most: a prefetch set below two batches must not run dry while acks wait.
    const enough = Math.min(this.#options.batchSize, Math.ceil(this.#options.prefetch / 2));
    if (failed || this.#options.ackDelayMs === 0 || waiting + count >= enough) {
      this.#ackNow(worker);
    } else {
      this.#ackTimer ??= setTimeout(() => {
        this.#ackTimer = undefined;
        this.#ackAll();
      }, this.#options.ackDelayMs);
    }
  }

  #ackNow(worker: Worker): void {
    const due = worker.ackDue;
    worker.ackDue = undefined;
    if (due === undefined || worker.channel !== due.channel) return;
    try {
      due.channel.ack(due.message, true);
    } catch {
      // The channel is gone: its deliveries are redelivered, and applied ones de-duplicated.
    }
  }

  #ackAll(): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    for (const worker of this.#workers) this.#ackNow(worker);
  }

  /** Takes the next batch from what is pending and parses and validates it (no side effect). */
  #prepareNext(worker: Worker, channel: Channel | undefined): PreparedBatch | undefined {
    if (channel === undefined || worker.channel !== channel || worker.pending.length === 0) return undefined;
    const batch = worker.pending.splice(0, this.#options.batchSize);
    return {
      channel,
      batch,
      deliveries: batch.map((message) => toDelivery(worker.consumer, message, this.#parsed)),
    };
  }

  async #process(worker: Worker, prepared: PreparedBatch): Promise<void> {
    const valid: Array<{ message: ConsumeMessage; delivery: Delivery }> = [];
    const { batch, deliveries } = prepared;
    for (let index = 0; index < batch.length; index++) {
      const message = batch[index] as ConsumeMessage;
      const delivery = deliveries[index] as Delivery | PoisonMessageError;
      if (delivery instanceof PoisonMessageError) {
        worker.counters.poison++;
        await this.#fail(worker, message, delivery, true);
      } else {
        valid.push({ message, delivery });
      }
    }
    if (valid.length === 0) return;
    const error = await this.#applyUntilDatabaseAnswers(
      worker,
      valid.map((item) => item.delivery),
    );
    if (error === undefined) return;
    if (valid.length === 1) {
      await this.#failApplied(worker, (valid[0] as { message: ConsumeMessage }).message, error);
      return;
    }
    // Find the message(s) at fault: the others are applied, each in its own transaction, in order.
    for (const item of valid) {
      const itemError = await this.#applyUntilDatabaseAnswers(worker, [item.delivery]);
      if (itemError !== undefined) await this.#failApplied(worker, item.message, itemError);
    }
  }

  /** A consumer that finds a message unusable says so with a PoisonMessageError: no retry can help it. */
  async #failApplied(worker: Worker, message: ConsumeMessage, error: unknown): Promise<void> {
    const poison = error instanceof PoisonMessageError;
    if (poison) worker.counters.poison++;
    await this.#fail(worker, message, error, poison);
  }

  /** Applies in one transaction; while PostgreSQL is unreachable, waits and tries again. Returns a message error. */
  async #applyUntilDatabaseAnswers(worker: Worker, deliveries: Delivery[]): Promise<unknown> {
    let conflicts = 0;
    for (;;) {
      try {
        await applyBatch(worker, deliveries, conflicts > 0);
        if (worker.state === 'paused') {
          worker.state = 'consuming';
          this.#logger.info({ consumer: worker.consumer.name }, 'PostgreSQL is back; consuming again');
        }
        return undefined;
      } catch (error) {
        // A deadlock or serialization failure is the database's to resolve, not the message's: retried
        // in place (up the ladder it would come back after later events of its model).
        if (isTransientConflict(error) && conflicts < TRANSIENT_CONFLICT_RETRIES) {
          conflicts++;
          await new Promise((resolve) => setTimeout(resolve, 10 * conflicts));
          continue;
        }
        if (!isDatabaseUnavailable(error)) return error;
        worker.lastError = describe(error);
        if (worker.state !== 'paused') {
          worker.state = 'paused';
          worker.counters.databasePauses++;
          this.#logger.warn(
            { consumer: worker.consumer.name, err: worker.lastError },
            'PostgreSQL unreachable; consumption paused, nothing retried or dead-lettered',
          );
        }
        if (this.#stopping || worker.channel === undefined) throw new AbandonBatch('paused while stopping');
        await Promise.race([
          new Promise((resolve) => setTimeout(resolve, this.#options.databaseRetryMs)),
          this.#stopped,
        ]);
      }
    }
  }

  /** A batch committed: counts it, observes its events' ages, and runs the consumer's `afterCommit`. */
  #committed(worker: Worker, applied: readonly Delivery[], duplicates: number, effective: Delivery[]): void {
    worker.counters.applied += applied.length;
    this.#metrics?.observeEventAges(worker.consumer.name, applied, Date.now());
    worker.counters.duplicates += duplicates;
    // Outside the transaction: what it does cannot undo the commit, and its failure is only logged.
    if (effective.length > 0 && worker.consumer.afterCommit !== undefined) {
      try {
        worker.consumer.afterCommit(effective);
      } catch (error) {
        this.#logger.error({ consumer: worker.consumer.name, err: describe(error) }, 'afterCommit failed');
      }
    }
  }

  /** Sends a failed message up the ladder or to the dead-letter queue, confirmed before it is acknowledged. */
  async #fail(worker: Worker, message: ConsumeMessage, error: unknown, poison: boolean): Promise<void> {
    const decision = await routeFailure(this.#connections.confirm, worker.consumer.queue, message, error, {
      poison,
      retryDelaysMs: this.#options.retryDelaysMs,
    });
    const { properties } = message;
    if (decision.action === 'retry') {
      worker.counters.retried++;
      this.#metrics?.retried(worker.consumer.name, decision.delayMs);
      this.#throttledLog(
        `retry:${worker.consumer.name}`,
        {
          consumer: worker.consumer.name,
          eventId: properties.messageId,
          delayMs: decision.delayMs,
          err: describe(error),
        },
        'event failed; retrying later',
      );
    } else if (!poison) {
      worker.counters.deadLettered++;
    }
    worker.lastError = describe(error);
  }

  /**
   * Closes a consumer's channel in order: the acknowledgement of what it committed (waiting for
   * `ackDelayMs`) goes first, on the same channel, so the broker has it before the Channel.Close. Only
   * committed batches are ever waiting; what is pending or being applied stays unacknowledged, redelivered.
   */
  #closeChannel(worker: Worker, channel: Channel): Promise<void> {
    // A close under way (a consumer cancel, a failed batch) is waited for, not begun again.
    let closing = this.#channelCloses.get(channel);
    if (closing === undefined) {
      if (worker.ackDue?.channel === channel) this.#ackNow(worker);
      // Its own 'close' ends the wait too: amqplib's close() never settles when the connection dies.
      const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
      // Rejected when closed already (the connection went): nothing more can be sent on it.
      closing = withTimeout(Promise.race([channel.close(), closed]), CHANNEL_CLOSE_TIMEOUT_MS).catch(ignore);
      this.#channelCloses.set(channel, closing);
    }
    return closing;
  }

  /**
   * Closes the connections, each consumer's channel first (#closeChannel): the acknowledgements waiting
   * reach the broker before the Connection.Close. Not after it, nor beside it: amqplib writes each
   * channel's frames from a buffer of its own, interleaved, so a Connection.Close written after an ack
   * could leave first, and a broker that has the Close ignores everything else on the connection.
   */
  async #closeConnections(): Promise<void> {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const closing: Array<Promise<void>> = [];
    for (const worker of this.#workers) {
      const channel = worker.channel;
      if (channel !== undefined) closing.push(this.#closeChannel(worker, channel));
      worker.channel = undefined;
      worker.consumerTag = undefined;
      worker.pending = [];
      worker.ackDue = undefined;
    }
    await Promise.all(closing);
    await this.#connections.close();
  }

  async #withDeadline(promise: Promise<void>, deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      promise.catch(() => {}),
      new Promise((resolve) => {
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      }),
    ]);
    clearTimeout(timer);
  }

  #throttledLog(key: string, object: object, message: string): void {
    const now = Date.now();
    if (now - (this.#lastLogAt.get(key) ?? 0) < 10_000) return;
    this.#lastLogAt.set(key, now);
    this.#logger.warn(object, message);
  }
}
