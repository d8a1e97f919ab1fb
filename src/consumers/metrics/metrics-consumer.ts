/**
 * The metrics consumer: `metrics.updates` (every event) into the raw events table and per-minute rollup
 * deltas, which the compactor (metrics-compactor.ts) moves into the minute rows and, once a minute
 * closes, into the hour and day rows. A batch is folded in memory ({@link aggregateFacts}) and handed to
 * the runtime as writes (plain inserts: no row of the rollups is updated, no histogram merged), which go
 * to PostgreSQL with the runtime's de-duplication and ledger writes as one statement.
 *
 * An event for a minute the compactor has already passed (a replay of an old event, or a consumer more
 * than the compaction lag behind) is added to its minute, hour and day rows here, and its day's revision
 * raised so that GET /metrics drops what it cached of that day. Which minutes those are is decided with
 * the watermark this consumer last read; its statement checks that none of its deltas is behind the
 * watermark, holding the watermark row FOR SHARE to the end (metrics_deltas_check), so the compactor
 * cannot pass them before they commit. If it moved past them meanwhile, the statement fails (40001),
 * and the consumer reads the watermark again before the runtime retries.
 */
import type pg from 'pg';
import { QUEUES } from '../../bus/topology.ts';
import type { BatchWrite } from '../../db/batch-statement.ts';
import type { LogLinearHistogram } from '../../log-linear-histogram.ts';
import type { Consumer } from '../consumer.ts';
import { filterVendors, KnownVendors } from '../dimensions.ts';
import {
  aggregateFacts,
  bucketStartOf,
  isRequestEvent,
  type MetricsFact,
  type RollupRow,
  type TotalsRow,
  toFact,
} from './metrics-aggregation.ts';

export interface MetricsConsumerOptions {
  /** The clock the processing latency is measured with, in ms since the epoch. @default Date.now */
  now?: () => number;
}

/** Every minute counts as compacted: facts go to their minute only. */
const NOTHING_COMPACTED = Number.NEGATIVE_INFINITY;

export function metricsConsumer(options: MetricsConsumerOptions = {}): Consumer {
  const now = options.now ?? Date.now;
  /** The compaction watermark last read (ms). */
  let watermark: number | undefined;
  const vendors = new KnownVendors();
  return {
    name: 'metrics',
    queue: QUEUES.metrics,
    async prepare(pool, deliveries, attempt) {
      if (watermark === undefined || attempt.afterConflict) watermark = await readWatermark(pool);
      await vendors.refresh(pool, filterVendors(deliveries.map((delivery) => delivery.event)));
    },
    writes(deliveries) {
      // The processing latency ends here, a few ms before the commit: the batch's statement is all that
      // is left, and the commit time cannot be known inside the transaction.
      const appliedAt = now();
      // Operator actions are not routed here; one that were would have no request to measure.
      const facts = deliveries
        .map((delivery) => delivery.event)
        .filter(isRequestEvent)
        .map((event) => toFact(event, appliedAt, (vendor) => vendors.dimension(vendor)));
      const mark = watermark ?? Number.NEGATIVE_INFINITY;
      const onTime: MetricsFact[] = [];
      const late: MetricsFact[] = [];
      for (const fact of facts) (bucketStartOf(fact.occurredAt, '1m') >= mark ? onTime : late).push(fact);
      const deltas = aggregateFacts(onTime, NOTHING_COMPACTED).rollups;
      const behind = aggregateFacts(late);
      const firstMinute = deltas.reduce<string | null>(
        (first, row) => (first === null || row.bucketStart < first ? row.bucketStart : first),
        null,
      );
      return [
        rawEventsWrite(facts, appliedAt),
        deltasWrite(deltas),
        rollupsWrite(behind.rollups),
        totalsWrite(behind.totals),
        revisionsWrite(behind.lateDays),
        {
          name: 'watermark',
          final: true,
          text: 'metrics_deltas_check($1::timestamptz)',
          values: [firstMinute],
        },
      ];
    },
  };
}

/** The compaction watermark (ms). */
export async function readWatermark(client: pg.ClientBase | pg.Pool): Promise<number> {
  const { rows } = await client.query<{ watermark: Date }>({
    name: 'metrics.watermark',
    text: 'SELECT watermark FROM metrics_compaction',
  });
  const row = rows[0];
  if (row === undefined) throw new Error('metrics_compaction has no row: is the database migrated?');
  return row.watermark.getTime();
}

/**
 * The compaction watermark (ms), locked until the end of the transaction: `FOR UPDATE`, by the compactor.
 * In READ COMMITTED a row lock waited for returns the row as the other transaction committed it.
 */
export async function lockWatermark(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<{ watermark: Date }>({
    name: 'metrics.watermark.update',
    text: 'SELECT watermark FROM metrics_compaction FOR UPDATE',
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

/** The batch's raw events. */
function rawEventsWrite(facts: readonly MetricsFact[], appliedAt: number): BatchWrite {
  return {
    name: 'raw_events',
    text: `INSERT INTO metrics_events
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
                     processing_ms)`,
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
  };
}

/** The batch's minute rows, appended as deltas for the compactor. */
function deltasWrite(rows: readonly RollupRow[]): BatchWrite {
  return {
    name: 'deltas',
    text: `INSERT INTO metrics_rollup_deltas
             (bucket_start, event_type, method, route, vendor_id, capability_tier, status_class, error_type,
              requests, cache_hits, cache_misses, request_latency, processing_latency)
           SELECT bucket_start, event_type, method, route, vendor_id, capability_tier, status_class, error_type,
                  requests, cache_hits, cache_misses, request_latency::bigint[], processing_latency::bigint[]
           FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::smallint[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[],
                       $13::text[])
                AS r(bucket_start, event_type, method, route, vendor_id, capability_tier, status_class,
                     error_type, requests, cache_hits, cache_misses, request_latency, processing_latency)`,
    values: [
      rows.map((row) => row.bucketStart),
      rows.map((row) => row.eventType),
      rows.map((row) => row.method),
      rows.map((row) => row.route),
      rows.map((row) => row.vendorId),
      rows.map((row) => row.capabilityTier),
      rows.map((row) => row.statusClass),
      rows.map((row) => row.errorType),
      rows.map((row) => row.requests),
      rows.map((row) => row.cacheHits),
      rows.map((row) => row.cacheMisses),
      rows.map((row) => arrayLiteral(row.requestLatency)),
      rows.map((row) => arrayLiteral(row.processingLatency)),
    ],
  };
}

/** Upserts rollup rows (sorted by key, so concurrent writers lock them in one order): counts summed, histograms merged. */
export function rollupsWrite(rollups: readonly RollupRow[]): BatchWrite {
  return {
    name: 'rollups',
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
  };
}

/** Upserts totals rows (sorted by key) into `metrics_rollup_totals`. */
export function totalsWrite(totals: readonly TotalsRow[]): BatchWrite {
  return {
    name: 'totals',
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
  };
}

/** Raises the revision of the days changed behind the watermark (GET /metrics reads them again). */
export function revisionsWrite(days: readonly string[]): BatchWrite {
  return {
    name: 'revisions',
    text: `INSERT INTO metrics_revisions AS t (day, revision)
           SELECT day, 1 FROM unnest($1::timestamptz[]) WITH ORDINALITY AS r(day, n) ORDER BY n
           ON CONFLICT (day) DO UPDATE SET revision = t.revision + 1`,
    values: [days],
  };
}
