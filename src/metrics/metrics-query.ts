/**
 * Reads of the metrics rollups for GET /metrics: counts, rates, latency percentiles (merged from the
 * stored histograms), peaks and a time series over a range, optionally for one vendor, tier or route.
 * Knows nothing of HTTP.
 *
 * Every read of one request sees one REPEATABLE READ snapshot, shared by three connections that read side
 * by side, so its numbers agree with each other (the series adds up to the totals) even while the
 * consumer commits. A range is read as whole days,
 * whole hours and ragged-end minutes ({@link planSegments}); without a filter, the series, peaks and
 * processing latency come from the per-bucket totals table, a row per bucket.
 */
import type pg from 'pg';
import { bucketValue, HISTOGRAM_LAYOUT, percentileOfBuckets } from './log-linear-histogram.ts';
import { GRANULARITY_INTERVAL, GRANULARITY_MS, type Granularity } from './metrics-granularity.ts';
import { type MetricsRange, planSegments, type RangeSegment } from './metrics-range.ts';

export interface MetricsFilters {
  vendorId?: string | undefined;
  capabilityTier?: string | undefined;
  /** A route template, e.g. `/models/:model_id` (every method). */
  route?: string | undefined;
}

export interface Percentiles {
  /** Milliseconds; null when nothing was measured. */
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

interface LifecycleCounts {
  registered_total: number;
  active_now: number;
  registered_in_range: number;
  updated_in_range: number;
  deactivated_in_range: number;
}

export interface MetricsReport {
  from: string;
  to: string;
  bucket: Granularity;
  filters: { vendor_id: string | null; capability_tier: string | null; route: string | null };
  models: LifecycleCounts & {
    by_vendor: Array<{ vendor_id: string } & LifecycleCounts>;
    by_tier: Array<{ capability_tier: string } & LifecycleCounts>;
  };
  requests: {
    total: number;
    per_second: number;
    by_event_type: Array<{ event_type: string; requests: number }>;
    by_route: Array<{
      method: string;
      route: string | null;
      requests: number;
      errors: number;
      error_rate: number;
      latency_ms: Percentiles;
    }>;
    by_vendor: Array<{ vendor_id: string; requests: number }>;
    by_tier: Array<{ capability_tier: string; requests: number }>;
  };
  latency_ms: Percentiles;
  errors: {
    total: number;
    rate: number | null;
    by_type: Array<{ error_type: string; requests: number }>;
    by_status_class: Array<{ status_class: string; requests: number }>;
  };
  cache: { hits: number; misses: number; hit_rate: number | null };
  processing_latency_ms: Percentiles;
  peak: {
    minute: { start: string; requests: number } | null;
    hour: { start: string; requests: number } | null;
  };
  series: Array<{ start: string; requests: number; errors: number; p95_ms: number | null }>;
}

const COUNT_MASK = 2 ** HISTOGRAM_LAYOUT.countBits - 1;
const SHIFT = HISTOGRAM_LAYOUT.countBits;

/** Builds a query's bind values and the WHERE clause of a range and filters. */
class Where {
  readonly values: unknown[] = [];

  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  segments(segments: readonly RangeSegment[]): string {
    return `(${segments
      .map(
        (segment) =>
          `(granularity = ${this.param(segment.granularity)} AND bucket_start >= ${this.param(
            new Date(segment.from).toISOString(),
          )}::timestamptz AND bucket_start < ${this.param(new Date(segment.to).toISOString())}::timestamptz)`,
      )
      .join(' OR ')})`;
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

const rate = (part: number, whole: number): number | null => (whole === 0 ? null : part / whole);
const byCode = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function percentiles(buckets: ReadonlyArray<{ index: number; count: number }>): Percentiles {
  return {
    p50: percentileOfBuckets(buckets, 50),
    p95: percentileOfBuckets(buckets, 95),
    p99: percentileOfBuckets(buckets, 99),
  };
}

/** Adds `count` to `map[key]`. */
function add<K>(map: Map<K, number>, key: K, count: number): void {
  map.set(key, (map.get(key) ?? 0) + count);
}

/** Most first, then by name. */
function ranked<T extends { requests: number }>(items: T[], name: (item: T) => string): T[] {
  return items.sort((a, b) => b.requests - a.requests || byCode(name(a), name(b)));
}

export class MetricsQuery {
  constructor(private readonly pool: pg.Pool) {}

  async report(range: MetricsRange, filters: MetricsFilters = {}): Promise<MetricsReport> {
    return this.#inOneSnapshot(3, (clients) => this.#report(clients, range, filters));
  }

  /**
   * Runs `work` on `count` connections that share one REPEATABLE READ snapshot (the first exports it,
   * the others import it): the reads run side by side, and still agree with each other.
   */
  async #inOneSnapshot<T>(count: number, work: (clients: pg.PoolClient[]) => Promise<T>): Promise<T> {
    const clients: pg.PoolClient[] = [];
    const broken = new Set<pg.PoolClient>();
    const begun: pg.PoolClient[] = [];
    try {
      const leader = await this.pool.connect();
      clients.push(leader);
      await leader.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      begun.push(leader);
      const { rows } = await leader.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot');
      const snapshot = (rows[0] as { snapshot: string }).snapshot;
      await Promise.all(
        Array.from({ length: count - 1 }, async () => {
          const client = await this.pool.connect();
          clients.push(client);
          await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
          begun.push(client);
          await client.query(`SET TRANSACTION SNAPSHOT ${client.escapeLiteral(snapshot)}`);
        }),
      );
      const result = await work(clients);
      await Promise.all(begun.map((client) => client.query('COMMIT')));
      begun.length = 0;
      return result;
    } finally {
      // A connection that cannot even roll back is not given back to the pool.
      await Promise.all(
        begun.map((client) =>
          client.query('ROLLBACK').catch(() => {
            broken.add(client);
          }),
        ),
      );
      for (const client of clients) client.release(broken.has(client) ? true : undefined);
    }
  }

  async #report(
    clients: pg.PoolClient[],
    range: MetricsRange,
    filters: MetricsFilters,
  ): Promise<MetricsReport> {
    const [client, second, third] = clients as [pg.PoolClient, pg.PoolClient, pg.PoolClient];
    const from = range.from.getTime();
    const to = range.to.getTime();
    const filtered =
      filters.vendorId !== undefined || filters.capabilityTier !== undefined || filters.route !== undefined;
    const whole = planSegments(from, to, '1d');

    // 1. The registry now: models ever registered (models are never deleted) and active, by vendor and tier.
    const registryWhere = new Where();
    const registryParts: string[] = [];
    if (filters.vendorId !== undefined)
      registryParts.push(`vendor_id = ${registryWhere.param(filters.vendorId)}`);
    if (filters.capabilityTier !== undefined) {
      registryParts.push(`capability_tier = ${registryWhere.param(filters.capabilityTier)}`);
    }
    const registryRead = () =>
      client.query<{
        vendor_id: string;
        capability_tier: string;
        total: string;
        active: string;
      }>(
        `SELECT vendor_id, capability_tier, count(*) AS total, count(*) FILTER (WHERE is_active) AS active
       FROM models ${registryParts.length === 0 ? '' : `WHERE ${registryParts.join(' AND ')}`}
       GROUP BY vendor_id, capability_tier`,
        registryWhere.values,
      );

    // 2. Every count of the range, by every key; folded into the breakdowns below.
    const countsWhere = new Where();
    const countsRead = () =>
      client.query<{
        event_type: string;
        method: string;
        route: string;
        vendor_id: string;
        capability_tier: string;
        status_class: number;
        error_type: string;
        requests: string;
        cache_hits: string;
        cache_misses: string;
      }>(
        `SELECT event_type, method, route, vendor_id, capability_tier, status_class, error_type,
              sum(requests) AS requests, sum(cache_hits) AS cache_hits, sum(cache_misses) AS cache_misses
       FROM metrics_rollups
       WHERE ${countsWhere.segments(whole)}${countsWhere.filters(filters)}
       GROUP BY event_type, method, route, vendor_id, capability_tier, status_class, error_type`,
        countsWhere.values,
      );

    // 3. Request latency per route, merged over the range; the overall figure merges the routes.
    const latencyWhere = new Where();
    const latencyRead = () =>
      second.query<{ method: string; route: string; k: number; c: string }>(
        `SELECT method, route, (e >> ${SHIFT})::int AS k, sum(e & ${COUNT_MASK}) AS c
       FROM metrics_rollups, unnest(request_latency) AS e
       WHERE ${latencyWhere.segments(whole)}${latencyWhere.filters(filters)}
       GROUP BY method, route, k
       ORDER BY k`,
        latencyWhere.values,
      );

    // 4. Processing latency, merged over the range.
    const processingWhere = new Where();
    const processingRead = () =>
      client.query<{ k: number; c: string }>(
        `SELECT (e >> ${SHIFT})::int AS k, sum(e & ${COUNT_MASK}) AS c
       FROM ${filtered ? 'metrics_rollups' : 'metrics_rollup_totals'}, unnest(processing_latency) AS e
       WHERE ${processingWhere.segments(whole)}${filtered ? processingWhere.filters(filters) : ''}
       GROUP BY k
       ORDER BY k`,
        processingWhere.values,
      );

    // 5. The series: requests, errors and p95 per bucket (p95 computed in SQL: a point per bucket
    // comes back, not its histogram). 6. Peaks: the busiest minute and clock hour; a series of that
    // bucket already has them.
    const seriesAndPeakMinute = (async () => {
      const points = await this.#series(third, range, filters, filtered);
      const minute =
        range.bucket === '1m' ? busiest(points) : await this.#busiest(third, range, '1m', filters, filtered);
      return { points, minute };
    })();
    // One query at a time per connection: the first runs the small reads, the second the per-route
    // latency merge (the largest), the third the series and the busiest minute.
    const firstConnection = (async () => {
      const registry = await registryRead();
      const counts = await countsRead();
      const processing = await processingRead();
      const hour =
        range.bucket === '1h' ? undefined : await this.#busiest(client, range, '1h', filters, filtered);
      return { registry, counts, processing, hour };
    })();
    const [{ registry, counts, processing, hour }, latency, { points: series, minute: peakMinute }] =
      await Promise.all([firstConnection, latencyRead(), seriesAndPeakMinute]);
    const peakHour = hour === undefined ? busiest(series) : hour;

    return {
      from: range.from.toISOString(),
      to: range.to.toISOString(),
      bucket: range.bucket,
      filters: {
        vendor_id: filters.vendorId ?? null,
        capability_tier: filters.capabilityTier ?? null,
        route: filters.route ?? null,
      },
      ...summarise(registry.rows, counts.rows),
      latency_ms: percentiles(mergeBuckets(latency.rows)),
      requests: {
        ...summariseRequests(counts.rows, range),
        by_route: byRoute(counts.rows, latency.rows),
        ...vendorTierRequests(counts.rows),
      },
      processing_latency_ms: percentiles(
        processing.rows.map((row) => ({ index: row.k, count: Number(row.c) })),
      ),
      peak: { minute: peakMinute, hour: peakHour },
      series,
    };
  }

  async #series(
    client: pg.PoolClient,
    range: MetricsRange,
    filters: MetricsFilters,
    filtered: boolean,
  ): Promise<MetricsReport['series']> {
    const where = new Where();
    const segments = where.segments(planSegments(range.from.getTime(), range.to.getTime(), range.bucket));
    const interval = where.param(GRANULARITY_INTERVAL[range.bucket]);
    const source = filtered
      ? `SELECT date_bin(${interval}::interval, bucket_start, timestamptz 'epoch') AS bin, requests,
                CASE WHEN status_class >= 4 THEN requests ELSE 0 END AS errors, request_latency
         FROM metrics_rollups WHERE ${segments}${where.filters(filters)}`
      : `SELECT date_bin(${interval}::interval, bucket_start, timestamptz 'epoch') AS bin, requests, errors,
                request_latency
         FROM metrics_rollup_totals WHERE ${segments}`;
    const { rows } = await client.query<{ bin: Date; requests: string; errors: string; k: number | null }>(
      `WITH source AS MATERIALIZED (${source}),
       counts AS (SELECT bin, sum(requests) AS requests, sum(errors) AS errors FROM source GROUP BY bin),
       buckets AS (
         SELECT bin, e >> ${SHIFT} AS k, sum(e & ${COUNT_MASK}) AS c
         FROM source, unnest(request_latency) AS e GROUP BY bin, k
       ),
       running AS (SELECT bin, k, sum(c) OVER (PARTITION BY bin ORDER BY k) AS running FROM buckets),
       p95 AS (
         SELECT running.bin, min(running.k) AS k
         FROM running JOIN counts USING (bin)
         WHERE running.running >= ceil(counts.requests * 95 / 100.0)
         GROUP BY running.bin
       )
       SELECT counts.bin, counts.requests, counts.errors, p95.k::int AS k
       FROM counts LEFT JOIN p95 USING (bin)`,
      where.values,
    );
    const found = new Map(rows.map((row) => [row.bin.getTime(), row]));
    const size = GRANULARITY_MS[range.bucket];
    const first = range.from.getTime() - (range.from.getTime() % size);
    const points: MetricsReport['series'] = [];
    for (let start = first; start < range.to.getTime(); start += size) {
      const row = found.get(start);
      points.push({
        start: new Date(start).toISOString(),
        requests: Number(row?.requests ?? 0),
        errors: Number(row?.errors ?? 0),
        p95_ms: row?.k === null || row?.k === undefined ? null : bucketValue(row.k),
      });
    }
    return points;
  }

  async #busiest(
    client: pg.PoolClient,
    range: MetricsRange,
    granularity: '1m' | '1h',
    filters: MetricsFilters,
    filtered: boolean,
  ): Promise<{ start: string; requests: number } | null> {
    if (granularity === '1m' && !filtered) {
      // The totals' minute rows are the minutes: the busiest is one row, no grouping.
      const { rows } = await client.query<{ bin: Date; requests: string }>(
        `SELECT bucket_start AS bin, requests FROM metrics_rollup_totals
         WHERE granularity = '1m' AND bucket_start >= $1 AND bucket_start < $2
         ORDER BY requests DESC, bucket_start
         LIMIT 1`,
        [range.from.toISOString(), range.to.toISOString()],
      );
      const row = rows[0];
      return row === undefined ? null : { start: row.bin.toISOString(), requests: Number(row.requests) };
    }
    const where = new Where();
    const segments = where.segments(planSegments(range.from.getTime(), range.to.getTime(), granularity));
    const interval = where.param(GRANULARITY_INTERVAL[granularity]);
    const { rows } = await client.query<{ bin: Date; requests: string }>(
      `SELECT date_bin(${interval}::interval, bucket_start, timestamptz 'epoch') AS bin, sum(requests) AS requests
       FROM ${filtered ? 'metrics_rollups' : 'metrics_rollup_totals'}
       WHERE ${segments}${filtered ? where.filters(filters) : ''}
       GROUP BY bin
       ORDER BY sum(requests) DESC, bin
       LIMIT 1`,
      where.values,
    );
    const row = rows[0];
    return row === undefined ? null : { start: row.bin.toISOString(), requests: Number(row.requests) };
  }
}

/** The busiest point of a series (earliest on a tie); null when it has no requests. */
function busiest(series: MetricsReport['series']): { start: string; requests: number } | null {
  let best: { start: string; requests: number } | null = null;
  for (const point of series) {
    if (point.requests > 0 && (best === null || point.requests > best.requests)) {
      best = { start: point.start, requests: point.requests };
    }
  }
  return best;
}

interface CountRow {
  event_type: string;
  method: string;
  route: string;
  vendor_id: string;
  capability_tier: string;
  status_class: number;
  error_type: string;
  requests: string;
  cache_hits: string;
  cache_misses: string;
}

const LIFECYCLE: Record<string, 'registered_in_range' | 'updated_in_range' | 'deactivated_in_range'> = {
  'model.registered': 'registered_in_range',
  'model.updated': 'updated_in_range',
  'model.deactivated': 'deactivated_in_range',
};

const emptyLifecycle = (): LifecycleCounts => ({
  registered_total: 0,
  active_now: 0,
  registered_in_range: 0,
  updated_in_range: 0,
  deactivated_in_range: 0,
});

function summarise(
  registry: ReadonlyArray<{ vendor_id: string; capability_tier: string; total: string; active: string }>,
  counts: readonly CountRow[],
): Pick<MetricsReport, 'models' | 'errors' | 'cache'> {
  const models = emptyLifecycle();
  const vendors = new Map<string, LifecycleCounts>();
  const tiers = new Map<string, LifecycleCounts>();
  const of = (map: Map<string, LifecycleCounts>, key: string) => {
    let entry = map.get(key);
    if (entry === undefined) {
      entry = emptyLifecycle();
      map.set(key, entry);
    }
    return entry;
  };
  for (const row of registry) {
    for (const entry of [models, of(vendors, row.vendor_id), of(tiers, row.capability_tier)]) {
      entry.registered_total += Number(row.total);
      entry.active_now += Number(row.active);
    }
  }
  let errors = 0;
  let total = 0;
  let hits = 0;
  let misses = 0;
  const errorTypes = new Map<string, number>();
  const statusClasses = new Map<number, number>();
  for (const row of counts) {
    const requests = Number(row.requests);
    total += requests;
    hits += Number(row.cache_hits);
    misses += Number(row.cache_misses);
    add(statusClasses, row.status_class, requests);
    if (row.status_class >= 4) {
      errors += requests;
      add(errorTypes, row.error_type === '' ? `HTTP_${row.status_class}XX` : row.error_type, requests);
    }
    const field = LIFECYCLE[row.event_type];
    if (field !== undefined) {
      const targets = [models];
      if (row.vendor_id !== '') targets.push(of(vendors, row.vendor_id));
      if (row.capability_tier !== '') targets.push(of(tiers, row.capability_tier));
      for (const entry of targets) entry[field] += requests;
    }
  }
  return {
    models: {
      ...models,
      by_vendor: [...vendors.entries()]
        .sort(([a], [b]) => byCode(a, b))
        .map(([vendorId, entry]) => ({ vendor_id: vendorId, ...entry })),
      by_tier: [...tiers.entries()]
        .sort(([a], [b]) => byCode(a, b))
        .map(([tier, entry]) => ({ capability_tier: tier, ...entry })),
    },
    errors: {
      total: errors,
      rate: rate(errors, total),
      by_type: ranked(
        [...errorTypes.entries()].map(([type, requests]) => ({ error_type: type, requests })),
        (item) => item.error_type,
      ),
      by_status_class: [...statusClasses.entries()]
        .sort(([a], [b]) => a - b)
        .map(([statusClass, requests]) => ({ status_class: `${statusClass}xx`, requests })),
    },
    cache: { hits, misses, hit_rate: rate(hits, hits + misses) },
  };
}

function summariseRequests(
  counts: readonly CountRow[],
  range: MetricsRange,
): Pick<MetricsReport['requests'], 'total' | 'per_second' | 'by_event_type'> {
  let total = 0;
  const eventTypes = new Map<string, number>();
  for (const row of counts) {
    const requests = Number(row.requests);
    total += requests;
    add(eventTypes, row.event_type, requests);
  }
  // Over the part of the range that has happened: a range ending now is not diluted by its future.
  const elapsedMs =
    Math.min(range.to.getTime(), Math.max(range.now.getTime(), range.from.getTime() + 1000)) -
    range.from.getTime();
  return {
    total,
    per_second: total / (elapsedMs / 1000),
    by_event_type: ranked(
      [...eventTypes.entries()].map(([eventType, requests]) => ({ event_type: eventType, requests })),
      (item) => item.event_type,
    ),
  };
}

function vendorTierRequests(
  counts: readonly CountRow[],
): Pick<MetricsReport['requests'], 'by_vendor' | 'by_tier'> {
  const vendors = new Map<string, number>();
  const tiers = new Map<string, number>();
  for (const row of counts) {
    const requests = Number(row.requests);
    if (row.vendor_id !== '') add(vendors, row.vendor_id, requests);
    if (row.capability_tier !== '') add(tiers, row.capability_tier, requests);
  }
  return {
    by_vendor: ranked(
      [...vendors.entries()].map(([vendorId, requests]) => ({ vendor_id: vendorId, requests })),
      (item) => item.vendor_id,
    ),
    by_tier: ranked(
      [...tiers.entries()].map(([tier, requests]) => ({ capability_tier: tier, requests })),
      (item) => item.capability_tier,
    ),
  };
}

/** Merges rows of (k, c) sorted by k into buckets sorted by index. */
function mergeBuckets(
  rows: ReadonlyArray<{ k: number; c: string }>,
): Array<{ index: number; count: number }> {
  const merged = new Map<number, number>();
  for (const row of rows) add(merged, row.k, Number(row.c));
  return [...merged.entries()].sort(([a], [b]) => a - b).map(([index, count]) => ({ index, count }));
}

function byRoute(
  counts: readonly CountRow[],
  latency: ReadonlyArray<{ method: string; route: string; k: number; c: string }>,
): MetricsReport['requests']['by_route'] {
  const routes = new Map<
    string,
    {
      method: string;
      route: string;
      requests: number;
      errors: number;
      buckets: Array<{ index: number; count: number }>;
    }
  >();
  const of = (method: string, route: string) => {
    const key = `${method} ${route}`;
    let entry = routes.get(key);
    if (entry === undefined) {
      entry = { method, route, requests: 0, errors: 0, buckets: [] };
      routes.set(key, entry);
    }
    return entry;
  };
  for (const row of counts) {
    const entry = of(row.method, row.route);
    entry.requests += Number(row.requests);
    if (row.status_class >= 4) entry.errors += Number(row.requests);
  }
  // Rows come sorted by k, so each route's buckets are too.
  for (const row of latency) of(row.method, row.route).buckets.push({ index: row.k, count: Number(row.c) });
  return [...routes.values()]
    .sort((a, b) => b.requests - a.requests || byCode(a.route, b.route) || byCode(a.method, b.method))
    .map((entry) => ({
      method: entry.method,
      route: entry.route === '' ? null : entry.route,
      requests: entry.requests,
      errors: entry.errors,
      error_rate: entry.requests === 0 ? 0 : entry.errors / entry.requests,
      latency_ms: percentiles(entry.buckets),
    }));
}
