/**
 * The consumer runtime's telemetry in a prom-client registry, labelled by consumer name. Counters the
 * runtime already keeps (applied, duplicates, …) are read from its status when scraped; what only exists
 * at the moment it happens (a batch's duration and size, a retry's delay) is observed directly; an
 * applied event's age, observed per event, in plain numbers (../bucket-histogram.ts).
 *
 * One runtime per registry: a second would register the same names and prom-client refuses that.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { BucketHistogram, registerHistogramFamily } from '../bucket-histogram.ts';

/** Batch durations, in seconds: a batch is one PostgreSQL transaction, from a few ms to a slow second. */
export const BATCH_DURATION_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Messages per batch, up to the largest CONSUMER_BATCH_SIZE allowed. */
export const BATCH_SIZE_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/**
 * Event ages at commit, in seconds: publish latency plus queueing plus the batch, a few ms when the
 * pipeline keeps up; seconds to minutes for a backlog, a retry (1 s, 5 s, 30 s) or an outage.
 */
export const EVENT_AGE_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
];

/** The CloudEvents time header of a raw message (a consumer with `validate: false` has no parsed event). */
const TIME_HEADER = 'cloudEvents:time';

/**
 * What these metrics read of a consumer's status: the runtime's ConsumerStatus
 * (src/consumers/consumer-runtime.ts) has this shape and more. Written here, not imported, so that the
 * consumers import their instrumentation and not the other way round.
 */
interface ConsumerReading {
  name: string;
  state: string;
  counters: Readonly<Record<'applied' | 'duplicates' | 'poison' | 'deadLettered' | 'databasePauses', number>>;
}

/** What the event-age histogram reads of an applied delivery (src/consumers/consumer.ts's Delivery). */
interface AppliedDelivery {
  event: { timestamp: string } | undefined;
  properties: { headers: Readonly<Record<string, unknown>> };
}

export interface ConsumerMetricsSource {
  status(): readonly ConsumerReading[];
  /** Deliveries each consumer holds and has not acknowledged, by consumer name. */
  inFlight(): Map<string, number>;
}

export class ConsumerMetrics {
  readonly #batchDuration: Histogram<'consumer'>;
  readonly #batchSize: Histogram<'consumer'>;
  readonly #retries: Counter<'consumer' | 'delay_seconds'>;
  readonly #eventAge = new Map<string, BucketHistogram>();

  /**
   * `prefetch` is the configured prefetch; `retryDelaysMs` the ladder, whose steps get a series at 0 from
   * the start (as do the batch histograms), so a rate over them is 0, not "no data", until one happens.
   */
  constructor(
    registry: Registry,
    source: ConsumerMetricsSource,
    options: { prefetch: number; retryDelaysMs: readonly number[] },
  ) {
    const { prefetch } = options;
    const fromStatus = (name: string, help: string, key: keyof ConsumerReading['counters']) =>
      new Counter({
        name,
        help,
        labelNames: ['consumer'],
        registers: [registry],
        collect() {
          this.reset();
          for (const consumer of source.status())
            this.inc({ consumer: consumer.name }, consumer.counters[key]);
        },
      });
    fromStatus(
      'telemetry_consumer_messages_applied_total',
      'Events applied to PostgreSQL for the first time',
      'applied',
    );
    fromStatus(
      'telemetry_consumer_duplicates_skipped_total',
      'Deliveries skipped because their event had been applied before (redeliveries, replays)',
      'duplicates',
    );
    fromStatus(
      'telemetry_consumer_poison_messages_total',
      'Invalid messages sent to the dead-letter queue at once, without retries',
      'poison',
    );
    fromStatus(
      'telemetry_consumer_dead_lettered_total',
      'Messages sent to the dead-letter queue after the last retry failed',
      'deadLettered',
    );
    fromStatus(
      'telemetry_consumer_database_pauses_total',
      'Times consumption paused because PostgreSQL was unreachable',
      'databasePauses',
    );
    this.#retries = new Counter({
      name: 'telemetry_consumer_retries_total',
      help: 'Failed messages sent up the retry ladder, by the delay of the step, in seconds',
      labelNames: ['consumer', 'delay_seconds'],
      registers: [registry],
    });
    this.#batchDuration = new Histogram({
      name: 'telemetry_consumer_batch_duration_seconds',
      help: 'Time to apply one batch (its transaction, retries and dead letters included); _count is the batches',
      labelNames: ['consumer'],
      buckets: BATCH_DURATION_BUCKETS_SECONDS,
      registers: [registry],
    });
    this.#batchSize = new Histogram({
      name: 'telemetry_consumer_batch_messages',
      help: 'Messages in one batch',
      labelNames: ['consumer'],
      buckets: BATCH_SIZE_BUCKETS,
      registers: [registry],
    });
    const eventAge = this.#eventAge;
    registerHistogramFamily(registry, {
      name: 'telemetry_consumer_event_age_seconds',
      help: "Time from an event's own timestamp to the commit that applied it, per applied event",
      labelNames: ['consumer'],
      *series() {
        for (const [consumer, histogram] of eventAge) yield { labels: { consumer }, histogram };
      },
    });
    for (const { name: consumer } of source.status()) {
      eventAge.set(consumer, new BucketHistogram(EVENT_AGE_BUCKETS_SECONDS));
      for (const delayMs of options.retryDelaysMs) this.#retries.inc(this.#retryLabels(consumer, delayMs), 0);
      this.#batchDuration.zero({ consumer });
      this.#batchSize.zero({ consumer });
    }
    new Gauge({
      name: 'telemetry_consumer_paused',
      help: 'Whether the consumer is paused because PostgreSQL is unreachable (1) or not (0)',
      labelNames: ['consumer'],
      registers: [registry],
      collect() {
        for (const consumer of source.status())
          this.set({ consumer: consumer.name }, consumer.state === 'paused' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'telemetry_consumer_prefetch_messages',
      help: 'Unacknowledged deliveries the consumer may hold (its AMQP prefetch)',
      labelNames: ['consumer'],
      registers: [registry],
      collect() {
        for (const consumer of source.status()) this.set({ consumer: consumer.name }, prefetch);
      },
    });
    new Gauge({
      name: 'telemetry_consumer_inflight_messages',
      help: 'Deliveries the consumer holds and has not acknowledged yet (waiting, being applied, or committed with the acknowledgement waiting)',
      labelNames: ['consumer'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [consumer, count] of source.inFlight()) this.set({ consumer }, count);
      },
    });
  }

  /** One batch applied (or its faulty messages sorted out), with its size. */
  observeBatch(consumer: string, seconds: number, messages: number): void {
    this.#batchDuration.observe({ consumer }, seconds);
    this.#batchSize.observe({ consumer }, messages);
  }

  /**
   * Events just committed at `nowMs` (Unix ms): each one's age, from its envelope `timestamp` (a raw
   * message: its `cloudEvents:time` header; without either it is not observed).
   */
  observeEventAges(consumer: string, applied: readonly AppliedDelivery[], nowMs: number): void {
    const histogram = this.#eventAge.get(consumer);
    if (histogram === undefined) return;
    for (const delivery of applied) {
      const time = delivery.event?.timestamp ?? delivery.properties.headers[TIME_HEADER];
      if (typeof time !== 'string') continue;
      const emittedAtMs = Date.parse(time);
      if (!Number.isNaN(emittedAtMs)) histogram.observe(Math.max(0, nowMs - emittedAtMs) / 1000);
    }
  }

  /** One message sent up the ladder, to a step of `delayMs`. */
  retried(consumer: string, delayMs: number): void {
    this.#retries.inc(this.#retryLabels(consumer, delayMs));
  }

  #retryLabels(consumer: string, delayMs: number) {
    return { consumer, delay_seconds: String(delayMs / 1000) };
  }
}
