/**
 * A batch of events as the rollup rows it adds, as pure logic: the metrics consumer folds a whole batch in
 * memory first, so each table gets one set-based statement per batch whatever its size. Every event
 * counts once in its minute; an event for a minute already compacted (before the compaction watermark,
 * see migrations/1764460800000_metrics-compaction.sql) also counts once in its hour and its day, which
 * the compactor will not add again. Rows come out sorted by key, so two transactions upserting
 * overlapping keys lock them in the same order and cannot deadlock each other.
 */
import type { TelemetryEvent } from '../../bus/event-schemas.ts';
import { LogLinearHistogram } from '../../log-linear-histogram.ts';
import { routeDimension, tierDimension } from '../dimensions.ts';
import { GRANULARITIES, GRANULARITY_MS, type Granularity } from './metrics-granularity.ts';

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
  /** An hour row's requests per minute of the hour (60, minute 0 first); null in other rows. */
  minuteRequests: number[] | null;
}

/**
 * The dimensions of a rollup row, its key within a bucket, as the columns of `metrics_rollups` name them
 * ('' where a dimension does not apply).
 */
export interface RollupDimensions {
  event_type: string;
  method: string;
  route: string;
  vendor_id: string;
  capability_tier: string;
  status_class: number;
  error_type: string;
}

/**
 * A rollup row as PostgreSQL returns it from `metrics_rollups` or `metrics_rollup_deltas`: the key
 * columns, the counts (bigint, as text) and the two latency histograms as the query selects them
 * (`Latency`: the bucket array, or its text form).
 */
export interface StoredRollupRow<Latency = string[]> extends RollupDimensions {
  bucket_start: Date;
  requests: string;
  cache_hits: string;
  cache_misses: string;
  request_latency: Latency;
  processing_latency: Latency;
}

export interface TotalsRow {
  granularity: Granularity;
  bucketStart: string;
  requests: number;
  errors: number;
  requestLatency: LogLinearHistogram;
  processingLatency: LogLinearHistogram;
  /** As {@link RollupRow.minuteRequests}. */
  minuteRequests: number[] | null;
}

/** The minute of the hour (0–59) of a time in ms. */
export const minuteOfHour = (ms: number): number =>
  (bucketStartOf(ms, '1m') - bucketStartOf(ms, '1h')) / 60_000;

/** A new row's `minuteRequests`: 60 zeros for an hour row, null otherwise. */
export const newMinuteRequests = (granularity: Granularity): number[] | null =>
  granularity === '1h' ? new Array<number>(60).fill(0) : null;

/** An empty totals row of one bucket, to add events (the consumer) or minutes (the compactor) to. */
export const newTotalsRow = (granularity: Granularity, start: number): TotalsRow => ({
  granularity,
  bucketStart: new Date(start).toISOString(),
  requests: 0,
  errors: 0,
  requestLatency: new LogLinearHistogram(),
  processingLatency: new LogLinearHistogram(),
  minuteRequests: newMinuteRequests(granularity),
});

/** What a batch adds: raw facts in batch order, rollup and totals rows sorted by key. */
export interface MetricsAggregate {
  facts: MetricsFact[];
  rollups: RollupRow[];
  totals: TotalsRow[];
  /** The UTC days (ISO-8601, sorted) whose hour or day rows the batch changes behind the watermark. */
  lateDays: string[];
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

/** The vendor and tier as recorded: a filter's vendor only if known, a tier only if it exists. */
function dimensionsOf(
  event: TelemetryEvent,
  filterVendor: (vendor: string) => string,
): { vendorId: string; capabilityTier: string } {
  const { vendorId, capabilityTier } = vendorAndTier(event);
  return {
    vendorId: event.event_type === 'filter.executed' ? filterVendor(vendorId) : vendorId,
    capabilityTier: tierDimension(capabilityTier),
  };
}

/** An event of an HTTP request: every type but an operator's action (`dlq.replayed`), which has no metadata. */
export type RequestEvent = Exclude<TelemetryEvent, { metadata: null }>;

export function isRequestEvent(event: TelemetryEvent | undefined): event is RequestEvent {
  return event !== undefined && event.metadata !== null;
}

/**
 * One event as a fact; `appliedAt` (ms) is when the consumer applies it, for the processing latency.
 * Dimensions are recorded as src/consumers/dimensions.ts says: a route or tier that does not exist,
 * and a filter's vendor that `filterVendor` does not know, become OTHER.
 */
export function toFact(
  event: RequestEvent,
  appliedAt: number,
  filterVendor: (vendor: string) => string = (vendor) => vendor,
): MetricsFact {
  const occurredAt = Date.parse(event.timestamp);
  const { metadata } = event;
  const modelId =
    'model_id' in event.data && typeof event.data.model_id === 'string' ? event.data.model_id : null;
  return {
    eventId: event.event_id,
    eventType: event.event_type,
    occurredAt,
    method: metadata.method,
    route: routeDimension(metadata.route ?? ''),
    modelId,
    ...dimensionsOf(event, filterVendor),
    responseCode: metadata.response_code,
    errorType: event.error.type ?? '',
    cacheHit: metadata.cache_hit,
    requestDurationMs: metadata.request_duration_ms,
    processingMs: Math.max(0, appliedAt - occurredAt),
  };
}

/** Rows keyed by their natural key; NUL cannot occur in any key part, so it separates them. */
export class Rows<T> {
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

/**
 * Folds facts into rollup and totals rows: each in its minute, and also in its hour and day when its
 * minute starts before `compactedBefore` (ms; the compaction watermark). The default, +∞, counts every
 * fact at every granularity.
 */
export function aggregateFacts(
  facts: MetricsFact[],
  compactedBefore: number = Number.POSITIVE_INFINITY,
): MetricsAggregate {
  const rollups = new Rows<RollupRow>();
  const totals = new Rows<TotalsRow>();
  const lateDays = new Set<number>();
  for (const fact of facts) {
    const statusClass = Math.floor(fact.responseCode / 100);
    const minute = bucketStartOf(fact.occurredAt, '1m');
    const late = minute < compactedBefore;
    if (late) lateDays.add(bucketStartOf(fact.occurredAt, '1d'));
    for (const granularity of late ? GRANULARITIES : MINUTE_ONLY) {
      const start = granularity === '1m' ? minute : bucketStartOf(fact.occurredAt, granularity);
      addFact(rollups, totals, fact, granularity, start, statusClass);
    }
  }
  return {
    facts,
    rollups: rollups.sorted(),
    totals: totals.sorted(),
    lateDays: [...lateDays].sort((a, b) => a - b).map((day) => new Date(day).toISOString()),
  };
}

const MINUTE_ONLY = ['1m'] as const;

function addFact(
  rollups: Rows<RollupRow>,
  totals: Rows<TotalsRow>,
  fact: MetricsFact,
  granularity: Granularity,
  start: number,
  statusClass: number,
): void {
  const key = [
    granularity,
    start,
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
    bucketStart: new Date(start).toISOString(),
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
    minuteRequests: newMinuteRequests(granularity),
  }));
  row.requests++;
  if (fact.cacheHit === true) row.cacheHits++;
  else if (fact.cacheHit === false) row.cacheMisses++;
  row.requestLatency.record(fact.requestDurationMs);
  row.processingLatency.record(fact.processingMs);
  const minute = granularity === '1h' ? minuteOfHour(fact.occurredAt) : -1;
  if (row.minuteRequests !== null) row.minuteRequests[minute] = (row.minuteRequests[minute] as number) + 1;

  const total = totals.get([granularity, start], () => newTotalsRow(granularity, start));
  total.requests++;
  if (statusClass >= 4) total.errors++;
  total.requestLatency.record(fact.requestDurationMs);
  total.processingLatency.record(fact.processingMs);
  if (total.minuteRequests !== null)
    total.minuteRequests[minute] = (total.minuteRequests[minute] as number) + 1;
}
