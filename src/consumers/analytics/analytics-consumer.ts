/**
 * The analytics consumer: `analytics.events` (model and filter events) into hourly counts and each
 * model's "last seen" state. A batch is folded in memory ({@link aggregateEvents}) and written with one
 * set-based upsert per table, in the runtime's transaction — which also records the batch's event ids, so
 * a redelivered or replayed event is never counted twice. The "last seen" state is not a count: it only
 * moves forward, so an older event applied late (a retry, a replay) leaves it as it is.
 */
import type pg from 'pg';
import type { TelemetryEvent } from '../../bus/event-schemas.ts';
import { QUEUES } from '../../bus/topology.ts';
import { type BatchWrite, batchStatement } from '../../db/batch-statement.ts';
import { type SummingTable, summingUpsert } from '../../db/summing-upsert.ts';
import type { Consumer } from '../consumer.ts';
import { filterVendors, KnownVendors } from '../dimensions.ts';
import {
  type AnalyticsAggregate,
  aggregateEvents,
  type FilterExecutionRow,
  type FilterParameterRow,
  type FilterValueRow,
  type LifecycleRow,
  type ModelQueryRow,
} from './analytics-aggregation.ts';

/** The state columns of `analytics_model_activity`: they move together, from the newest event. */
const STATE_COLUMNS = [
  'last_sequence',
  'last_event_at',
  'last_event_type',
  'last_event_id',
  'last_changed_at',
  'vendor_id',
  'capability_tier',
  'is_active',
] as const;

/** The batch's event is newer than the stored one: isNewer()'s order, as a row comparison. */
const NEWER = `(EXCLUDED.last_sequence, EXCLUDED.last_event_at, EXCLUDED.last_event_id)
                 > (t.last_sequence, t.last_event_at, t.last_event_id)`;

/**
 * Each model's "last seen" state. The state columns move only to a newer event and last_queried_at only
 * to a later read (GREATEST ignores NULL), so an older event applied late — a retry, a replayed dead
 * letter, a stale cached read — changes nothing; a row that neither would move is not even updated.
 */
/** The hourly count tables: one row per hour and key, counts added as batches come. */
const MODEL_QUERIES: SummingTable<ModelQueryRow> = {
  name: 'model_queries',
  table: 'analytics_model_queries',
  key: [
    ['hour', 'timestamptz', (row) => row.hour],
    ['model_id', 'text', (row) => row.modelId],
    ['vendor_id', 'text', (row) => row.vendorId],
    ['capability_tier', 'text', (row) => row.capabilityTier],
  ],
  sums: [
    ['queries', 'bigint', (row) => row.queries],
    ['cache_hits', 'bigint', (row) => row.cacheHits],
  ],
};

const FILTER_EXECUTIONS: SummingTable<FilterExecutionRow> = {
  name: 'filter_executions',
  table: 'analytics_filter_executions',
  key: [['hour', 'timestamptz', (row) => row.hour]],
  sums: [
    ['executions', 'bigint', (row) => row.executions],
    ['result_count_sum', 'bigint', (row) => row.resultCountSum],
    ['zero_results', 'bigint', (row) => row.zeroResults],
    ['has_more', 'bigint', (row) => row.hasMore],
    ['cache_hits', 'bigint', (row) => row.cacheHits],
  ],
};

const FILTER_PARAMETERS: SummingTable<FilterParameterRow> = {
  name: 'filter_parameters',
  table: 'analytics_filter_parameters',
  key: [
    ['hour', 'timestamptz', (row) => row.hour],
    ['parameter', 'text', (row) => row.parameter],
  ],
  sums: [['executions', 'bigint', (row) => row.executions]],
};

const FILTER_VALUES: SummingTable<FilterValueRow> = {
  name: 'filter_values',
  table: 'analytics_filter_values',
  key: [
    ['hour', 'timestamptz', (row) => row.hour],
    ['parameter', 'text', (row) => row.parameter],
    ['value', 'text', (row) => row.value],
  ],
  sums: [['executions', 'bigint', (row) => row.executions]],
};

const LIFECYCLE: SummingTable<LifecycleRow> = {
  name: 'lifecycle',
  table: 'analytics_model_lifecycle',
  key: [
    ['hour', 'timestamptz', (row) => row.hour],
    ['event_type', 'text', (row) => row.eventType],
    ['vendor_id', 'text', (row) => row.vendorId],
    ['capability_tier', 'text', (row) => row.capabilityTier],
  ],
  sums: [
    ['events', 'bigint', (row) => row.events],
    ['changes', 'bigint', (row) => row.changes],
  ],
};

const MODEL_ACTIVITY_UPSERT = `INSERT INTO analytics_model_activity AS t
    (model_id, ${STATE_COLUMNS.join(', ')}, last_queried_at, updated_at)
  SELECT model_id, ${STATE_COLUMNS.join(', ')}, last_queried_at, now()
  FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[], $5::uuid[], $6::timestamptz[],
              $7::text[], $8::text[], $9::bool[], $10::timestamptz[])
       WITH ORDINALITY AS r(model_id, ${STATE_COLUMNS.join(', ')}, last_queried_at, n)
  ORDER BY n
  ON CONFLICT (model_id) DO UPDATE
  SET ${STATE_COLUMNS.map((column) => `${column} = CASE WHEN ${NEWER} THEN EXCLUDED.${column} ELSE t.${column} END`).join(',\n      ')},
      last_queried_at = GREATEST(t.last_queried_at, EXCLUDED.last_queried_at),
      updated_at = EXCLUDED.updated_at
  WHERE ${NEWER}
     OR EXCLUDED.last_queried_at > t.last_queried_at
     OR (t.last_queried_at IS NULL AND EXCLUDED.last_queried_at IS NOT NULL)`;

export function analyticsConsumer(): Consumer {
  const vendors = new KnownVendors();
  return {
    name: 'analytics',
    queue: QUEUES.analytics,
    async prepare(pool, deliveries) {
      await vendors.refresh(pool, filterVendors(deliveries.map((delivery) => delivery.event)));
    },
    writes(deliveries) {
      const events = deliveries
        .map((delivery) => delivery.event)
        .filter((event): event is TelemetryEvent => event !== undefined);
      return aggregateWrites(aggregateEvents(events, (vendor) => vendors.dimension(vendor)));
    },
  };
}

/** Adds the counts to the tables, as one statement of its own (the consumer's go with its batch's). */
export async function writeAggregate(client: pg.ClientBase, aggregate: AnalyticsAggregate): Promise<void> {
  await client.query(batchStatement('analytics.aggregate', aggregateWrites(aggregate)));
}

/**
 * The upserts of a batch's counts, one per table, always all six (an empty one writes nothing). Each
 * takes its rows as arrays (one bind parameter per column, whatever the batch size) and inserts them in
 * the aggregate's key order, `WITH ORDINALITY` making that order explicit, so concurrent writers take
 * row locks in the same order.
 */
export function aggregateWrites(aggregate: AnalyticsAggregate): BatchWrite[] {
  const { modelQueries, filterExecutions, filterParameters, filterValues, lifecycle, modelActivity } =
    aggregate;
  return [
    summingUpsert(MODEL_QUERIES, modelQueries),
    summingUpsert(FILTER_EXECUTIONS, filterExecutions),
    summingUpsert(FILTER_PARAMETERS, filterParameters),
    summingUpsert(FILTER_VALUES, filterValues),
    summingUpsert(LIFECYCLE, lifecycle),
    {
      name: 'model_activity',
      text: MODEL_ACTIVITY_UPSERT,
      values: [
        modelActivity.map((row) => row.modelId),
        modelActivity.map((row) => row.sequence),
        modelActivity.map((row) => row.eventAt),
        modelActivity.map((row) => row.eventType),
        modelActivity.map((row) => row.eventId),
        modelActivity.map((row) => row.changedAt),
        modelActivity.map((row) => row.vendorId),
        modelActivity.map((row) => row.capabilityTier),
        modelActivity.map((row) => row.isActive),
        modelActivity.map((row) => row.lastQueriedAt),
      ],
    },
  ];
}
