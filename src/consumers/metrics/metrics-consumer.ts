/**
 * The metrics consumer: `metrics.updates` (every event) into per-minute rollups and the raw events table;
 * the compactor (metrics-compactor.ts) adds closed minutes into the hour and day rows. A batch is folded
 * in memory ({@link aggregateFacts}) and written with one set-based statement per table, in the runtime's
 * transaction — which also records the batch's event ids, so a redelivered or replayed event is never
 * counted twice.
 *
 * An event for a minute the compactor has already passed (a replay of an old event, or a consumer more
 * than the compaction lag behind) is also added to its hour and day rows here, and its day's revision
 * raised so that GET /metrics drops what it cached of that day. The watermark is read FOR SHARE: the
 * compactor (FOR UPDATE) cannot move it until this transaction commits, so an event is added to its
 * hour and day exactly once — by this transaction or by the compaction after it.
 */
import type pg from 'pg';
import { QUEUES } from '../../bus/topology.ts';
import type { LogLinearHistogram } from '../../metrics/log-linear-histogram.ts';
import type { Consumer } from '../consumer.ts';
import {
  aggregateFacts,
  isRequestEvent,
  type MetricsAggregate,
  type MetricsFact,
  type RollupRow,
  type TotalsRow,
  toFact,
} from './metrics-aggregation.ts';

export interface MetricsConsumerOptions {
  /** The clock the processing latency is measured with, in ms since the epoch. @default Date.now */
  now?: () => number;
}

export function metricsConsumer(options: MetricsConsumerOptions = {}): Consumer {
  const now = options.now ?? Date.now;
  return {
    name: 'metrics',
    queue: QUEUES.metrics,
    async apply(deliveries, client) {
      // The processing latency ends here, a few ms before the commit: the batch's statements and the
      // COMMIT are all that is left, and the commit time cannot be known inside the transaction.
      const appliedAt = now();
      // Operator actions are not routed here; one that were would have no request to measure.
      const facts = deliveries
        .map((delivery) => delivery.event)
        .filter(isRequestEvent)
        .map((event) => toFact(event, appliedAt));
      if (facts.length === 0) return;
      const watermark = await insertEvents(client, facts, appliedAt);
      await writeRollups(client, aggregateFacts(facts, watermark));
    },
  };
}

/**
 * The compaction watermark (ms), locked until the end of the transaction: `FOR SHARE` by the consumers
 * (which do not block each other), `FOR UPDATE` by the compactor. In READ COMMITTED a row lock waited for
 * returns the row as the other transaction committed it, so the value is never one already moved.
 */
export async function lockWatermark(
  client: pg.ClientBase,
  mode: 'FOR SHARE' | 'FOR UPDATE',
): Promise<number> {
  const { rows } = await client.query<{ watermark: Date }>({
    name: `metrics.watermark.${mode === 'FOR SHARE' ? 'share' : 'update'}`,
    text: `SELECT watermark FROM metrics_compaction ${mode}`,
  });
  const row = rows[0];
  if (row === undefined) throw new Error('metrics_compaction has no row: is the database migrated?');
  return row.watermark.getTime();
}

/** A packed histogram as a PostgreSQL array literal: one text bind value per row, whatever its size. */
const arrayLiteral = (histogram: LogLinearHistogram) => `{${histogram.toPacked().join(',')}}`;

/** An hour row's requests per minute as an array literal; null (minute and day rows) stays null. */
const minutesLiteral = (minutes: number[] | null) => (minutes === null ? null : `{${minutes.join(',')}}`);

/** The upsert of an hour row's requests per minute: added element by element (both are 60 long). */
const ADD_MINUTES = `CASE WHEN t.minute_requests IS NULL THEN NULL ELSE ARRAY(
                   SELECT a + b FROM unnest(t.minute_requests, EXCLUDED.minute_requests) WITH ORDINALITY AS m(a, b, i)
                   ORDER BY i) END`;

/**
 * Inserts a batch's raw events and, in the same statement (one round trip fewer per batch), locks the
 * compaction watermark FOR SHARE and returns it, as {@link lockWatermark} does: in READ COMMITTED a row
 * lock waited for returns the row as the compactor committed it.
 */
export async function insertEvents(
  client: pg.ClientBase,
  facts: readonly MetricsFact[],
  appliedAt: number,
): Promise<number> {
  const { rows } = await client.query<{ watermark: Date }>({
    name: 'metrics.events',
    text: `WITH inserted AS (
             INSERT INTO metrics_events
               (event_id, event_type, occurred_at, applied_at, method, route, model_id, vendor_id,
                capability_tier, response_code, error_type, cache_hit, request_duration_ms, processing_ms)
             SELECT event_id, event_type, occurred_at, $4::timestamptz, method, nullif(route, ''), model_id,
                    nullif(vendor_id, ''), nullif(capability_tier, ''), response_code,
                    nullif(error_type, ''), cache_hit, request_duration_ms, processing_ms
             FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $5::text[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::smallint[], $11::text[], $12::boolean[],
                         $13::float8[], $14::float8[])
                  AS r(event_id, event_type, occurred_at, method, route, model_id, vendor_id,
                       capability_tier, response_code, error_type, cache_hit, request_duration_ms,
                       processing_ms)
           )
           SELECT watermark FROM metrics_compaction FOR SHARE`,
    values: [
      facts.map((fact) => fact.eventId),
      facts.map((fact) => fact.eventType),
      facts.map((fact) => new Date(fact.occurredAt).toISOString()),
      new Date(appliedAt).toISOString(),
      facts.map((fact) => fact.method),
      facts.map((fact) => fact.route),
      facts.map((fact) => fact.modelId),
      facts.map((fact) => fact.vendorId),
      facts.map((fact) => fact.capabilityTier),
      facts.map((fact) => fact.responseCode),
      facts.map((fact) => fact.errorType),
      facts.map((fact) => fact.cacheHit),
      facts.map((fact) => fact.requestDurationMs),
      facts.map((fact) => fact.processingMs),
    ],
  });
  const row = rows[0];
  if (row === undefined) throw new Error('metrics_compaction has no row: is the database migrated?');
  return row.watermark.getTime();
}

/**
 * Writes a batch's rollups and totals (sorted by key: each statement upserts its rows in that order,
 * `WITH ORDINALITY` making it explicit, so concurrent writers take row locks in the same order), and
 * raises the revision of the days it changed behind the watermark.
 */
export async function writeRollups(client: pg.ClientBase, aggregate: MetricsAggregate): Promise<void> {
  const { rollups, totals, lateDays } = aggregate;
  await upsertRollups(client, rollups);
  await upsertTotals(client, totals);
  if (lateDays.length > 0) {
    await client.query({
      name: 'metrics.revisions',
      text: `INSERT INTO metrics_revisions AS t (day, revision)
             SELECT day, 1 FROM unnest($1::timestamptz[]) WITH ORDINALITY AS r(day, n) ORDER BY n
             ON CONFLICT (day) DO UPDATE SET revision = t.revision + 1`,
      values: [lateDays],
    });
  }
}

/** Adds rollup rows (sorted by key) into `metrics_rollups`: counts summed, histograms merged. */
export async function upsertRollups(client: pg.ClientBase, rollups: readonly RollupRow[]): Promise<void> {
  if (rollups.length > 0) {
    await client.query({
      name: 'metrics.rollups',
      text: `INSERT INTO metrics_rollups AS t
               (granularity, bucket_start, event_type, method, route, vendor_id, capability_tier,
                status_class, error_type, requests, cache_hits, cache_misses, request_latency,
                processing_latency, minute_requests)
             SELECT granularity, bucket_start, event_type, method, route, vendor_id, capability_tier,
                    status_class, error_type, requests, cache_hits, cache_misses,
                    request_latency::bigint[], processing_latency::bigint[], minute_requests::integer[]
             FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::smallint[], $9::text[], $10::bigint[], $11::bigint[],
                         $12::bigint[], $13::text[], $14::text[], $15::text[])
                  WITH ORDINALITY
                  AS r(granularity, bucket_start, event_type, method, route, vendor_id, capability_tier,
                       status_class, error_type, requests, cache_hits, cache_misses, request_latency,
                       processing_latency, minute_requests, n)
             ORDER BY n
             ON CONFLICT (granularity, bucket_start, event_type, method, route, vendor_id,
                          capability_tier, status_class, error_type) DO UPDATE
             SET requests = t.requests + EXCLUDED.requests,
                 cache_hits = t.cache_hits + EXCLUDED.cache_hits,
                 cache_misses = t.cache_misses + EXCLUDED.cache_misses,
                 request_latency = metrics_histogram_add(t.request_latency, EXCLUDED.request_latency),
                 processing_latency = metrics_histogram_add(t.processing_latency, EXCLUDED.processing_latency),
                 minute_requests = ${ADD_MINUTES}`,
      values: [
        rollups.map((row) => row.granularity),
        rollups.map((row) => row.bucketStart),
        rollups.map((row) => row.eventType),
        rollups.map((row) => row.method),
        rollups.map((row) => row.route),
        rollups.map((row) => row.vendorId),
        rollups.map((row) => row.capabilityTier),
        rollups.map((row) => row.statusClass),
        rollups.map((row) => row.errorType),
        rollups.map((row) => row.requests),
        rollups.map((row) => row.cacheHits),
        rollups.map((row) => row.cacheMisses),
        rollups.map((row) => arrayLiteral(row.requestLatency)),
        rollups.map((row) => arrayLiteral(row.processingLatency)),
        rollups.map((row) => minutesLiteral(row.minuteRequests)),
      ],
    });
  }
}

/** Adds totals rows (sorted by key) into `metrics_rollup_totals`. */
export async function upsertTotals(client: pg.ClientBase, totals: readonly TotalsRow[]): Promise<void> {
  if (totals.length > 0) {
    await client.query({
      name: 'metrics.totals',
      text: `INSERT INTO metrics_rollup_totals AS t
               (granularity, bucket_start, requests, errors, request_latency, processing_latency,
                minute_requests)
             SELECT granularity, bucket_start, requests, errors, request_latency::bigint[],
                    processing_latency::bigint[], minute_requests::integer[]
             FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                         $7::text[])
                  WITH ORDINALITY
                  AS r(granularity, bucket_start, requests, errors, request_latency, processing_latency,
                       minute_requests, n)
             ORDER BY n
             ON CONFLICT (granularity, bucket_start) DO UPDATE
             SET requests = t.requests + EXCLUDED.requests,
                 errors = t.errors + EXCLUDED.errors,
                 request_latency = metrics_histogram_add(t.request_latency, EXCLUDED.request_latency),
                 processing_latency = metrics_histogram_add(t.processing_latency, EXCLUDED.processing_latency),
                 minute_requests = ${ADD_MINUTES}`,
      values: [
        totals.map((row) => row.granularity),
        totals.map((row) => row.bucketStart),
        totals.map((row) => row.requests),
        totals.map((row) => row.errors),
        totals.map((row) => arrayLiteral(row.requestLatency)),
        totals.map((row) => arrayLiteral(row.processingLatency)),
        totals.map((row) => minutesLiteral(row.minuteRequests)),
      ],
    });
  }
}
