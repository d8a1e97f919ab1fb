/**
 * Reads of the metrics rollups for GET /metrics: counts, rates, latency percentiles (merged from the
 * stored histograms), peaks and a time series over a range, optionally for one vendor, tier or route.
 * Knows nothing of HTTP.
 *
 * A request reads in one REPEATABLE READ snapshot, so its numbers agree with each other (the series adds
 * up to the totals) even while the consumer and the compactor commit. The range is cut at the compaction
 * watermark (migrations/1764460800000_metrics-compaction.sql):
 *
 * - before it, into whole days, whole hours and ragged-end minutes ({@link planSegments}), each a
 *   {@link Partial} — taken from the cache (src/consumers/metrics/metrics-cache.ts) when it holds that bucket at
 *   the revision the snapshot shows for its day, read (and cached) otherwise;
 * - from it on, the minutes, read each time (they still change).
 *
 * Everything is then added up in memory: counts by key, histograms per route, peaks. The series takes a
 * whole closed bucket's point (requests, errors, p95) from the cache or one row per bucket, and adds up
 * the partials inside the others (the ragged ends, and the bucket holding the watermark).
 */
import type pg from 'pg';
import { cacheBudget } from '../../cache-budget.ts';
import { inTransaction } from '../../db/transaction.ts';
import { BucketSum, percentileOfSparse, type SparseBuckets } from '../../log-linear-histogram.ts';
import { MetricsCache, type MetricsCacheOptions } from './metrics-cache.ts';
import { GRANULARITY_MS, type Granularity } from './metrics-granularity.ts';
import {
  type CountRow,
  emptyPartial,
  loadPartials,
  loadPoints,
  type MetricsFilters,
  type Partial,
  type Peak,
  type Point,
  partialBytes,
} from './metrics-partials.ts';
import { type MetricsRange, planSegments } from './metrics-range.ts';

export type { MetricsFilters } from './metrics-partials.ts';

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
  /**
   * The lists cut to {@link METRICS_LIST_LIMIT} entries (by their dotted path, e.g. `requests.by_vendor`),
   * each with how many entries it had; empty when none was cut.
   */
  truncated: Record<string, number>;
}

/** Entries of a list of a report, at most: the first ones in the list's order (busiest first, or by name). */
export const METRICS_LIST_LIMIT = 100;

/** Cuts every list of the report's breakdowns to the limit, saying which it cut in `truncated`. */
function capLists(report: Omit<MetricsReport, 'truncated'>): MetricsReport {
  const truncated: Record<string, number> = {};
  const cap = <T>(path: string, list: T[]): T[] => {
    if (list.length <= METRICS_LIST_LIMIT) return list;
    truncated[path] = list.length;
    return list.slice(0, METRICS_LIST_LIMIT);
  };
  const { models, requests, errors } = report;
  return {
    ...report,
    models: {
      ...models,
      by_vendor: cap('models.by_vendor', models.by_vendor),
      by_tier: cap('models.by_tier', models.by_tier),
    },
    requests: {
      ...requests,
      by_event_type: cap('requests.by_event_type', requests.by_event_type),
      by_route: cap('requests.by_route', requests.by_route),
      by_vendor: cap('requests.by_vendor', requests.by_vendor),
      by_tier: cap('requests.by_tier', requests.by_tier),
    },
    errors: {
      ...errors,
      by_type: cap('errors.by_type', errors.by_type),
      by_status_class: cap('errors.by_status_class', errors.by_status_class),
    },
    truncated,
  };
}

const rate = (part: number, whole: number): number | null => (whole === 0 ? null : part / whole);
const byCode = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function percentiles(buckets: SparseBuckets): Percentiles {
  return {
    p50: percentileOfSparse(buckets, 50),
    p95: percentileOfSparse(buckets, 95),
    p99: percentileOfSparse(buckets, 99),
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

/** The larger peak; the earlier on a tie; null never wins, nor a peak without requests. */
function busier(a: Peak | null, b: Peak | null): Peak | null {
  if (b === null || b.requests <= 0) return a;
  if (a === null || b.requests > a.requests || (b.requests === a.requests && b.start < a.start)) return b;
  return a;
}

const DAY_MS = GRANULARITY_MS['1d'];
const HOUR_MS = GRANULARITY_MS['1h'];
const floorTo = (ms: number, size: number) => ms - (((ms % size) + size) % size);

export interface MetricsQueryOptions {
  /** The cache of closed periods. */
  cache?: MetricsCacheOptions;
}

/** What the snapshot says of compaction: the watermark, and the revision of each day that has one. */
interface CompactionState {
  watermark: number;
  revisions: Map<number, number>;
}

export class MetricsQuery {
  readonly #pool: pg.Pool;
  readonly #partials: MetricsCache<Partial>;
  readonly #points: MetricsCache<Point>;

  constructor(pool: pg.Pool, options: MetricsQueryOptions = {}) {
    this.#pool = pool;
    // Points are small: a tenth of the budget for them, the rest for the partials.
    const maxBytes = options.cache?.maxBytes ?? cacheBudget().metrics;
    this.#partials = new MetricsCache({ maxBytes: (maxBytes * 9) / 10 });
    this.#points = new MetricsCache({ maxBytes: maxBytes / 10 });
  }

  /** Entries, estimated bytes, hits and misses of the caches (for tests and benchmarks). */
  cacheStats() {
    return { partials: this.#partials.stats(), points: this.#points.stats() };
  }

  async report(range: MetricsRange, filters: MetricsFilters = {}): Promise<MetricsReport> {
    // No JIT: these reads are short, and compiling would cost more than it saves (measured 250 ms).
    return inTransaction(this.#pool, (client) => this.#report(client, range, filters), {
      begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL jit = off',
    });
  }

  async #report(client: pg.PoolClient, range: MetricsRange, filters: MetricsFilters): Promise<MetricsReport> {
    const from = range.from.getTime();
    const to = range.to.getTime();
    const state = await compactionState(client, from, to);
    const closedEnd = Math.min(Math.max(state.watermark, from), to);
    const filterKey = JSON.stringify([
      filters.vendorId ?? null,
      filters.capabilityTier ?? null,
      filters.route ?? null,
    ]);
    const revisionOf = (start: number) => state.revisions.get(floorTo(start, DAY_MS)) ?? 0;

    // 1. The partials: closed buckets (cached or read), then the open minutes.
    const closed = planSegments(from, closedEnd, '1d').flatMap((segment) => {
      const size = GRANULARITY_MS[segment.granularity];
      const starts: number[] = [];
      for (let start = segment.from; start < segment.to; start += size) starts.push(start);
      return starts.map((start) => ({ granularity: segment.granularity, start }));
    });
    const found = new Map<string, Partial>();
    const missing = new Map<Granularity, number[]>();
    for (const { granularity, start } of closed) {
      const key = `${filterKey}|${granularity}|${start}`;
      const cached = this.#partials.get(key, revisionOf(start));
      if (cached !== undefined) found.set(key, cached);
      else {
        const starts = missing.get(granularity);
        if (starts === undefined) missing.set(granularity, [start]);
        else starts.push(start);
      }
    }
    for (const [granularity, starts] of missing) {
      const loaded = await loadPartials(client, { granularity, starts }, filters);
      for (const start of starts) {
        const partial = loaded.get(start) ?? emptyPartial(granularity, start);
        const key = `${filterKey}|${granularity}|${start}`;
        found.set(key, partial);
        this.#partials.set(key, revisionOf(start), partial, partialBytes(partial));
      }
    }
    const open =
      closedEnd < to
        ? [...(await loadPartials(client, { granularity: '1m', from: closedEnd, to }, filters)).values()]
        : [];
    const partials = [
      ...closed.map(({ granularity, start }) => found.get(`${filterKey}|${granularity}|${start}`) as Partial),
      ...open,
    ];

    // 2. The registry now: models ever registered (models are never deleted) and active, by vendor and tier.
    const registry = await registryCounts(client, filters);

    // 3. The series: a whole closed bucket is a point of its own; the others add up their partials.
    const series = await this.#series(client, range, filters, filterKey, state, partials, revisionOf);

    // 4. Everything else, added up over the partials.
    const counts = addCounts(partials);
    const processing = BucketSum.borrow();
    let peakMinute: Peak | null = null;
    let peakHour: Peak | null = null;
    const partHours = new Map<number, number>();
    for (const partial of partials) {
      processing.addSparse(partial.processing);
      peakMinute = busier(peakMinute, partial.busiestMinute);
      if (partial.granularity === '1m') add(partHours, floorTo(partial.start, HOUR_MS), partial.requests);
      else peakHour = busier(peakHour, partial.busiestHour);
    }
    // Minutes of a clock hour not wholly read as an hour or a day: they count together, as their hour.
    for (const [start, requests] of partHours) peakHour = busier(peakHour, { start, requests });
    const seriesStart = floorTo(from, GRANULARITY_MS[range.bucket]);
    if (range.bucket === '1m') peakMinute = busiestPoint(series, seriesStart, GRANULARITY_MS['1m']);
    if (range.bucket === '1h') peakHour = busiestPoint(series, seriesStart, GRANULARITY_MS['1h']);
    const routes = byRoute(counts, partials);
    const overall = BucketSum.borrow();
    for (const route of routes.latency.values()) overall.addSparse(route);
    const latency = percentiles(overall.take());
    const processingLatency = percentiles(processing.take());
    overall.release();
    processing.release();

    return capLists({
      from: range.from.toISOString(),
      to: range.to.toISOString(),
      bucket: range.bucket,
      filters: {
        vendor_id: filters.vendorId ?? null,
        capability_tier: filters.capabilityTier ?? null,
        route: filters.route ?? null,
      },
      ...summarise(registry, counts),
      latency_ms: latency,
      requests: {
        ...summariseRequests(counts, range),
        by_route: routes.byRoute,
        ...vendorTierRequests(counts),
      },
      processing_latency_ms: processingLatency,
      peak: { minute: asPeak(peakMinute), hour: asPeak(peakHour) },
      series,
    });
  }

  async #series(
    client: pg.PoolClient,
    range: MetricsRange,
    filters: MetricsFilters,
    filterKey: string,
    state: CompactionState,
    partials: readonly Partial[],
    revisionOf: (start: number) => number,
  ): Promise<MetricsReport['series']> {
    const from = range.from.getTime();
    const to = range.to.getTime();
    const size = GRANULARITY_MS[range.bucket];
    const points = new Map<number, Point>();
    const missing: number[] = [];
    // A closed partial of the bucket's own size is the point already; one larger holds whole closed
    // points; the partials of a bucket not whole or not closed are all smaller (or open minutes).
    const same = new Map(partials.filter((p) => p.granularity === range.bucket).map((p) => [p.start, p]));
    const inside = new Map<number, Partial[]>();
    for (const partial of partials) {
      if (GRANULARITY_MS[partial.granularity] <= size) {
        const start = floorTo(partial.start, size);
        const list = inside.get(start);
        if (list === undefined) inside.set(start, [partial]);
        else list.push(partial);
      }
    }
    const first = floorTo(from, size);
    for (let start = first; start < to; start += size) {
      const whole = start >= from && start + size <= to && start + size <= state.watermark;
      if (!whole) {
        points.set(start, pointOf(inside.get(start) ?? []));
        continue;
      }
      const own = same.get(start);
      if (own !== undefined) {
        points.set(start, pointOf([own]));
        continue;
      }
      const cached = this.#points.get(`${filterKey}|${range.bucket}|${start}`, revisionOf(start));
      if (cached !== undefined) points.set(start, cached);
      else missing.push(start);
    }
    if (missing.length > 0) {
      const loaded = await loadPoints(client, range.bucket, missing, filters);
      for (const start of missing) {
        const point = loaded.get(start) ?? { requests: 0, errors: 0, p95: null };
        points.set(start, point);
        this.#points.set(`${filterKey}|${range.bucket}|${start}`, revisionOf(start), point, 100);
      }
    }
    const series: MetricsReport['series'] = [];
    for (let start = first; start < to; start += size) {
      const point = points.get(start) as Point;
      series.push({
        start: new Date(start).toISOString(),
        requests: point.requests,
        errors: point.errors,
        p95_ms: point.p95,
      });
    }
    return series;
  }
}

/** The watermark and the revisions of the days of [from, to), in the request's snapshot. */
async function compactionState(client: pg.PoolClient, from: number, to: number): Promise<CompactionState> {
  const { rows } = await client.query<{ watermark: Date; days: number[] | null; revisions: string[] | null }>(
    `SELECT c.watermark, r.days, r.revisions
     FROM metrics_compaction AS c,
          LATERAL (SELECT array_agg((extract(epoch FROM day) * 1000)::float8) AS days,
                          array_agg(revision) AS revisions
                   FROM metrics_revisions WHERE day >= $1 AND day < $2) AS r`,
    [new Date(floorTo(from, DAY_MS)).toISOString(), new Date(to).toISOString()],
  );
  const row = rows[0];
  if (row === undefined) throw new Error('metrics_compaction has no row: is the database migrated?');
  const revisions = new Map<number, number>();
  (row.days ?? []).forEach((day, i) => {
    revisions.set(Number(day), Number(row.revisions?.[i]));
  });
  return { watermark: row.watermark.getTime(), revisions };
}

async function registryCounts(client: pg.PoolClient, filters: MetricsFilters): Promise<RegistryRow[]> {
  const values: string[] = [];
  const parts: string[] = [];
  if (filters.vendorId !== undefined) {
    values.push(filters.vendorId);
    parts.push(`vendor_id = $${values.length}`);
  }
  if (filters.capabilityTier !== undefined) {
    values.push(filters.capabilityTier);
    parts.push(`capability_tier = $${values.length}`);
  }
  const { rows } = await client.query<RegistryRow>(
    `SELECT vendor_id, capability_tier, count(*) AS total, count(*) FILTER (WHERE is_active) AS active
     FROM models ${parts.length === 0 ? '' : `WHERE ${parts.join(' AND ')}`}
     GROUP BY vendor_id, capability_tier`,
    values,
  );
  return rows;
}

interface RegistryRow {
  vendor_id: string;
  capability_tier: string;
  total: string;
  active: string;
}

/** The counts of every key over the partials. */
function addCounts(partials: readonly Partial[]): CountRow[] {
  const byKey = new Map<string, CountRow>();
  for (const partial of partials) {
    for (const row of partial.counts) {
      const sum = byKey.get(row.key);
      if (sum === undefined) byKey.set(row.key, { ...row });
      else {
        sum.requests += row.requests;
        sum.cache_hits += row.cache_hits;
        sum.cache_misses += row.cache_misses;
      }
    }
  }
  return [...byKey.values()];
}

/** A point from the partials inside its bucket. */
function pointOf(partials: readonly Partial[]): Point {
  if (partials.length === 1) {
    const [partial] = partials as [Partial];
    return {
      requests: partial.requests,
      errors: partial.errors,
      p95: percentileOfSparse(overallOf(partial), 95),
    };
  }
  const sum = BucketSum.borrow();
  let requests = 0;
  let errors = 0;
  for (const partial of partials) {
    requests += partial.requests;
    errors += partial.errors;
    sum.addSparse(overallOf(partial));
  }
  const p95 = percentileOfSparse(sum.take(), 95);
  sum.release();
  return { requests, errors, p95 };
}

/** A partial's request durations over every route, added up once (a cached partial keeps them). */
function overallOf(partial: Partial): SparseBuckets {
  if (partial.overall === undefined) {
    const sum = BucketSum.borrow();
    for (const route of partial.routes) sum.addSparse(route.buckets);
    partial.overall = sum.take();
    sum.release();
  }
  return partial.overall;
}

/** The busiest point of a series (earliest on a tie); null when it has no requests. */
function busiestPoint(series: MetricsReport['series'], first: number, size: number): Peak | null {
  let best: Peak | null = null;
  for (const [i, point] of series.entries()) {
    if (point.requests > 0 && (best === null || point.requests > best.requests)) {
      best = { start: first + i * size, requests: point.requests };
    }
  }
  return best;
}

const asPeak = (peak: Peak | null) =>
  peak === null ? null : { start: new Date(peak.start).toISOString(), requests: peak.requests };

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
  registry: readonly RegistryRow[],
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

function byRoute(
  counts: readonly CountRow[],
  partials: readonly Partial[],
): { byRoute: MetricsReport['requests']['by_route']; latency: Map<string, SparseBuckets> } {
  const routes = new Map<string, { method: string; route: string; requests: number; errors: number }>();
  for (const row of counts) {
    const key = `${row.method} ${row.route}`;
    let entry = routes.get(key);
    if (entry === undefined) {
      entry = { method: row.method, route: row.route, requests: 0, errors: 0 };
      routes.set(key, entry);
    }
    entry.requests += row.requests;
    if (row.status_class >= 4) entry.errors += row.requests;
  }
  const sums = new Map<string, BucketSum>();
  for (const partial of partials) {
    for (const route of partial.routes) {
      let sum = sums.get(route.key);
      if (sum === undefined) {
        sum = BucketSum.borrow();
        sums.set(route.key, sum);
      }
      sum.addSparse(route.buckets);
    }
  }
  const latency = new Map<string, SparseBuckets>();
  for (const [key, sum] of sums) {
    latency.set(key, sum.take());
    sum.release();
  }
  const byRoute = [...routes.entries()]
    .sort(([, a], [, b]) => b.requests - a.requests || byCode(a.route, b.route) || byCode(a.method, b.method))
    .map(([key, entry]) => ({
      method: entry.method,
      route: entry.route === '' ? null : entry.route,
      requests: entry.requests,
      errors: entry.errors,
      error_rate: entry.requests === 0 ? 0 : entry.errors / entry.requests,
      latency_ms: percentiles(latency.get(key) ?? { index: new Uint16Array(0), count: new Float64Array(0) }),
    }));
  return { byRoute, latency };
}
