/**
 * A batch of events as the rollup rows it adds, as pure logic: the metrics consumer folds a whole batch in
 * memory first, so each table gets one set-based statement per batch whatever its size. Every event
 * counts once at each granularity (minute, hour, day). Rows come out sorted by key, so two transactions
 * upserting overlapping keys lock them in the same order and cannot deadlock each other.
 */
import type { TelemetryEvent } from '../../bus/event-schemas.ts';
import { LogLinearHistogram } from '../../metrics/log-linear-histogram.ts';
import { GRANULARITIES, GRANULARITY_MS, type Granularity } from '../../metrics/metrics-granularity.ts';

/** What one event contributes, flattened: the fields of a raw `metrics_events` row. */
export interface MetricsFact {
  eventId: string;
  eventType: string;
  /** The event's timestamp, in ms since the epoch. */
  occurredAt: number;
  method: string;
  /** '' when no route matched. */
  route: string;
  modelId: string | null;
  /** '' when the event concerns no vendor / tier. */
  vendorId: string;
  capabilityTier: string;
  responseCode: number;
  /** '' unless an api.error. */
  errorType: string;
  cacheHit: boolean | null;
  requestDurationMs: number;
  /** Event timestamp → applied, in ms (0 if the clocks disagree the other way). */
  processingMs: number;
}

export interface RollupRow {
  granularity: Granularity;
  /** Start of the bucket, ISO-8601 UTC. */
  bucketStart: string;
  eventType: string;
  method: string;
  route: string;
  vendorId: string;
  capabilityTier: string;
  statusClass: number;
  errorType: string;
  requests: number;
  cacheHits: number;
  cacheMisses: number;
  requestLatency: LogLinearHistogram;
  processingLatency: LogLinearHistogram;
}

export interface TotalsRow {
  granularity: Granularity;
  bucketStart: string;
  requests: number;
  errors: number;
  requestLatency: LogLinearHistogram;
  processingLatency: LogLinearHistogram;
}

/** What a batch adds: raw facts in batch order, rollup and totals rows sorted by key. */
export interface MetricsAggregate {
  facts: MetricsFact[];
  rollups: RollupRow[];
  totals: TotalsRow[];
}

/** The start of the bucket of `ms` at a granularity (UTC, aligned on the epoch). */
export function bucketStartOf(ms: number, granularity: Granularity): number {
  const size = GRANULARITY_MS[granularity];
  return ms - (((ms % size) + size) % size);
}

/** The vendor and tier an event is about: its model's, or those a filter was restricted to. */
function vendorAndTier(event: TelemetryEvent): { vendorId: string; capabilityTier: string } {
  switch (event.event_type) {
    case 'model.registered':
    case 'model.updated':
    case 'model.deactivated':
    case 'model.queried':
      return { vendorId: event.data.vendor_id, capabilityTier: event.data.capability_tier };
    case 'filter.executed':
      return {
        vendorId: event.data.filters.vendor_id ?? '',
        capabilityTier: event.data.filters.capability_tier ?? '',
      };
    default:
      return { vendorId: '', capabilityTier: '' };
  }
}

/** An event of an HTTP request: every type but an operator's action (`dlq.replayed`), which has no metadata. */
export type RequestEvent = Exclude<TelemetryEvent, { metadata: null }>;

export function isRequestEvent(event: TelemetryEvent | undefined): event is RequestEvent {
  return event !== undefined && event.metadata !== null;
}

/** One event as a fact; `appliedAt` (ms) is when the consumer applies it, for the processing latency. */
export function toFact(event: RequestEvent, appliedAt: number): MetricsFact {
  const occurredAt = Date.parse(event.timestamp);
  const { metadata } = event;
  const modelId =
    'model_id' in event.data && typeof event.data.model_id === 'string' ? event.data.model_id : null;
  return {
    eventId: event.event_id,
    eventType: event.event_type,
    occurredAt,
    method: metadata.method,
    route: metadata.route ?? '',
    modelId,
    ...vendorAndTier(event),
    responseCode: metadata.response_code,
    errorType: event.error.type ?? '',
    cacheHit: metadata.cache_hit,
    requestDurationMs: metadata.request_duration_ms,
    processingMs: Math.max(0, appliedAt - occurredAt),
  };
}

/** Rows keyed by their natural key; NUL cannot occur in any key part, so it separates them. */
class Rows<T> {
  readonly #rows = new Map<string, T>();

  get(key: readonly (string | number)[], create: () => T): T {
    const id = key.join('\u0000');
    let row = this.#rows.get(id);
    if (row === undefined) {
      row = create();
      this.#rows.set(id, row);
    }
    return row;
  }

  /** Sorted by key in code-unit order: the same order in every process. */
  sorted(): T[] {
    return [...this.#rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
  }
}

/** Folds facts into rollup and totals rows at every granularity. */
export function aggregateFacts(facts: MetricsFact[]): MetricsAggregate {
  const rollups = new Rows<RollupRow>();
  const totals = new Rows<TotalsRow>();
  for (const fact of facts) {
    const statusClass = Math.floor(fact.responseCode / 100);
    for (const granularity of GRANULARITIES) {
      const bucketStart = new Date(bucketStartOf(fact.occurredAt, granularity)).toISOString();
      const key = [
        granularity,
        bucketStart,
        fact.eventType,
        fact.method,
        fact.route,
        fact.vendorId,
        fact.capabilityTier,
        statusClass,
        fact.errorType,
      ];
      const row = rollups.get(key, () => ({
        granularity,
        bucketStart,
        eventType: fact.eventType,
        method: fact.method,
        route: fact.route,
        vendorId: fact.vendorId,
        capabilityTier: fact.capabilityTier,
        statusClass,
        errorType: fact.errorType,
        requests: 0,
        cacheHits: 0,
        cacheMisses: 0,
        requestLatency: new LogLinearHistogram(),
        processingLatency: new LogLinearHistogram(),
      }));
      row.requests++;
      if (fact.cacheHit === true) row.cacheHits++;
      else if (fact.cacheHit === false) row.cacheMisses++;
      row.requestLatency.record(fact.requestDurationMs);
      row.processingLatency.record(fact.processingMs);

      const total = totals.get([granularity, bucketStart], () => ({
        granularity,
        bucketStart,
        requests: 0,
        errors: 0,
        requestLatency: new LogLinearHistogram(),
        processingLatency: new LogLinearHistogram(),
      }));
      total.requests++;
      if (statusClass >= 4) total.errors++;
      total.requestLatency.record(fact.requestDurationMs);
      total.processingLatency.record(fact.processingMs);
    }
  }
  return { facts, rollups: rollups.sorted(), totals: totals.sorted() };
}
