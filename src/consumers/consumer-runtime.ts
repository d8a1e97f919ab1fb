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
 *   the runtime's — then acknowledged with one multiple-ack. Batches of a queue are applied one after
 *   another, in queue order; the next one is parsed and validated while the
 *   one before is in PostgreSQL.
 * - An invalid message is poison: dead-lettered at once with the reason. A failing batch is split to find
 *   the message(s) at fault; each goes up the retry ladder (only in its own queue), then to the
 *   dead-letter queue with its failure history in headers. A retry or dead letter is confirmed by the
 *   broker before the original is acknowledged, so nothing is lost in between.
 * - PostgreSQL unreachable is not a message's fault: the batch waits, unacknowledged, and is tried again
 *   until PostgreSQL is back — consumption pauses (the prefetch bounds what is held), no retry is spent.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import { applyTopology } from '../bus/apply-topology.ts';
import { closeConnection } from '../bus/broker-connection.ts';
import { BROKER_SESSION_DEFAULTS, BrokerSession } from '../bus/broker-session.ts';
import { validateEvent } from '../bus/event-validator.ts';
import type { PublisherLogger } from '../bus/spool-publisher.ts';
import { EXCHANGES, type Topology } from '../bus/topology.ts';
import { batchStatement } from '../db/batch-statement.ts';
import { isDatabaseUnavailable } from '../db/database-unavailable.ts';
import { appliedRows } from '../ledger/applied-rows.ts';
import { addLedgerRows, ledgerWrite } from '../ledger/ledger-store.ts';
import { ConsumerMetrics } from '../prometheus/consumer-metrics.ts';
import { redactedMessage as describe } from '../redact-credentials.ts';
import type { Consumer, Delivery } from './consumer.ts';
import { Deduplicator, recordApplied, type Selection } from './deduplication/deduplicator.ts';
import { decideFailure, FAILURE_HEADERS } from './failure-policy.ts';
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

interface Worker {
  consumer: Consumer;
  /** Which deliveries are new, for a consumer that does not de-duplicate in its own table. */
  deduplicator: Deduplicator;
  channel: Channel | undefined;
  consumerTag: string | undefined;
  pending: ConsumeMessage[];
  /** Messages of the batch being applied (delivered, not yet acknowledged). */
  processing: number;
  timer: NodeJS.Timeout | undefined;
  flushing: Promise<void> | undefined;
  /** Set by the drain while a batch starts: called once that batch's first statement is sent. */
  statementSent: (() => void) | undefined;
  state: ConsumerStatus['state'];
  lastError: string | null;
  counters: ConsumerCounters;
}

const ignore = () => {};

const silentLogger: PublisherLogger = { info() {}, warn() {}, error() {} };

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

/** Why a batch cannot finish now: the connection went, or the runtime is stopping. Not the message's fault. */
class AbandonBatch extends Error {}

export class ConsumerRuntime {
  readonly #options: Required<Omit<ConsumerRuntimeOptions, 'logger' | 'metrics'>>;
  readonly #logger: PublisherLogger;
  readonly #metrics: ConsumerMetrics | undefined;
  readonly #workers: Worker[];
  readonly #broker: BrokerSession;
  #consuming: ChannelModel | undefined;
  #publishing: ChannelModel | undefined;
  #confirm: ConfirmChannel | undefined;
  #stopping = false;
  #running: Promise<void> | undefined;
  #connected: (() => void) | undefined;
  #connectionLost: (() => void) | undefined;
  #markStopped: () => void = () => {};
  readonly #stopped = new Promise<void>((resolve) => {
    this.#markStopped = resolve;
  });
  #lastLogAt = new Map<string, number>();
  /** Events parsed and validated by any of this runtime's consumers, for the other copies of them. */
  readonly #parsed = new ParsedEvents();

  constructor(options: ConsumerRuntimeOptions) {
    const { logger, metrics, ...rest } = options;
    this.#logger = logger ?? silentLogger;
    this.#options = {
      ...CONSUMER_RUNTIME_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    } as Required<Omit<ConsumerRuntimeOptions, 'logger' | 'metrics'>>;
    this.#broker = new BrokerSession({
      urls: this.#options.urls,
      name: 'telemetry-bus worker',
      heartbeatSeconds: this.#options.heartbeatSeconds,
      reconnectMinDelayMs: this.#options.reconnectMinDelayMs,
    });
    this.#workers = options.consumers.map((consumer) => ({
      consumer,
      deduplicator: new Deduplicator(consumer.name),
      channel: undefined,
      consumerTag: undefined,
      pending: [],
      processing: 0,
      timer: undefined,
      flushing: undefined,
      statementSent: undefined,
      state: 'starting',
      lastError: null,
      counters: { applied: 0, duplicates: 0, retried: 0, deadLettered: 0, poison: 0, databasePauses: 0 },
    }));
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

  /** Deliveries held and not acknowledged, per consumer: waiting for a batch, or in the one being applied. */
  #inFlight(): Map<string, number> {
    return new Map(
      this.#workers.map((worker) => [worker.consumer.name, worker.pending.length + worker.processing]),
    );
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      try {
        const { lost, node } = await this.#connect();
        this.#broker.established();
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
      const delay = this.#broker.retryDelay();
      await Promise.race([new Promise((resolve) => setTimeout(resolve, delay)), this.#stopped]);
    }
  }

  /** Opens both connections and subscribes every consumer; `lost` resolves when either connection goes. */
  async #connect(): Promise<{ lost: Promise<void>; node: string }> {
    const lost = new Promise<void>((resolve) => {
      this.#connectionLost = resolve;
    });
    const { connection: consuming, node } = await this.#broker.connect();
    this.#consuming = consuming;
    consuming.on('error', () => {});
    consuming.on('close', () => this.#connectionLost?.());
    // The same node first: the session prefers the node of its last connection.
    const { connection: publishing } = await this.#broker.connect('telemetry-bus worker publisher');
    this.#publishing = publishing;
    publishing.on('error', () => {});
    publishing.on('close', () => this.#connectionLost?.());
    await applyTopology(publishing, this.#options.topology);
    this.#confirm = await publishing.createConfirmChannel();
    this.#confirm.on('error', () => {});
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
      if (!this.#stopping && this.#consuming === connection) {
        setTimeout(() => {
          if (!this.#stopping && this.#consuming === connection && worker.channel === undefined) {
            this.#subscribe(worker, connection).catch(() => this.#connectionLost?.());
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
          channel.close().catch(() => {});
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
      worker.processing = batch.length;
      const sent = new Promise<void>((resolve) => {
        worker.statementSent = resolve;
      });
      const applying = this.#process(worker, current);
      // Once its statement is sent (or it ended without one), while PostgreSQL runs it.
      await Promise.race([sent, applying.then(ignore, ignore)]);
      worker.statementSent = undefined;
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
        // next channel.
        channel.close().catch(() => {});
        return;
      }
      worker.processing = next?.batch.length ?? 0;
      if (worker.channel === channel) {
        try {
          channel.ack(batch[batch.length - 1] as ConsumeMessage, true);
        } catch {
          // The channel is gone: its deliveries are redelivered, and applied ones de-duplicated.
        }
      }
      this.#metrics?.observeBatch(
        worker.consumer.name,
        Number(process.hrtime.bigint() - startedAt) / 1e9,
        batch.length,
      );
    }
  }

  /** Takes the next batch from what is pending and parses and validates it (no side effect). */
  #prepareNext(worker: Worker, channel: Channel | undefined): PreparedBatch | undefined {
    if (channel === undefined || worker.channel !== channel || worker.pending.length === 0) return undefined;
    const batch = worker.pending.splice(0, this.#options.batchSize);
    return {
      channel,
      batch,
      deliveries: batch.map((message) => this.#toDelivery(worker.consumer, message)),
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
        await this.#applyInTransaction(worker, deliveries, conflicts > 0);
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

  async #applyInTransaction(worker: Worker, deliveries: Delivery[], afterConflict: boolean): Promise<void> {
    if (!worker.consumer.deduplicates && worker.consumer.writes !== undefined) {
      return this.#applyInOneStatement(worker, deliveries, afterConflict);
    }
    if (
      worker.consumer.deduplicates &&
      worker.consumer.writes !== undefined &&
      (await this.#applyAllInOneStatement(worker, deliveries, afterConflict))
    ) {
      return;
    }
    const client = await this.#options.pool.connect();
    let broken: unknown;
    let committed: Delivery[] = [];
    try {
      const begun = client.query('BEGIN');
      this.#statementSent(worker);
      await begun;
      const { todo, effective, selection } = worker.consumer.deduplicates
        ? await this.#applyDeduplicating(worker.consumer, deliveries, client)
        : await this.#applyRecorded(worker, deliveries, client);
      if (todo.length > 0) {
        await addLedgerRows(
          client,
          appliedRows(
            worker.consumer.name,
            todo.map((delivery) => delivery.event),
          ),
        );
      }
      await client.query('COMMIT');
      if (selection !== undefined) worker.deduplicator.committed(selection);
      this.#applied(worker, todo);
      worker.counters.duplicates += deliveries.length - todo.length;
      committed = effective;
    } catch (error) {
      // Whether the commit happened or not, what the deduplicator cached may be stale: it reads again.
      worker.deduplicator.forget();
      if (isDatabaseUnavailable(error)) broken = error;
      else
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = rollbackError;
        });
      throw error;
    } finally {
      client.release(broken instanceof Error ? broken : broken === undefined ? undefined : true);
    }
    this.#afterCommit(worker, committed);
  }

  /** Counts events just committed, and observes their age (once per applied event, after its commit). */
  #applied(worker: Worker, applied: readonly Delivery[]): void {
    worker.counters.applied += applied.length;
    this.#metrics?.observeEventAges(worker.consumer.name, applied, Date.now());
  }

  /** The batch's first statement is on its way to PostgreSQL: the drain may prepare the next batch now. */
  #statementSent(worker: Worker): void {
    const sent = worker.statementSent;
    worker.statementSent = undefined;
    sent?.();
  }

  /** Outside the transaction: what it does cannot undo the commit, and its failure is only logged. */
  #afterCommit(worker: Worker, committed: Delivery[]): void {
    if (committed.length > 0 && worker.consumer.afterCommit !== undefined) {
      try {
        worker.consumer.afterCommit(committed);
      } catch (error) {
        this.#logger.error({ consumer: worker.consumer.name, err: describe(error) }, 'afterCommit failed');
      }
    }
  }

  /**
   * A consumer with `writes`: the batch's effects, its de-duplication records and its ledger rows as one
   * statement (src/db/batch-statement.ts). When the deduplicator can decide the batch from what it
   * cached (the common case: every delivery stamped, above its stream's high), that statement is the
   * whole transaction — one round trip, no BEGIN or COMMIT. Otherwise (copies below a high, streams or
   * events to look up) the reads and the statement run in a transaction of their own.
   */
  async #applyInOneStatement(worker: Worker, deliveries: Delivery[], afterConflict: boolean): Promise<void> {
    const { consumer, deduplicator } = worker;
    await consumer.prepare?.(this.#options.pool, deliveries, { afterConflict });
    const decided = deduplicator.decide(deliveries);
    const client = await this.#options.pool.connect();
    let broken: unknown;
    let inTransaction = false;
    let effective: Delivery[] = [];
    try {
      let selection = decided;
      if (selection === undefined) {
        const begun = client.query('BEGIN');
        this.#statementSent(worker);
        await begun;
        inTransaction = true;
        selection = await deduplicator.select(client, deliveries);
      }
      const todo = selection.fresh;
      // Self-test events are recorded as applied (and counted in the ledger) with no effect.
      effective = todo.filter((delivery) => delivery.event?.source !== 'selftest');
      if (todo.length > 0 || inTransaction) {
        const writes = consumer.writes?.(effective) ?? [];
        const ledger = ledgerWrite(
          appliedRows(
            consumer.name,
            todo.map((delivery) => delivery.event),
          ),
        );
        const done = client.query(
          batchStatement(`batch.${consumer.name}`, [
            ...writes,
            ...deduplicator.recordWrites(selection),
            ledger,
          ]),
        );
        this.#statementSent(worker);
        await done;
      }
      if (inTransaction) await client.query('COMMIT');
      deduplicator.committed(selection);
      this.#applied(worker, todo);
      worker.counters.duplicates += deliveries.length - todo.length;
    } catch (error) {
      // Whether the commit happened or not, what the deduplicator cached may be stale: it reads again.
      deduplicator.forget();
      if (isDatabaseUnavailable(error)) broken = error;
      else if (inTransaction)
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken = rollbackError;
        });
      throw error;
    } finally {
      client.release(broken instanceof Error ? broken : broken === undefined ? undefined : true);
    }
    this.#afterCommit(worker, effective);
  }

  /**
   * A consumer that de-duplicates itself and has `writes`: the batch (each id once) as one statement, if
   * the consumer can write it so, with checks that fail it unless every delivery was new. Returns false
   * when the consumer cannot (or the batch holds self-test events, recorded by id): then the caller
   * applies it in a transaction.
   */
  async #applyAllInOneStatement(
    worker: Worker,
    deliveries: Delivery[],
    afterConflict: boolean,
  ): Promise<boolean> {
    const { consumer } = worker;
    const ids = new Set<string>();
    const unique: Delivery[] = [];
    for (const delivery of deliveries) {
      if (delivery.event?.source === 'selftest') return false;
      if (ids.has(delivery.id)) continue;
      ids.add(delivery.id);
      unique.push(delivery);
    }
    await consumer.prepare?.(this.#options.pool, unique, { afterConflict });
    const writes = consumer.writes?.(unique);
    if (writes === undefined) return false;
    const ledger = ledgerWrite(
      appliedRows(
        consumer.name,
        unique.map((delivery) => delivery.event),
      ),
    );
    const client = await this.#options.pool.connect();
    let broken: unknown;
    try {
      const done = client.query(batchStatement(`batch.${consumer.name}`, [...writes, ledger]));
      this.#statementSent(worker);
      await done;
    } catch (error) {
      if (isDatabaseUnavailable(error)) broken = error;
      throw error;
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
    this.#applied(worker, unique);
    worker.counters.duplicates += deliveries.length - unique.length;
    this.#afterCommit(worker, unique);
    return true;
  }

  /**
   * The runtime de-duplicates (./deduplication/deduplicator.ts: by producer stream, or by event id), and
   * the consumer applies those that were new. Returns what was applied (`todo`, self-test events
   * included), what had an effect, and what the deduplicator records once committed.
   */
  async #applyRecorded(
    worker: Worker,
    deliveries: Delivery[],
    client: pg.PoolClient,
  ): Promise<{ todo: Delivery[]; effective: Delivery[]; selection: Selection }> {
    const selection = await worker.deduplicator.select(client, deliveries);
    const todo = selection.fresh;
    // Self-test events are recorded as applied (and counted in the ledger) with no effect.
    const effective = todo.filter((delivery) => delivery.event?.source !== 'selftest');
    if (effective.length > 0) await worker.consumer.apply?.(effective, client);
    await worker.deduplicator.record(client, selection);
    return { todo, effective, selection };
  }

  /**
   * The consumer de-duplicates in its own table (`deduplicates`): it gets each id of the batch once and
   * says which it applied. Self-test events, which have no effect to de-duplicate by, are still recorded in
   * `consumer_applied_events` (where the self-test looks for them).
   */
  async #applyDeduplicating(
    consumer: Consumer,
    deliveries: Delivery[],
    client: pg.PoolClient,
  ): Promise<{ todo: Delivery[]; effective: Delivery[]; selection?: undefined }> {
    const ids = new Set<string>();
    const selfTest: Delivery[] = [];
    const candidates: Delivery[] = [];
    for (const delivery of deliveries) {
      if (ids.has(delivery.id)) continue;
      ids.add(delivery.id);
      (delivery.event?.source === 'selftest' ? selfTest : candidates).push(delivery);
    }
    let todo: Delivery[] = [];
    if (selfTest.length > 0) {
      const fresh = await recordApplied(client, consumer.name, selfTest);
      todo = selfTest.filter((delivery) => fresh.has(delivery.id));
    }
    let effective: Delivery[] = [];
    if (candidates.length > 0) {
      const applied = await consumer.apply?.(candidates, client);
      if (!Array.isArray(applied)) {
        throw new TypeError(`consumer ${consumer.name} de-duplicates but did not say what it applied`);
      }
      effective = applied;
    }
    return { todo: todo.length === 0 ? effective : [...todo, ...effective], effective };
  }

  #toDelivery(consumer: Consumer, message: ConsumeMessage): Delivery | PoisonMessageError {
    const { properties, fields } = message;
    const base = {
      content: message.content,
      exchange: fields.exchange,
      routingKey: fields.routingKey,
      redelivered: fields.redelivered,
      properties: {
        contentType: properties.contentType as string | undefined,
        appId: properties.appId as string | undefined,
        messageId: properties.messageId as string | undefined,
        correlationId: properties.correlationId as string | undefined,
        type: properties.type as string | undefined,
        timestamp: properties.timestamp as number | undefined,
        headers: (properties.headers ?? {}) as Record<string, unknown>,
      },
    };
    if (consumer.validate === false) {
      try {
        const id =
          consumer.idOf?.(base) ??
          (typeof properties.messageId === 'string' && properties.messageId !== ''
            ? properties.messageId
            : `sha256:${createHash('sha256').update(message.content).digest('hex')}`);
        return { ...base, event: undefined, id };
      } catch (error) {
        // A message the consumer cannot even identify would block its queue if redelivered forever.
        return new PoisonMessageError(`cannot identify the message: ${describe(error)}`, { cause: error });
      }
    }
    const messageId = base.properties.messageId;
    const known = this.#parsed.get(messageId, message.content);
    if (known !== undefined) return { ...base, event: known, id: known.event_id };
    let parsed: unknown;
    try {
      parsed = JSON.parse(message.content.toString('utf8'));
    } catch (error) {
      return new PoisonMessageError(`the message is not JSON: ${(error as Error).message}`, { cause: error });
    }
    const validation = validateEvent(parsed);
    if (!validation.ok) return new PoisonMessageError(`invalid event: ${validation.reason}`);
    this.#parsed.set(messageId, message.content, validation.event);
    return { ...base, event: validation.event, id: validation.event.event_id };
  }

  /** Sends a failed message up the ladder or to the dead-letter queue, confirmed before it is acknowledged. */
  async #fail(worker: Worker, message: ConsumeMessage, error: unknown, poison: boolean): Promise<void> {
    const decision = decideFailure(
      {
        queue: worker.consumer.queue,
        exchange: message.fields.exchange,
        routingKey: message.fields.routingKey,
        headers: (message.properties.headers ?? {}) as Record<string, unknown>,
      },
      error,
      { poison, retryDelaysMs: this.#options.retryDelaysMs, now: new Date(), deadLetterId: randomUUID() },
    );
    const exchange = decision.action === 'retry' ? decision.exchange : EXCHANGES.deadLetters;
    const routingKey =
      decision.action === 'retry'
        ? decision.routingKey
        : String(decision.headers[FAILURE_HEADERS.originalRoutingKey] ?? message.fields.routingKey);
    const confirm = this.#confirm;
    if (confirm === undefined) throw new AbandonBatch('no publishing channel');
    const { properties } = message;
    try {
      await new Promise<void>((resolve, reject) => {
        confirm.publish(
          exchange,
          routingKey,
          message.content,
          {
            persistent: true,
            contentType: properties.contentType,
            messageId: properties.messageId,
            correlationId: properties.correlationId,
            type: properties.type,
            timestamp: properties.timestamp,
            appId: properties.appId,
            headers: decision.headers,
          },
          (publishError) => (publishError ? reject(publishError) : resolve()),
        );
      });
    } catch (publishError) {
      throw new AbandonBatch(`could not ${decision.action} a message: ${describe(publishError)}`);
    }
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

  async #closeConnections(): Promise<void> {
    for (const worker of this.#workers) {
      worker.channel = undefined;
      worker.consumerTag = undefined;
      worker.pending = [];
    }
    this.#confirm = undefined;
    for (const connection of [this.#consuming, this.#publishing]) {
      if (connection === undefined) continue;
      await closeConnection(connection);
    }
    this.#consuming = undefined;
    this.#publishing = undefined;
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
