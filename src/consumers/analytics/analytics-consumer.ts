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
import type { Consumer } from '../consumer.ts';
import { filterVendors, KnownVendors } from '../dimensions.ts';
import { type AnalyticsAggregate, aggregateEvents } from './analytics-aggregation.ts';

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
    {
      name: 'model_queries',
      text: `INSERT INTO analytics_model_queries AS t
               (hour, model_id, vendor_id, capability_tier, queries, cache_hits)
             SELECT hour, model_id, vendor_id, capability_tier, queries, cache_hits
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
                  WITH ORDINALITY AS r(hour, model_id, vendor_id, capability_tier, queries, cache_hits, n)
             ORDER BY n
             ON CONFLICT (hour, model_id, vendor_id, capability_tier) DO UPDATE
             SET queries = t.queries + EXCLUDED.queries, cache_hits = t.cache_hits + EXCLUDED.cache_hits`,
      values: [
        modelQueries.map((row) => row.hour),
        modelQueries.map((row) => row.modelId),
        modelQueries.map((row) => row.vendorId),
        modelQueries.map((row) => row.capabilityTier),
        modelQueries.map((row) => row.queries),
        modelQueries.map((row) => row.cacheHits),
      ],
    },
    {
      name: 'filter_executions',
      text: `INSERT INTO analytics_filter_executions AS t
               (hour, executions, result_count_sum, zero_results, has_more, cache_hits)
             SELECT hour, executions, result_count_sum, zero_results, has_more, cache_hits
             FROM unnest($1::timestamptz[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
                  WITH ORDINALITY
                  AS r(hour, executions, result_count_sum, zero_results, has_more, cache_hits, n)
             ORDER BY n
             ON CONFLICT (hour) DO UPDATE
             SET executions = t.executions + EXCLUDED.executions,
                 result_count_sum = t.result_count_sum + EXCLUDED.result_count_sum,
                 zero_results = t.zero_results + EXCLUDED.zero_results,
                 has_more = t.has_more + EXCLUDED.has_more,
                 cache_hits = t.cache_hits + EXCLUDED.cache_hits`,
      values: [
        filterExecutions.map((row) => row.hour),
        filterExecutions.map((row) => row.executions),
        filterExecutions.map((row) => row.resultCountSum),
        filterExecutions.map((row) => row.zeroResults),
        filterExecutions.map((row) => row.hasMore),
        filterExecutions.map((row) => row.cacheHits),
      ],
    },
    {
      name: 'filter_parameters',
      text: `INSERT INTO analytics_filter_parameters AS t (hour, parameter, executions)
             SELECT hour, parameter, executions
             FROM unnest($1::timestamptz[], $2::text[], $3::bigint[])
                  WITH ORDINALITY AS r(hour, parameter, executions, n)
             ORDER BY n
             ON CONFLICT (hour, parameter) DO UPDATE SET executions = t.executions + EXCLUDED.executions`,
      values: [
        filterParameters.map((row) => row.hour),
        filterParameters.map((row) => row.parameter),
        filterParameters.map((row) => row.executions),
      ],
    },
    {
      name: 'filter_values',
      text: `INSERT INTO analytics_filter_values AS t (hour, parameter, value, executions)
             SELECT hour, parameter, value, executions
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::bigint[])
                  WITH ORDINALITY AS r(hour, parameter, value, executions, n)
             ORDER BY n
             ON CONFLICT (hour, parameter, value) DO UPDATE SET executions = t.executions + EXCLUDED.executions`,
      values: [
        filterValues.map((row) => row.hour),
        filterValues.map((row) => row.parameter),
        filterValues.map((row) => row.value),
        filterValues.map((row) => row.executions),
      ],
    },
    {
      name: 'lifecycle',
      text: `INSERT INTO analytics_model_lifecycle AS t
               (hour, event_type, vendor_id, capability_tier, events, changes)
             SELECT hour, event_type, vendor_id, capability_tier, events, changes
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
                  WITH ORDINALITY AS r(hour, event_type, vendor_id, capability_tier, events, changes, n)
             ORDER BY n
             ON CONFLICT (hour, event_type, vendor_id, capability_tier) DO UPDATE
             SET events = t.events + EXCLUDED.events, changes = t.changes + EXCLUDED.changes`,
      values: [
        lifecycle.map((row) => row.hour),
        lifecycle.map((row) => row.eventType),
        lifecycle.map((row) => row.vendorId),
        lifecycle.map((row) => row.capabilityTier),
        lifecycle.map((row) => row.events),
        lifecycle.map((row) => row.changes),
      ],
    },
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
