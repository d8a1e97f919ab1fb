/**
 * One bucket of rollups (a day, an hour or a minute), for one filter, read and merged: the unit GET
 * /metrics adds up over a range, and caches when the bucket is closed (src/consumers/metrics/metrics-cache.ts).
 *
 * Reads take the rollup rows as they are stored — no grouping or `unnest` in SQL: a bucket holds one row
 * per key (an open minute also the deltas not yet compacted, added up here), and the histograms come back
 * as the text of their packed `bigint[]`, parsed straight into a {@link BucketSum}, which measured
 * several times faster than unnesting and grouping them in SQL.
 */
import pg from 'pg';
import {
  BucketSum,
  EMPTY_BUCKETS,
  percentileOfSparse,
  type SparseBuckets,
} from '../../log-linear-histogram.ts';
import type { RollupDimensions, StoredRollupRow } from './metrics-aggregation.ts';
import { GRANULARITY_INTERVAL, type Granularity } from './metrics-granularity.ts';

export interface MetricsFilters {
  vendorId?: string | undefined;
  capabilityTier?: string | undefined;
  /** A route template, e.g. `/models/:model_id` (every method). */
  route?: string | undefined;
}

/** The counts of one key of a bucket (or of a range, once added up). */
export interface CountRow extends RollupDimensions {
  /** The key's parts joined, to add rows up by. */
  key: string;
  requests: number;
  cache_hits: number;
  cache_misses: number;
}

export interface Peak {
  /** Start of the minute or hour, in ms since the epoch. */
  start: number;
  requests: number;
}

export interface RouteLatency {
  /** `method route`, to add routes up by. */
  key: string;
  method: string;
  route: string;
  buckets: SparseBuckets;
}

/** What a bucket holds for a filter. */
export interface Partial {
  /** Request duration over every route, added up when first needed (a series point). */
  overall?: SparseBuckets;
  granularity: Granularity;
  /** Start of the bucket, in ms since the epoch. */
  start: number;
  counts: CountRow[];
  /** Request duration per method and route. */
  routes: RouteLatency[];
  processing: SparseBuckets;
  requests: number;
  /** Requests with a 4xx or 5xx status. */
  errors: number;
  /** The busiest minute inside the bucket (earliest on a tie); null without requests. */
  busiestMinute: Peak | null;
  /** The busiest clock hour inside: a day's; an hour is its own; null for a minute. */
  busiestHour: Peak | null;
}

/** A point of a time series: a whole bucket's requests, errors and p95. */
export interface Point {
  requests: number;
  errors: number;
  p95: number | null;
}

/** The rows of a granularity to read: some buckets, or (minutes) every bucket in [from, to). */
export type Selection =
  | { granularity: Granularity; starts: readonly number[] }
  | { granularity: Granularity; from: number; to: number };

/** Builds a query's bind values and the WHERE clause of a selection and filters. */
export class Where {
  readonly values: unknown[] = [];

  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  selection(selection: Selection): string {
    const granularity = `granularity = ${this.param(selection.granularity)}`;
    if ('starts' in selection) {
      return `${granularity} AND bucket_start = ANY (${this.param(isoList(selection.starts))}::timestamptz[])`;
    }
    return `${granularity} AND bucket_start >= ${this.param(iso(selection.from))}::timestamptz AND bucket_start < ${this.param(iso(selection.to))}::timestamptz`;
  }

  filters(filters: MetricsFilters): string {
    const parts: string[] = [];
    if (filters.vendorId !== undefined) parts.push(`vendor_id = ${this.param(filters.vendorId)}`);
    if (filters.capabilityTier !== undefined) {
      parts.push(`capability_tier = ${this.param(filters.capabilityTier)}`);
    }
    if (filters.route !== undefined) parts.push(`route = ${this.param(filters.route)}`);
    return parts.length === 0 ? '' : ` AND ${parts.join(' AND ')}`;
  }
}

export const isFiltered = (filters: MetricsFilters): boolean =>
  filters.vendorId !== undefined || filters.capabilityTier !== undefined || filters.route !== undefined;

const iso = (ms: number) => new Date(ms).toISOString();
const isoList = (starts: readonly number[]) => starts.map(iso);

const INT8_ARRAY_OID = 1016;
/** Leaves a `bigint[]` as its text, for {@link BucketSum.addPackedText}. */
const PACKED_AS_TEXT = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_ARRAY_OID
      ? (value: string) => value
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** The minute rows and the deltas not yet moved into them, as one relation. */
const WITH_DELTAS = `(SELECT granularity, bucket_start, event_type, method, route, vendor_id, capability_tier,
                            status_class, error_type, requests, cache_hits, cache_misses, request_latency,
                            processing_latency
                       FROM metrics_rollups
                     UNION ALL
                     SELECT '1m', bucket_start, event_type, method, route, vendor_id, capability_tier,
                            status_class, error_type, requests, cache_hits, cache_misses, request_latency,
                            processing_latency
                       FROM metrics_rollup_deltas) AS rollups`;

/**
 * Reads the selected buckets' partials, with their busiest minute and hour. Buckets without a row are
 * absent from the result (an empty bucket: see {@link emptyPartial}).
 */
export async function loadPartials(
  client: pg.ClientBase,
  selection: Selection,
  filters: MetricsFilters,
): Promise<Map<number, Partial>> {
  const where = new Where();
  // Minutes of a range are open ones (after the compaction watermark): their rollup deltas not yet moved
  // into the minute rows count too (migrations/1765065600002_metrics-deltas.sql), several rows per key.
  const { rows } = await client.query<StoredRollupRow<string>>({
    text: `SELECT bucket_start, event_type, method, route, vendor_id, capability_tier, status_class,
                  error_type, requests, cache_hits, cache_misses, request_latency, processing_latency
           FROM ${'from' in selection && selection.granularity === '1m' ? WITH_DELTAS : 'metrics_rollups'}
           WHERE ${where.selection(selection)}${where.filters(filters)}
           ORDER BY bucket_start`,
    values: where.values,
    types: PACKED_AS_TEXT,
  });
  const partials = new Map<number, Partial>();
  const routeSums = new Map<string, { method: string; route: string; sum: BucketSum }>();
  const processing = BucketSum.borrow();
  let current: Partial | undefined;
  const finish = () => {
    if (current === undefined) return;
    const routes: RouteLatency[] = [];
    for (const [key, entry] of routeSums) {
      if (entry.sum.total > 0) {
        routes.push({ key, method: entry.method, route: entry.route, buckets: entry.sum.take() });
      }
    }
    current.routes = routes;
    current.processing = processing.take();
    partials.set(current.start, current);
  };
  for (const row of rows) {
    const start = row.bucket_start.getTime();
    if (current?.start !== start) {
      finish();
      current = emptyPartial(selection.granularity, start);
    }
    const count: CountRow = {
      key: `${row.event_type}\u0000${row.method}\u0000${row.route}\u0000${row.vendor_id}\u0000${row.capability_tier}\u0000${row.status_class}\u0000${row.error_type}`,
      event_type: row.event_type,
      method: row.method,
      route: row.route,
      vendor_id: row.vendor_id,
      capability_tier: row.capability_tier,
      status_class: row.status_class,
      error_type: row.error_type,
      requests: Number(row.requests),
      cache_hits: Number(row.cache_hits),
      cache_misses: Number(row.cache_misses),
    };
    current.counts.push(count);
    current.requests += count.requests;
    if (count.status_class >= 4) current.errors += count.requests;
    const routeKey = `${row.method} ${row.route}`;
    let route = routeSums.get(routeKey);
    if (route === undefined) {
      route = { method: row.method, route: row.route, sum: BucketSum.borrow() };
      routeSums.set(routeKey, route);
    }
    route.sum.addPackedText(row.request_latency);
    processing.addPackedText(row.processing_latency);
  }
  finish();
  processing.release();
  for (const entry of routeSums.values()) entry.sum.release();

  for (const partial of partials.values()) {
    if (partial.granularity === '1m') {
      partial.busiestMinute = { start: partial.start, requests: partial.requests };
    } else if (partial.granularity === '1h') {
      partial.busiestHour = { start: partial.start, requests: partial.requests };
    }
  }
  if (selection.granularity !== '1m') {
    for (const [start, peaks] of await busiestInside(
      client,
      selection.granularity,
      [...partials.keys()],
      filters,
    )) {
      const partial = partials.get(start) as Partial;
      partial.busiestMinute = peaks.minute;
      if (partial.granularity === '1d') partial.busiestHour = peaks.hour;
    }
  }
  return partials;
}

export function emptyPartial(granularity: Granularity, start: number): Partial {
  return {
    granularity,
    start,
    counts: [],
    routes: [],
    processing: EMPTY_BUCKETS,
    requests: 0,
    errors: 0,
    busiestMinute: null,
    busiestHour: null,
  };
}

/**
 * The busiest minute and clock hour (earliest on a tie) inside each of `starts`, closed hours or days,
 * from their hour rows: an hour row holds its requests per minute (`minute_requests`), so this reads 24
 * rows per key and day rather than 1,440.
 */
async function busiestInside(
  client: pg.ClientBase,
  outer: Granularity,
  starts: readonly number[],
  filters: MetricsFilters,
): Promise<Map<number, { minute: Peak | null; hour: Peak | null }>> {
  const peaks = new Map<number, { minute: Peak | null; hour: Peak | null }>();
  if (starts.length === 0) return peaks;
  const where = new Where();
  const { rows } = await client.query<{ start: Date; hour: Date; requests: string; minutes: number[] }>(
    `SELECT p.start, m.bucket_start AS hour, m.requests, m.minute_requests AS minutes
     FROM unnest(${where.param(isoList(starts))}::timestamptz[]) AS p(start)
     JOIN ${isFiltered(filters) ? 'metrics_rollups' : 'metrics_rollup_totals'} AS m
       ON m.granularity = '1h' AND m.bucket_start >= p.start
      AND m.bucket_start < p.start + ${where.param(GRANULARITY_INTERVAL[outer])}::interval
     WHERE true${where.filters(filters)}
     ORDER BY p.start, m.bucket_start`,
    where.values,
  );
  // Rows come by bucket, then hour: add up each hour's keys, then keep the busiest.
  const perMinute = new Float64Array(60);
  let bucket: number | undefined;
  let hour: number | undefined;
  let hourRequests = 0;
  let best: { minute: Peak | null; hour: Peak | null } = { minute: null, hour: null };
  const closeHour = () => {
    if (hour === undefined) return;
    for (let i = 0; i < 60; i++) {
      const requests = perMinute[i] as number;
      if (requests > 0 && (best.minute === null || requests > best.minute.requests)) {
        best.minute = { start: hour + i * 60_000, requests };
      }
      perMinute[i] = 0;
    }
    if (hourRequests > 0 && (best.hour === null || hourRequests > best.hour.requests)) {
      best.hour = { start: hour, requests: hourRequests };
    }
    hourRequests = 0;
  };
  for (const row of rows) {
    const start = row.start.getTime();
    const rowHour = row.hour.getTime();
    if (rowHour !== hour || start !== bucket) closeHour();
    if (start !== bucket) {
      if (bucket !== undefined) peaks.set(bucket, best);
      best = { minute: null, hour: null };
      bucket = start;
    }
    hour = rowHour;
    hourRequests += Number(row.requests);
    row.minutes.forEach((requests, i) => {
      perMinute[i] = (perMinute[i] as number) + requests;
    });
  }
  closeHour();
  if (bucket !== undefined) peaks.set(bucket, best);
  return peaks;
}

/** The series points of whole buckets: requests, errors and the p95 of each. */
export async function loadPoints(
  client: pg.ClientBase,
  granularity: Granularity,
  starts: readonly number[],
  filters: MetricsFilters,
): Promise<Map<number, Point>> {
  const points = new Map<number, Point>();
  if (starts.length === 0) return points;
  const where = new Where();
  const selection = where.selection({ granularity, starts });
  // Unfiltered: a totals row per bucket. Filtered: the matching keys' rows, added up per bucket.
  const { rows } = await client.query<{
    bucket_start: Date;
    requests: string;
    errors: string;
    request_latency: string;
  }>({
    text: isFiltered(filters)
      ? `SELECT bucket_start, requests, CASE WHEN status_class >= 4 THEN requests ELSE 0 END AS errors,
                request_latency
         FROM metrics_rollups WHERE ${selection}${where.filters(filters)} ORDER BY bucket_start`
      : `SELECT bucket_start, requests, errors, request_latency
         FROM metrics_rollup_totals WHERE ${selection} ORDER BY bucket_start`,
    values: where.values,
    types: PACKED_AS_TEXT,
  });
  const sum = BucketSum.borrow();
  let current: { start: number; requests: number; errors: number } | undefined;
  const finish = () => {
    if (current === undefined) return;
    const p95 = percentileOfSparse(sum.take(), 95);
    points.set(current.start, { requests: current.requests, errors: current.errors, p95 });
  };
  for (const row of rows) {
    const start = row.bucket_start.getTime();
    if (current?.start !== start) {
      finish();
      current = { start, requests: 0, errors: 0 };
    }
    current.requests += Number(row.requests);
    current.errors += Number(row.errors);
    sum.addPackedText(row.request_latency);
  }
  finish();
  sum.release();
  return points;
}

/** A rough size of a partial in memory, in bytes, for the cache's bound. */
export function partialBytes(partial: Partial): number {
  let bytes = 200 + partial.counts.length * 200 + partial.processing.index.length * 10;
  // Each route once, and once more in the overall sum a series point adds up (see overallOf).
  for (const route of partial.routes) bytes += 100 + route.buckets.index.length * 20;
  return bytes;
}
