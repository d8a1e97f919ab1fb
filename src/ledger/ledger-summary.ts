/**
 * The loss ledger of a time window: how many events reached each stage, and, per consumer, how many it
 * should have applied (the spooled events of the types its queue is bound to) against how many it did.
 *
 * Counts are per minute of the events' own timestamps, so every stage is compared over the same events,
 * however late they were published or applied. A gap in the last seconds is events still in transit;
 * a gap that stays is events missing.
 *
 * A consumer commits its count with its batch, while the API writes its counts every
 * `LEDGER_FLUSH_INTERVAL_MS`: a consumer can have applied events the API has not counted yet. `missing`
 * compares only what the API has counted — per minute and event type, applied events beyond the spooled
 * count are left out of it and shown apart as `applied_unflushed` — so it is never negative, and a
 * consumer ahead in one minute cannot hide a gap in another.
 */
import type { EventType } from '../bus/event-types.ts';
import { EVENT_TYPES } from '../bus/event-types.ts';
import type { LedgerStage } from '../bus/ledger-counts.ts';
import { buildTopology, exchangeFor, QUEUES, queuesFor } from '../bus/topology.ts';

/** The consumers the ledger follows, and the queue each applies. */
export const LEDGER_CONSUMERS = {
  audit: QUEUES.audit,
  analytics: QUEUES.analytics,
  logging: QUEUES.logging,
  metrics: QUEUES.metrics,
} as const;

export type LedgerConsumer = keyof typeof LEDGER_CONSUMERS;

export interface LedgerCountRow {
  stage: LedgerStage;
  consumer: string;
  event_type: string;
  events: number;
  /**
   * `applied` rows: the events applied beyond the spooled count of their minute and type, summed over
   * the minutes (the API has not flushed their count yet); 0 for the other stages.
   */
  ahead: number;
}

export interface ConsumerLedger {
  consumer: LedgerConsumer;
  queue: string;
  /** Spooled events of the types routed to the consumer's queue. */
  expected: number;
  applied: number;
  /**
   * Spooled events, counted by the API, that the consumer has not applied: in transit, waiting in a
   * queue or the dead-letter queue, or lost. Never negative.
   */
  missing: number;
  /** Events applied whose count the API has not written yet (left out of `missing`). */
  applied_unflushed: number;
}

export interface LedgerSummary {
  emitted: number;
  spooled: number;
  /** emitted − spooled: refused by the spool (full, write error, unserialisable), counted by reason in /health. */
  dropped: number;
  confirmed: number;
  /** spooled − confirmed: waiting in a spool for the broker. */
  unconfirmed: number;
  consumers: ConsumerLedger[];
}

/** Which event types reach each consumer's queue: the topology's bindings, evaluated once. */
const ROUTED: Record<LedgerConsumer, ReadonlySet<string>> = (() => {
  const topology = buildTopology({ retryDelaysMs: [1000] });
  const routed = {} as Record<LedgerConsumer, Set<string>>;
  for (const [consumer, queue] of Object.entries(LEDGER_CONSUMERS) as [LedgerConsumer, string][]) {
    routed[consumer] = new Set(
      EVENT_TYPES.filter((type: EventType) => queuesFor(topology, exchangeFor(type), type).includes(queue)),
    );
  }
  return routed;
})();

/** The event types the topology routes to `consumer`'s queue. */
export function routedTypes(consumer: LedgerConsumer): ReadonlySet<string> {
  return ROUTED[consumer];
}

export function summarizeLedger(rows: readonly LedgerCountRow[]): LedgerSummary {
  const stage = (name: LedgerStage) =>
    rows.filter((row) => row.stage === name).reduce((sum, row) => sum + row.events, 0);
  const emitted = stage('emitted');
  const spooled = stage('spooled');
  const confirmed = stage('confirmed');
  const consumers = (Object.keys(LEDGER_CONSUMERS) as LedgerConsumer[]).map((consumer): ConsumerLedger => {
    const routed = ROUTED[consumer];
    let expected = 0;
    let applied = 0;
    let appliedRouted = 0;
    let ahead = 0;
    for (const row of rows) {
      if (row.stage === 'spooled' && routed.has(row.event_type)) expected += row.events;
      if (row.stage === 'applied' && row.consumer === consumer) {
        applied += row.events;
        if (routed.has(row.event_type)) {
          appliedRouted += row.events;
          ahead += row.ahead;
        }
      }
    }
    // Σ over minutes of max(0, spooled − applied) = spooled − applied + Σ max(0, applied − spooled).
    return {
      consumer,
      queue: LEDGER_CONSUMERS[consumer],
      expected,
      applied,
      missing: expected - appliedRouted + ahead,
      applied_unflushed: ahead,
    };
  });
  return {
    emitted,
    spooled,
    dropped: emitted - spooled,
    confirmed,
    unconfirmed: spooled - confirmed,
    consumers,
  };
}
