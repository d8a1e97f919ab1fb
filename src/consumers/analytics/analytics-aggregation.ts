/**
 * A batch of events as the hourly counts they add, as pure logic: the analytics consumer folds a whole
 * batch in memory first so that each table gets one set-based upsert per batch, whatever its size. Rows
 * come out sorted by key, so two transactions upserting overlapping keys lock them in the same order and
 * cannot deadlock each other.
 */
import type { EventOf, TelemetryEvent } from '../../bus/event-schemas.ts';

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

/** What a batch adds to each table, one row per key, sorted by key. */
export interface AnalyticsAggregate {
  modelQueries: ModelQueryRow[];
  filterExecutions: FilterExecutionRow[];
  filterParameters: FilterParameterRow[];
  filterValues: FilterValueRow[];
  lifecycle: LifecycleRow[];
}

/** The start of the UTC hour of an ISO-8601 timestamp, as ISO-8601 (`2025-01-15T10:00:00.000Z`). */
export function hourOf(timestamp: string): string {
  const ms = Date.parse(timestamp);
  if (Number.isNaN(ms)) throw new RangeError(`not a timestamp: ${timestamp}`);
  return new Date(ms - (((ms % 3_600_000) + 3_600_000) % 3_600_000)).toISOString();
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

/** Folds events into hourly counts. Event types analytics does not count are skipped. */
export function aggregateEvents(events: Iterable<TelemetryEvent>): AnalyticsAggregate {
  const modelQueries = new Rows<ModelQueryRow>();
  const filterExecutions = new Rows<FilterExecutionRow>();
  const filterParameters = new Rows<FilterParameterRow>();
  const filterValues = new Rows<FilterValueRow>();
  const lifecycle = new Rows<LifecycleRow>();

  for (const event of events) {
    const hour = hourOf(event.timestamp);
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
        addFilter(event, hour, filterExecutions, filterParameters, filterValues);
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
  };
}

function addFilter(
  event: EventOf<'filter.executed'>,
  hour: string,
  executions: Rows<FilterExecutionRow>,
  parameters: Rows<FilterParameterRow>,
  values: Rows<FilterValueRow>,
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
      const text = String(value);
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
