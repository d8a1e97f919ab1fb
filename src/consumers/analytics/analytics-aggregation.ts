/**
 * A batch of events as the hourly counts they add, and each model's newest state, as pure logic: the
 * analytics consumer folds a whole batch in memory first so that each table gets one set-based upsert per
 * batch, whatever its size. Rows come out sorted by key, so two transactions upserting overlapping keys
 * lock them in the same order and cannot deadlock each other.
 */
import type { EventOf, TelemetryEvent } from '../../bus/event-schemas.ts';
import { tierDimension } from '../dimensions.ts';

/** Filter parameters whose values are few enough to count one by one. */
export const COUNTED_FILTER_VALUES = [
  'vendor_id',
  'capability_tier',
  'is_active',
  'function_call_support',
  'sort',
] as const;

export type LifecycleEventType = 'model.registered' | 'model.updated' | 'model.deactivated';

export interface ModelQueryRow {
  /** Start of the hour, ISO-8601 UTC. */
  hour: string;
  modelId: string;
  vendorId: string;
  capabilityTier: string;
  queries: number;
  cacheHits: number;
}

export interface FilterExecutionRow {
  hour: string;
  executions: number;
  resultCountSum: number;
  zeroResults: number;
  hasMore: number;
  cacheHits: number;
}

export interface FilterParameterRow {
  hour: string;
  parameter: string;
  executions: number;
}

export interface FilterValueRow {
  hour: string;
  parameter: string;
  value: string;
  executions: number;
}

export interface LifecycleRow {
  hour: string;
  eventType: LifecycleEventType;
  vendorId: string;
  capabilityTier: string;
  events: number;
  changes: number;
}

export type ModelEventType = LifecycleEventType | 'model.queried';

/**
 * A model's newest state in a batch, for `analytics_model_activity`: the state fields come from the
 * batch's newest model event by {@link isNewer}; `lastQueriedAt` is the newest read.
 */
export interface ModelActivityRow {
  modelId: string;
  /** `sequence` of the event the state comes from: the model's version. */
  sequence: number;
  /** That event's timestamp, ISO-8601. */
  eventAt: string;
  eventType: ModelEventType;
  eventId: string;
  /** `data.updated_at` of that event: when the registry committed that version, ISO-8601. */
  changedAt: string;
  vendorId: string;
  capabilityTier: string;
  isActive: boolean;
  /** The newest `model.queried` timestamp of the batch, ISO-8601; null without reads. */
  lastQueriedAt: string | null;
}

/** What a batch adds to each table, one row per key, sorted by key. */
export interface AnalyticsAggregate {
  modelQueries: ModelQueryRow[];
  filterExecutions: FilterExecutionRow[];
  filterParameters: FilterParameterRow[];
  filterValues: FilterValueRow[];
  lifecycle: LifecycleRow[];
  /** One row per model with a model event in the batch, sorted by model_id. */
  modelActivity: ModelActivityRow[];
}

/** Where a model event stands in its model's history, for {@link isNewer}. */
export interface EventPosition {
  sequence: number;
  /** ISO-8601. */
  eventAt: string;
  /** A UUID, lower case. */
  eventId: string;
}

/**
 * The one total order a model's "last seen" state moves forward in: by `sequence` (the model's version:
 * a retried or replayed older change, or a stale cached read, never wins over a newer version), then by
 * timestamp (at one version — reads, no-op updates — the newest event), then by event_id (only so that
 * the order is total). The state is the greatest event applied so far, so it never goes backwards, and
 * it is the same whatever order, batches and duplicates the events arrive in; the upsert's guard compares
 * the same three columns (`(last_sequence, last_event_at, last_event_id) <` …).
 */
export function isNewer(a: EventPosition, b: EventPosition): boolean {
  if (a.sequence !== b.sequence) return a.sequence > b.sequence;
  const at = Date.parse(a.eventAt) - Date.parse(b.eventAt);
  if (at !== 0) return at > 0;
  return a.eventId > b.eventId;
}

/** A UTC timestamp as the API writes it, whose first 13 characters name its hour (no leap second). */
const PLAIN_UTC = /^\d{4}-\d\d-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{3})?Z$/;
/** The last plain timestamp's first 13 characters (`2025-01-15T10`) and its hour. */
let lastHour = { prefix: '', hour: '' };

/**
 * The start of the UTC hour of an ISO-8601 timestamp, as ISO-8601 (`2025-01-15T10:00:00.000Z`). The
 * events of a batch mostly share their hour: a plain UTC timestamp in the same hour as the last one takes
 * its answer, without the parse, Date and string a timestamp costs otherwise.
 */
export function hourOf(timestamp: string): string {
  const plain = PLAIN_UTC.test(timestamp);
  if (plain && lastHour.prefix !== '' && timestamp.startsWith(lastHour.prefix)) return lastHour.hour;
  const ms = Date.parse(timestamp);
  if (Number.isNaN(ms)) throw new RangeError(`not a timestamp: ${timestamp}`);
  const hour = new Date(ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000)).toISOString();
  if (plain) lastHour = { prefix: timestamp.slice(0, 13), hour };
  return hour;
}

/** Rows keyed by their natural key; NUL cannot occur in any key part, so it separates them. */
class Rows<T> {
  readonly #rows = new Map<string, T>();

  add(key: readonly string[], create: () => T, update: (row: T) => void): void {
    const id = key.join('\u0000');
    let row = this.#rows.get(id);
    if (row === undefined) {
      row = create();
      this.#rows.set(id, row);
    }
    update(row);
  }

  /** Sorted by key in code-unit order: the same order in every process. */
  sorted(): T[] {
    return [...this.#rows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, row]) => row);
  }
}

/**
 * Folds events into hourly counts. Event types analytics does not count are skipped. A filter's counted
 * values are recorded as src/consumers/dimensions.ts says: a vendor `filterVendor` does not know, or
 * a tier that does not exist, becomes OTHER.
 */
export function aggregateEvents(
  events: Iterable<TelemetryEvent>,
  filterVendor: (vendor: string) => string = (vendor) => vendor,
): AnalyticsAggregate {
  const modelQueries = new Rows<ModelQueryRow>();
  const filterExecutions = new Rows<FilterExecutionRow>();
  const filterParameters = new Rows<FilterParameterRow>();
  const filterValues = new Rows<FilterValueRow>();
  const lifecycle = new Rows<LifecycleRow>();
  const activity = new Map<string, ModelActivityRow>();

  for (const event of events) {
    const hour = hourOf(event.timestamp);
    switch (event.event_type) {
      case 'model.queried':
      case 'model.registered':
      case 'model.updated':
      case 'model.deactivated':
        addActivity(event, activity);
        break;
      default:
        break;
    }
    switch (event.event_type) {
      case 'model.queried': {
        const { model_id: modelId, vendor_id: vendorId, capability_tier: capabilityTier } = event.data;
        modelQueries.add(
          [hour, modelId, vendorId, capabilityTier],
          () => ({ hour, modelId, vendorId, capabilityTier, queries: 0, cacheHits: 0 }),
          (row) => {
            row.queries++;
            if (event.metadata.cache_hit === true) row.cacheHits++;
          },
        );
        break;
      }
      case 'filter.executed':
        addFilter(event, hour, filterExecutions, filterParameters, filterValues, filterVendor);
        break;
      case 'model.registered':
      case 'model.updated':
      case 'model.deactivated': {
        const eventType = event.event_type;
        const { vendor_id: vendorId, capability_tier: capabilityTier } = event.data;
        const changed = 'changed' in event.data ? event.data.changed : true;
        lifecycle.add(
          [hour, eventType, vendorId, capabilityTier],
          () => ({ hour, eventType, vendorId, capabilityTier, events: 0, changes: 0 }),
          (row) => {
            row.events++;
            if (changed) row.changes++;
          },
        );
        break;
      }
      default:
        break;
    }
  }

  return {
    modelQueries: modelQueries.sorted(),
    filterExecutions: filterExecutions.sorted(),
    filterParameters: filterParameters.sorted(),
    filterValues: filterValues.sorted(),
    lifecycle: lifecycle.sorted(),
    modelActivity: [...activity.values()].sort((a, b) =>
      a.modelId < b.modelId ? -1 : a.modelId > b.modelId ? 1 : 0,
    ),
  };
}

function addFilter(
  event: EventOf<'filter.executed'>,
  hour: string,
  executions: Rows<FilterExecutionRow>,
  parameters: Rows<FilterParameterRow>,
  values: Rows<FilterValueRow>,
  filterVendor: (vendor: string) => string,
): void {
  const { filters, result_count: resultCount, has_more: hasMore } = event.data;
  executions.add(
    [hour],
    () => ({ hour, executions: 0, resultCountSum: 0, zeroResults: 0, hasMore: 0, cacheHits: 0 }),
    (row) => {
      row.executions++;
      row.resultCountSum += resultCount;
      if (resultCount === 0) row.zeroResults++;
      if (hasMore) row.hasMore++;
      if (event.metadata.cache_hit === true) row.cacheHits++;
    },
  );
  for (const [parameter, value] of Object.entries(filters)) {
    // `cursor` is a flag (was one given?), not a value; false means the parameter was not used.
    if (value === undefined || (parameter === 'cursor' && value !== true)) continue;
    parameters.add(
      [hour, parameter],
      () => ({ hour, parameter, executions: 0 }),
      (row) => {
        row.executions++;
      },
    );
    if ((COUNTED_FILTER_VALUES as readonly string[]).includes(parameter)) {
      const text =
        parameter === 'vendor_id'
          ? filterVendor(String(value))
          : parameter === 'capability_tier'
            ? tierDimension(String(value))
            : String(value);
      values.add(
        [hour, parameter, text],
        () => ({ hour, parameter, value: text, executions: 0 }),
        (row) => {
          row.executions++;
        },
      );
    }
  }
}

/** Folds one model event into its model's row: the state if the event is newer, the newest read. */
function addActivity(event: EventOf<ModelEventType>, activity: Map<string, ModelActivityRow>): void {
  const { data } = event;
  const position: EventPosition = {
    sequence: event.sequence,
    eventAt: event.timestamp,
    eventId: event.event_id.toLowerCase(),
  };
  const queriedAt = event.event_type === 'model.queried' ? event.timestamp : null;
  let row = activity.get(data.model_id);
  if (row === undefined) {
    row = {
      modelId: data.model_id,
      ...position,
      eventType: event.event_type,
      changedAt: data.updated_at,
      vendorId: data.vendor_id,
      capabilityTier: data.capability_tier,
      isActive: data.is_active,
      lastQueriedAt: queriedAt,
    };
    activity.set(data.model_id, row);
    return;
  }
  if (isNewer(position, row)) {
    Object.assign(row, position);
    row.eventType = event.event_type;
    row.changedAt = data.updated_at;
    row.vendorId = data.vendor_id;
    row.capabilityTier = data.capability_tier;
    row.isActive = data.is_active;
  }
  if (
    queriedAt !== null &&
    (row.lastQueriedAt === null || Date.parse(queriedAt) > Date.parse(row.lastQueriedAt))
  ) {
    row.lastQueriedAt = queriedAt;
  }
}
