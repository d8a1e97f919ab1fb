/**
 * Publishes the spool to RabbitMQ, in order, over a confirm channel, for as long as the process lives.
 *
 * The spool is the only buffer: nothing waits in memory for the broker. While RabbitMQ is down, blocked
 * or silent, this sender simply stops reading and the spool grows on disk; when it is back, sending
 * resumes from the first unconfirmed record. Up to `window` messages are in flight; the spool's
 * confirmed offset advances over the contiguous prefix the broker has confirmed. Any doubt (a nack, a
 * confirm that does not come, a lost connection) is answered the same way: drop the connection and resend
 * everything unconfirmed, in order, on a new one. That can duplicate a message, never lose or reorder the
 * first copies; consumers de-duplicate by `event_id`.
 */
import type { ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { redactedMessage as describe } from '../redact-credentials.ts';
import { applyTopology } from './apply-topology.ts';
import { closeConnection, destroyConnection } from './broker-connection.ts';
import { BROKER_SESSION_DEFAULTS, BrokerSession } from './broker-session.ts';
import { lowLevel, sendConfirmed } from './confirm-send.ts';
import { InflightWindow, type Label } from './inflight-window.ts';
import type { LedgerCounts } from './ledger-counts.ts';
import { type OutboundMessage, toOutboundMessage } from './outbound-message.ts';
import { PublishLatency } from './publish-latency.ts';
import type { SpoolRecord } from './spool/spool.ts';
import type { Topology } from './topology.ts';

export type BrokerState = 'connecting' | 'connected' | 'blocked' | 'disconnected' | 'stopped';

export interface PublisherLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/**
 * What the publisher needs of a spool: a `Spool` in the same thread, or the publisher thread's view of the
 * API's spool (./publisher-thread/thread-spool.ts).
 */
export interface PublishedSpool {
  read(fromOffset: number, maxRecords: number, maxBytes: number): Promise<SpoolRecord[]> | SpoolRecord[];
  confirm(offset: number): void;
  stats(): { confirmedOffset: number; unconfirmed: number };
  /** Calls `listener` after appends; returns the unsubscribe function. */
  onAppend(listener: () => void): () => void;
}

export interface SpoolPublisherOptions {
  /** AMQP URLs of the broker's nodes, tried in order (./broker-session.ts). */
  urls: readonly string[];
  /** The topology declared at every connect before publishing. */
  topology: Topology;
  /** Messages published and not yet confirmed, at most. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  window?: number;
  /** Time a confirm may take before the connection is dropped and its messages resent, in ms. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  confirmTimeoutMs?: number;
  /** AMQP heartbeat interval, in seconds. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  heartbeatSeconds?: number;
  /** Time allowed for connecting and the AMQP handshake, in ms. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  connectTimeoutMs?: number;
  /** Upper bound of the first reconnect delay, in ms; it doubles per failed round. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  reconnectMinDelayMs?: number;
  /** Longest reconnect delay, in ms. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  reconnectMaxDelayMs?: number;
  /** Records read and published per batch, at most, before requests get a turn. @default {@link SPOOL_PUBLISHER_DEFAULTS} */
  readBatch?: number;
  logger?: PublisherLogger;
  /** Where each record is counted once, when the broker's confirms reach it. */
  ledger?: LedgerCounts;
  /** Where each confirm's emit-to-confirm latency is observed. @default a PublishLatency of its own */
  latency?: LatencyRecorder;
}

/** What observes publish latency: a {@link PublishLatency}, or the publisher thread's report of it. */
export type LatencyRecorder = Pick<PublishLatency, 'observe'>;

export interface PublisherCounters {
  /** Messages the broker confirmed (including resent copies). */
  confirmed: number;
  /** Messages the broker could not route to any queue (published with `mandatory`). */
  returned: number;
  /** Messages the broker refused (nack); they were resent. */
  nacked: number;
  /** Messages published again after a nack, a confirm time-out or a lost connection. */
  resent: number;
  /** Confirm time-outs that made the publisher reconnect. */
  confirmTimeouts: number;
  /** Records the publisher could not decode (counted, skipped). */
  undecodable: number;
  connects: number;
  connectFailures: number;
}

export interface PublisherStatus {
  state: BrokerState;
  /** The node of the current connection (`host:port`), or null when there is none. */
  node: string | null;
  /** Since when the state holds, ISO-8601. */
  since: string;
  /** The last connection error, without credentials. */
  lastError: string | null;
  unconfirmed: number;
  window: number;
  counters: PublisherCounters;
}

/** The publisher's defaults: its broker session's (heartbeat, connect time-out, reconnect delays) and these. */
export const SPOOL_PUBLISHER_DEFAULTS = {
  ...BROKER_SESSION_DEFAULTS,
  /** Messages published and not yet confirmed by the broker, at most (the publish window). */
  window: 1000,
  /** Time a confirm may take before the connection is dropped and its messages resent, in milliseconds. */
  confirmTimeoutMs: 15_000,
  /** Records read and published per batch, at most, before requests get a turn. */
  readBatch: 100,
} as const;

interface Session {
  connection: ChannelModel;
  node: string;
  channel: ConfirmChannel;
  /** The channel's lower level, which publishes pre-built messages (./confirm-send.ts). */
  sender: ReturnType<typeof lowLevel>;
  closed: boolean;
  closeReason: string | null;
}

const silentLogger: PublisherLogger = { info() {}, warn() {}, error() {} };

/** A publisher's counters before its first message: the thread's host starts every incarnation from these. */
export function zeroCounters(): PublisherCounters {
  return {
    confirmed: 0,
    returned: 0,
    nacked: 0,
    resent: 0,
    confirmTimeouts: 0,
    undecodable: 0,
    connects: 0,
    connectFailures: 0,
  };
}

export class SpoolPublisher {
  readonly #spool: PublishedSpool;
  #countConfirmed: ((label: Label) => void) | undefined;
  readonly #options: Required<Omit<SpoolPublisherOptions, 'logger' | 'ledger' | 'latency'>>;
  readonly #logger: PublisherLogger;
  readonly #broker: BrokerSession;
  readonly counters: PublisherCounters = zeroCounters();
  /** Emit to confirm, per confirmed message (./publish-latency.ts). */
  readonly latency: LatencyRecorder;

  #state: BrokerState = 'disconnected';
  #since = Date.now();
  #lastError: string | null = null;
  #session: Session | undefined;
  /** Bumped per session, so a confirm callback of a dropped session changes nothing. */
  #generation = 0;
  readonly #inflight = new InflightWindow();

  #running: Promise<void> | undefined;
  #stopping = false;
  #woken = false;
  #waiter: (() => void) | undefined;
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastLogAt = new Map<string, number>();
  #confirmListeners = new Set<() => void>();
  #markStopped: () => void = () => {};
  readonly #stopped = new Promise<void>((resolve) => {
    this.#markStopped = resolve;
  });

  constructor(spool: PublishedSpool, options: SpoolPublisherOptions) {
    this.#spool = spool;
    const { logger, ledger, latency, ...rest } = options;
    this.latency = latency ?? new PublishLatency();
    this.#logger = logger ?? silentLogger;
    this.#options = { ...SPOOL_PUBLISHER_DEFAULTS, ...stripUndefined(rest) } as Required<
      Omit<SpoolPublisherOptions, 'logger' | 'ledger' | 'latency'>
    >;
    if (ledger !== undefined)
      this.#countConfirmed = (label) => ledger.add('confirmed', label.eventType, label.timestampMs);
    this.#broker = new BrokerSession({
      urls: this.#options.urls,
      name: 'telemetry-bus publisher',
      heartbeatSeconds: this.#options.heartbeatSeconds,
      connectTimeoutMs: this.#options.connectTimeoutMs,
      reconnectMinDelayMs: this.#options.reconnectMinDelayMs,
      reconnectMaxDelayMs: this.#options.reconnectMaxDelayMs,
    });
  }

  /** Starts sending in the background; it never rejects, and retries the broker until stopped. */
  start(): void {
    if (this.#running !== undefined) return;
    this.#unsubscribe = this.#spool.onAppend(() => this.#wake());
    this.#timer = setInterval(() => this.#checkConfirmTimeout(), 250).unref();
    this.#running = this.#run();
  }

  /**
   * Sends what the spool holds for up to `timeoutMs`, then disconnects. What is still unconfirmed stays
   * in the spool for the next start. Resolves with the number of records left unconfirmed.
   */
  async stop(timeoutMs: number): Promise<number> {
    if (this.#running === undefined) return this.#spool.stats().unconfirmed;
    const deadline = Date.now() + timeoutMs;
    // Only worth waiting for while a broker is there to confirm; otherwise the spool keeps it all.
    while (
      this.#spool.stats().unconfirmed > 0 &&
      Date.now() < deadline &&
      (this.#state === 'connected' || this.#state === 'connecting')
    ) {
      await this.#nextConfirm(deadline - Date.now());
    }
    this.#stopping = true;
    this.#markStopped();
    this.#wake();
    const session = this.#session;
    if (session !== undefined) await this.#closeSession(session, 'stopping');
    await this.#running;
    clearInterval(this.#timer);
    this.#unsubscribe?.();
    this.#setState('stopped');
    return this.#spool.stats().unconfirmed;
  }

  status(): PublisherStatus {
    return {
      state: this.#state,
      node: this.#session?.node ?? null,
      since: new Date(this.#since).toISOString(),
      lastError: this.#lastError,
      unconfirmed: this.#inflight.size,
      window: this.#options.window,
      counters: { ...this.counters },
    };
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      this.#setState('connecting');
      let session: Session | undefined;
      try {
        session = await this.#openSession();
        this.#broker.established();
        await this.#publishUntilClosed(session);
      } catch (error) {
        if (!this.#stopping) {
          this.#lastError = describe(error);
          if (session === undefined) this.counters.connectFailures++;
          this.#throttledLog(
            'broker',
            'warn',
            { err: this.#lastError },
            'RabbitMQ unavailable; events wait in the spool',
          );
        }
      } finally {
        if (session !== undefined) await this.#closeSession(session, 'session ended');
        this.#dropInflight();
      }
      if (this.#stopping) break;
      this.#setState('disconnected');
      await this.#sleep(this.#broker.retryDelay());
    }
  }

  async #openSession(): Promise<Session> {
    const { connection, node } = await this.#broker.connect();
    const session = { connection, node, closed: false, closeReason: null } as unknown as Session;
    connection.on('error', (error: unknown) => {
      this.#lastError = describe(error);
    });
    connection.on('close', (error?: unknown) => {
      session.closed = true;
      session.closeReason ??= error === undefined ? 'connection closed' : describe(error);
      this.#wake();
    });
    connection.on('blocked', (reason: string) => {
      this.#lastError = `blocked by the broker: ${reason}`;
      this.#logger.warn({ reason }, 'RabbitMQ blocked publishing; events wait in the spool');
      this.#setState('blocked');
      this.#wake();
    });
    connection.on('unblocked', () => {
      this.#logger.info({}, 'RabbitMQ unblocked publishing');
      // Time spent blocked does not count towards a confirm's time-out.
      this.#inflight.restartClocks(Date.now());
      this.#setState('connected');
      this.#wake();
    });
    try {
      await applyTopology(connection, this.#options.topology);
      session.channel = await connection.createConfirmChannel();
      session.sender = lowLevel(session.channel);
    } catch (error) {
      await this.#closeSession(session, 'setup failed');
      throw error;
    }
    session.channel.on('error', (error: unknown) => {
      this.#lastError = describe(error);
    });
    session.channel.on('close', () => {
      session.closed = true;
      session.closeReason ??= 'channel closed';
      this.#wake();
    });
    session.channel.on('return', (message: ConsumeMessage) => {
      this.counters.returned++;
      this.#throttledLog(
        'return',
        'warn',
        {
          exchange: message.fields.exchange,
          routingKey: message.fields.routingKey,
          eventId: message.properties.messageId,
          returned: this.counters.returned,
        },
        'RabbitMQ could not route an event to any queue (is the topology applied?)',
      );
    });
    this.counters.connects++;
    this.#session = session;
    if (this.#lastError !== null)
      this.#logger.info({ node: session.node }, 'RabbitMQ connected; sending the spool');
    this.#lastError = null;
    this.#setState('connected');
    return session;
  }

  async #publishUntilClosed(session: Session): Promise<void> {
    const generation = ++this.#generation;
    const { sender } = session;
    // Resend from the first record the broker has not confirmed: in order, duplicates allowed.
    let next = this.#spool.stats().confirmedOffset + 1;
    while (!session.closed && !this.#stopping) {
      if (this.#state === 'blocked') {
        await this.#waitForWake();
        continue;
      }
      const room = this.#options.window - this.#inflight.size;
      if (room <= 0) {
        await this.#waitForWake();
        continue;
      }
      const records = await this.#spool.read(next, Math.min(room, this.#options.readBatch), 4 * 1024 * 1024);
      if (session.closed || this.#stopping) break;
      if (records.length === 0) {
        await this.#waitForWake();
        continue;
      }
      let writable = true;
      for (const record of records) {
        next = record.offset + 1;
        writable = this.#publish(sender, record, generation) && writable;
      }
      if (!writable && !session.closed) await this.#waitForDrain(session);
      // This runs on the API's event loop: give requests their turn between batches (reads at the tail
      // resolve at once from memory, so without this a backlog would be sent in one long stretch).
      await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error(session.closeReason ?? 'stopped');
  }

  #publish(channel: Session['sender'], record: SpoolRecord, generation: number): boolean {
    let message: OutboundMessage;
    try {
      message = toOutboundMessage(record.payload);
    } catch {
      // A record that passed its checksum but is not ours to decode: count it and let the offset pass.
      this.counters.undecodable++;
      this.#settle(this.#inflight.push(record.offset, Date.now()));
      return true;
    }
    // The message is its own ledger label: no allocation per message for counting it.
    const sequence = this.#inflight.push(record.offset, Date.now(), message);
    // The channel may have closed a moment ago, its close event not yet delivered: amqplib then throws.
    return this.#tryPublish(channel, message, sequence, generation);
  }

  #tryPublish(
    channel: Session['sender'],
    message: OutboundMessage,
    sequence: number,
    generation: number,
  ): boolean {
    try {
      return this.#sendOne(channel, message, sequence, generation);
    } catch (error) {
      const session = this.#session;
      if (session !== undefined) {
        session.closed = true;
        session.closeReason ??= describe(error);
      }
      return false;
    }
  }

  #sendOne(
    channel: Session['sender'],
    message: OutboundMessage,
    sequence: number,
    generation: number,
  ): boolean {
    return sendConfirmed(channel, message, (error) => {
      if (generation !== this.#generation) return;
      if (error !== null && error !== undefined) {
        this.counters.nacked++;
        this.#throttledLog(
          'nack',
          'warn',
          { eventId: message.fields.messageId },
          'RabbitMQ refused an event; resending',
        );
        // Resending one message out of turn could reorder a model's events: resend all, in order.
        if (this.#session !== undefined) void this.#closeSession(this.#session, 'nack');
        return;
      }
      this.counters.confirmed++;
      // The record's emit time rides on the message: no lookup, no allocation per confirm.
      this.latency.observe(message.timestampMs, Date.now());
      this.#settle(sequence);
    });
  }

  #settle(sequence: number): void {
    const confirmedUpTo = this.#inflight.settle(sequence, this.#countConfirmed);
    if (confirmedUpTo < 0) return;
    this.#spool.confirm(confirmedUpTo);
    for (const listener of this.#confirmListeners) listener();
    this.#wake();
  }

  /** Forgets what was in flight: the next session resends it from the spool. */
  #dropInflight(): void {
    const unconfirmed = this.#inflight.clear();
    // At a stop they are not resent by this process; the next start sends them.
    if (!this.#stopping) this.counters.resent += unconfirmed;
    this.#generation++;
  }

  #checkConfirmTimeout(): void {
    const session = this.#session;
    if (session === undefined || session.closed || this.#state !== 'connected') return;
    const sentAt = this.#inflight.oldestSentAt();
    if (sentAt === undefined || Date.now() - sentAt < this.#options.confirmTimeoutMs) return;
    this.counters.confirmTimeouts++;
    this.#lastError = `no confirm within ${this.#options.confirmTimeoutMs} ms`;
    this.#logger.warn(
      { unconfirmed: this.#inflight.size },
      'RabbitMQ confirm timed out; reconnecting to resend',
    );
    // A broker that does not confirm may not answer a graceful close either.
    destroyConnection(session.connection);
    session.closed = true;
    session.closeReason = this.#lastError;
    this.#wake();
  }

  async #closeSession(session: Session, reason: string): Promise<void> {
    if (this.#session === session) this.#session = undefined;
    if (!session.closed) {
      session.closed = true;
      session.closeReason ??= reason;
      await closeConnection(session.connection);
    } else {
      destroyConnection(session.connection);
    }
    this.#wake();
  }

  async #waitForDrain(session: Session): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = () => {
        session.channel.off('drain', done);
        resolve();
      };
      session.channel.once('drain', done);
      // A close also ends the wait: the wake below covers it.
      void this.#waitForWake().then(done);
    });
  }

  #nextConfirm(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#confirmListeners.delete(finish);
        resolve();
      };
      const timer = setTimeout(finish, Math.max(1, timeoutMs));
      this.#confirmListeners.add(finish);
    });
  }

  #wake(): void {
    this.#woken = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.();
  }

  #waitForWake(): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#waiter = () => {
        this.#woken = false;
        resolve();
      };
    });
  }

  /** Waits `ms`, or less if the publisher is stopped meanwhile. */
  async #sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, ms);
      }),
      this.#stopped,
    ]);
    clearTimeout(timer);
  }

  #setState(state: BrokerState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#since = Date.now();
  }

  /** One line per kind of trouble at most every 10 s: an outage must not flood the logs. */
  #throttledLog(key: string, level: 'warn' | 'error', object: object, message: string): void {
    const now = Date.now();
    if (now - (this.#lastLogAt.get(key) ?? 0) < 10_000) return;
    this.#lastLogAt.set(key, now);
    this.#logger[level](object, message);
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
