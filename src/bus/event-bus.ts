/**
 * The telemetry bus of one process: `emit()` writes an event to the spool and returns (no broker, no
 * promise), and a publisher sends the spool to RabbitMQ in the background: by default in a thread of
 * its own (./publisher-thread/), so that AMQP encoding, confirms and spool reads never take turns with
 * requests; with `publisherThread: false`, a {@link SpoolPublisher} on this thread's event loop.
 *
 * `emit()` is on every request's path, so it does exactly one JSON serialisation and one write syscall,
 * and wakes the publisher thread at most once per event-loop turn (through shared memory, no message).
 * It never throws and never blocks: an event it cannot keep is dropped and counted by reason.
 */
import { join } from 'node:path';
import type { TelemetryEvent } from './event-schemas.ts';
import { EVENT_TYPES, type EventType } from './event-types.ts';
import type { LedgerCounts } from './ledger-counts.ts';
import { eventRecord } from './outbound-message.ts';
import { ProducerSequences } from './producer-sequence.ts';
import { PublishLatency } from './publish-latency.ts';
import {
  PublisherThread,
  type PublisherThreadOptions,
  type PublisherThreadStatus,
} from './publisher-thread/publisher-thread-host.ts';
import { Spool, type SpoolStats } from './spool/spool.ts';
import { SpoolTail } from './spool/spool-tail.ts';
import { type PublisherLogger, type PublisherStatus, SpoolPublisher } from './spool-publisher.ts';
import type { Topology } from './topology.ts';

export interface EventBusOptions {
  /** This process's data directory; the spool lives in `<dataDir>/spool`. */
  dataDir: string;
  /** AMQP URLs of the broker's nodes, tried in order. */
  rabbitmqUrls: readonly string[];
  topology: Topology;
  /** Spool size above which events are dropped, in bytes. @default {@link SPOOL_DEFAULTS}'s maxBytes */
  spoolMaxBytes?: number;
  /** Spool segment size, in bytes. @default {@link SPOOL_DEFAULTS}'s segmentBytes */
  spoolSegmentBytes?: number;
  /** Interval between spool fsyncs, in ms. @default {@link SPOOL_DEFAULTS}'s fsyncIntervalMs */
  spoolFsyncIntervalMs?: number;
  /** Unconfirmed messages in flight, at most. @default {@link SPOOL_PUBLISHER_DEFAULTS}'s window */
  publishWindow?: number;
  /** Confirm time-out before a reconnect and resend, in ms. @default {@link SPOOL_PUBLISHER_DEFAULTS}'s confirmTimeoutMs */
  publishConfirmTimeoutMs?: number;
  /** AMQP heartbeat, in seconds. @default {@link SPOOL_PUBLISHER_DEFAULTS}'s heartbeatSeconds */
  heartbeatSeconds?: number;
  logger?: PublisherLogger;
  /** Counts every event emitted, spooled and confirmed, for the loss ledger. */
  ledger?: LedgerCounts;
  /**
   * Time the publisher thread waits after appends wake it before it reads them, in ms, so that the
   * events of a burst share a socket write and a broker round. @default 0
   */
  publishLingerMs?: number;
  /** Publish from a thread of its own (false: on this thread's event loop). @default true */
  publisherThread?: boolean;
  /** Restart delays of a crashed publisher thread (see PublisherThreadOptions). */
  publisherThreadRestart?: Pick<PublisherThreadOptions, 'restartMinDelayMs' | 'restartMaxDelayMs'>;
}

/** Why an event was not kept: the spool was full, the disk refused the write, or it was not serialisable. */
export type EmitDropReason = 'spool_full' | 'write_error' | 'invalid_event';

export interface EventBusStatus {
  emitted: number;
  /** `emitted` by event type (their sum). */
  emittedByType: Record<EventType, number>;
  dropped: Record<EmitDropReason, number>;
  spool: SpoolStats;
  publisher: PublisherStatus;
  /** The publisher thread's state; null when publishing on this thread. */
  publisherThread: PublisherThreadStatus | null;
}

/** What sends the spool: a thread of its own, or a SpoolPublisher on this thread. */
type Sender = Pick<SpoolPublisher, 'status' | 'stop'> &
  Partial<Pick<PublisherThread, 'threadStatus' | 'eventLoopUtilization'>>;

export class EventBus {
  readonly #spool: Spool;
  readonly #publisher: Sender;
  readonly #ledger: LedgerCounts | undefined;
  readonly #latency: PublishLatency;
  #emitted = 0;
  // A plain object with every type present: one property increment per emit, no Map lookup.
  readonly #emittedByType = Object.fromEntries(EVENT_TYPES.map((type) => [type, 0])) as Record<
    EventType,
    number
  >;
  #invalid = 0;
  /** This process as a producer: each event kept gets the next number of its type's stream. */
  readonly #sequences = new ProducerSequences();

  private constructor(
    spool: Spool,
    publisher: Sender,
    ledger: LedgerCounts | undefined,
    latency: PublishLatency,
  ) {
    this.#latency = latency;
    this.#spool = spool;
    this.#publisher = publisher;
    this.#ledger = ledger;
  }

  /** Opens the spool (recovering what a previous run left) and starts sending it. */
  static open(options: EventBusOptions): EventBus {
    const threaded = options.publisherThread ?? true;
    const latency = new PublishLatency();
    const spool = Spool.open({
      directory: join(options.dataDir, 'spool'),
      maxBytes: options.spoolMaxBytes,
      segmentBytes: options.spoolSegmentBytes,
      fsyncIntervalMs: options.spoolFsyncIntervalMs,
      // The publisher thread reads the files (from the page cache): no copy of the tail kept here.
      ...(threaded ? { recentBytes: 0 } : {}),
    });
    if (threaded) {
      const tail = new SpoolTail();
      spool.shareTail(tail);
      spool.onAppend(() => tail.wake());
      const thread = new PublisherThread({
        spool,
        tail,
        urls: options.rabbitmqUrls,
        topology: options.topology,
        window: options.publishWindow,
        confirmTimeoutMs: options.publishConfirmTimeoutMs,
        heartbeatSeconds: options.heartbeatSeconds,
        lingerMs: options.publishLingerMs,
        logger: options.logger,
        ledger: options.ledger,
        latency,
        ...options.publisherThreadRestart,
      });
      thread.start();
      return new EventBus(spool, thread, options.ledger, latency);
    }
    const publisher = new SpoolPublisher(spool, {
      urls: options.rabbitmqUrls,
      topology: options.topology,
      window: options.publishWindow,
      confirmTimeoutMs: options.publishConfirmTimeoutMs,
      heartbeatSeconds: options.heartbeatSeconds,
      logger: options.logger,
      ledger: options.ledger,
      latency,
    });
    publisher.start();
    return new EventBus(spool, publisher, options.ledger, latency);
  }

  /**
   * Keeps the event: once this returns true the event is in the OS's hands and survives a crash of this
   * process. `traceparent` is the W3C trace context the message carries.
   */
  emit(event: TelemetryEvent, traceparent: string, timestampMs: number): boolean {
    this.#emitted++;
    this.#ledger?.add('emitted', event.event_type, timestampMs);
    this.#emittedByType[event.event_type]++;
    let record: string;
    const type = event.event_type;
    const stamp = { producer: this.#sequences.producer, sequence: this.#sequences.claim(type) };
    try {
      record = eventRecord(event, traceparent, timestampMs, stamp);
    } catch {
      this.#sequences.unclaim(type);
      this.#invalid++;
      return false;
    }
    // An event not kept gives its number back: a stream's numbers have no gap but what consumers must wait for.
    if (this.#spool.append(record) < 0) {
      this.#sequences.unclaim(type);
      return false;
    }
    this.#ledger?.add('spooled', event.event_type, timestampMs);
    return true;
  }

  status(): EventBusStatus {
    const spool = this.#spool.stats();
    return {
      emitted: this.#emitted,
      emittedByType: { ...this.#emittedByType },
      dropped: { ...spool.dropped, invalid_event: this.#invalid },
      spool,
      publisher: this.#publisher.status(),
      publisherThread: this.#publisher.threadStatus?.() ?? null,
    };
  }

  /** Emit-to-confirm latency of the publisher's messages. */
  get publishLatency(): PublishLatency {
    return this.#latency;
  }

  /** The publisher thread's event-loop utilisation (./publisher-thread/publisher-thread-host.ts). */
  publisherEventLoopUtilization(): ReturnType<PublisherThread['eventLoopUtilization']> {
    return this.#publisher.eventLoopUtilization?.();
  }

  /** Sends what it can within `timeoutMs`, then closes; the rest waits in the spool for the next start. */
  async close(timeoutMs: number): Promise<number> {
    const left = await this.#publisher.stop(timeoutMs);
    await this.#spool.close();
    return left;
  }
}
