/**
 * The metrics consumer and GET /metrics on the real broker and database: 20,000 generated events with
 * known fields — published with 600 duplicates, one event dead-lettered and replayed from the DLQ, and
 * 1,000 already applied events published again — give exactly the counts computed here from the
 * workload, and percentiles within 1% of the exact ones; over ranges crossing an hour and a day boundary,
 * at every bucket size, and with every filter. Then compaction: with the watermark in the middle of the
 * workload and past it, every answer is the same as from the minutes alone, also when read a second
 * time (from GET /metrics's cache); and a late event (behind the watermark) is counted exactly, its
 * day's cached partials read again.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config.ts';
import type { Consumer } from '../../src/consumers/consumer.ts';
import { dlqConsumer } from '../../src/consumers/dlq/dlq-consumer.ts';
import { DlqService } from '../../src/consumers/dlq/dlq-service.ts';
import type { RequestEvent } from '../../src/consumers/metrics/metrics-aggregation.ts';
import { MetricsCompactor } from '../../src/consumers/metrics/metrics-compactor.ts';
import { metricsConsumer } from '../../src/consumers/metrics/metrics-consumer.ts';
import {
  type MetricsFilters,
  MetricsQuery,
  type MetricsReport,
} from '../../src/consumers/metrics/metrics-query.ts';
import { resolveMetricsRange } from '../../src/consumers/metrics/metrics-range.ts';
import { buildApp } from '../../src/http/app.ts';
import { percentileRank } from '../../src/log-linear-histogram.ts';
import { createServices } from '../../src/services.ts';
import { modelBody } from '../helper.ts';
import { consumerHarness } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';

// ---------------------------------------------------------------------------------------------------
// The system: the metrics consumer (refusing the events in `failing`, to make a dead letter) and the
// dead-letter archive on one runtime; the API on the same database, telemetry off so that reading
// /metrics adds nothing to what is counted.

const failing = new Set<string>();
function refusingMetricsConsumer(): Consumer {
  const inner = metricsConsumer();
  return {
    ...inner,
    writes(deliveries) {
      for (const delivery of deliveries) {
        if (failing.has(delivery.id)) throw new Error(`refusing ${delivery.id} for the test`);
      }
      return inner.writes?.(deliveries) ?? [];
    },
  };
}

const harness = await consumerHarness(
  { after },
  () => [refusingMetricsConsumer(), dlqConsumer({ error() {} })],
  { batchSize: 100 },
);
const dataDir = mkdtempSync(join(tmpdir(), 'tb-metrics-'));
const config = loadConfig({
  DATABASE_URL: harness.databaseUrl,
  RABBITMQ_URL: harness.url,
  DATA_DIR: dataDir,
  TELEMETRY_ENABLED: 'false',
  LOG_LEVEL: 'silent',
});
const services = createServices(config);
const app = await buildApp(services);
after(async () => {
  await app.close();
  await services.close();
  rmSync(dataDir, { recursive: true, force: true });
});
const readerKey = (await services.apiKeys.create('metrics-reader', 'reader')).key;
const writerKey = (await services.apiKeys.create('metrics-writer', 'writer')).key;
const dlq = new DlqService({ pool: harness.pool, amqpUrls: [harness.url], topology: harness.topology });

async function getMetrics(query: Record<string, string>): Promise<MetricsReport> {
  const response = await app.inject({
    url: `/metrics?${new URLSearchParams(query)}`,
    headers: { 'x-api-key': readerKey },
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as MetricsReport;
}

// ---------------------------------------------------------------------------------------------------
// The workload: deterministic, spread over 100 minutes each side of yesterday's midnight (UTC).

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const MIDNIGHT = Math.floor(Date.now() / DAY) * DAY - DAY;
const WINDOW = { from: MIDNIGHT - 100 * MINUTE, to: MIDNIGHT + 100 * MINUTE };
const iso = (ms: number) => new Date(ms).toISOString();

/** mulberry32: a small seeded PRNG, so a failure can be reproduced. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(20261128);
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;

const VENDORS = [
  ['OpenAI', 'Tier_1'],
  ['OpenAI', 'Tier_2'],
  ['Anthropic', 'Tier_1'],
  ['Anthropic', 'Tier_2'],
  ['Mistral', 'Tier_3'],
  ['Meta', 'Tier_4'],
] as const;
type Tier = 'Tier_1' | 'Tier_2' | 'Tier_3' | 'Tier_4';

/** Log-normal request durations around 5 ms, from 50 µs to seconds: several powers of two. */
function duration(): number {
  const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.max(0.05, Math.round(Math.exp(Math.log(5) + 1.2 * normal) * 1000) / 1000);
}

function generate(index: number): RequestEvent {
  const timestamp = iso(WINDOW.from + Math.floor(random() * (WINDOW.to - WINDOW.from)));
  const [vendor, tier] = pick(VENDORS);
  const common = { event_id: randomUUID(), timestamp, correlation_id: `w-${index}` };
  const model = {
    ...exampleEvent('model.queried').data,
    model_id: `m/${index % 97}`,
    vendor_id: vendor,
    capability_tier: tier as Tier,
  };
  const meta = (method: string, route: string | null, code: number, cacheHit: boolean | null = null) => ({
    ...exampleEvent('model.queried').metadata,
    method,
    route,
    response_code: code,
    cache_hit: cacheHit,
    request_duration_ms: duration(),
  });
  const roll = random();
  if (roll < 0.5) {
    return exampleEvent('model.queried', {
      ...common,
      data: model,
      metadata: meta('GET', '/models/:model_id', 200, random() < 0.7),
    });
  }
  if (roll < 0.65) {
    const by = random();
    const filters = {
      ...(by < 1 / 3 ? { vendor_id: vendor } : by < 2 / 3 ? { capability_tier: tier as Tier } : {}),
      sort: 'model_id' as const,
      limit: 50,
    };
    return exampleEvent('filter.executed', {
      ...common,
      data: { filters, result_count: 3, has_more: false },
      metadata: meta('GET', '/models', 200, random() < 0.5),
    });
  }
  if (roll < 0.69) {
    return exampleEvent('model.registered', {
      ...common,
      data: { ...model, version: 1 },
      metadata: meta('POST', '/models', 201),
    });
  }
  if (roll < 0.73) {
    return exampleEvent('model.updated', {
      ...common,
      data: { ...model, version: 2, changed: true },
      metadata: meta('PATCH', '/models/:model_id', 200),
    });
  }
  if (roll < 0.75) {
    return exampleEvent('model.deactivated', {
      ...common,
      data: { ...model, is_active: false, version: 3, changed: true },
      metadata: meta('POST', '/models/:model_id/deactivate', 200),
    });
  }
  if (roll < 0.9) {
    const [method, route, code, type] = pick([
      ['GET', '/models/:model_id', 404, 'MODEL_NOT_FOUND'],
      ['POST', '/models', 400, 'VALIDATION_FAILED'],
      ['GET', '/models', 500, 'INTERNAL_ERROR'],
      ['GET', '/models', 429, 'RATE_LIMITED'],
      ['GET', null, 404, 'ROUTE_NOT_FOUND'],
    ] as const);
    return exampleEvent('api.error', {
      ...common,
      data: { model_id: null, field: null },
      metadata: meta(method, route, code),
      error: { type, message: 'generated', stack_trace: null },
    });
  }
  const route = pick(['/livez', '/health', '/metrics'] as const);
  return exampleEvent('api.request', {
    ...common,
    user_id: null,
    data: {},
    metadata: meta('GET', route, 200),
  });
}

const EVENTS = 20_000;
const DUPLICATES = 600;
const REPUBLISHED = 1000;
const workload: RequestEvent[] = Array.from({ length: EVENTS }, (_, index) => generate(index));

// ---------------------------------------------------------------------------------------------------
// Ground truth, computed from the workload alone.

interface Truth {
  total: number;
  errors: number;
  hits: number;
  misses: number;
  byEventType: Map<string, number>;
  byRoute: Map<string, { requests: number; errors: number; durations: number[] }>;
  byVendor: Map<string, number>;
  byTier: Map<string, number>;
  byErrorType: Map<string, number>;
  byStatusClass: Map<string, number>;
  lifecycle: Map<string, number>;
  durations: number[];
  minutes: Map<number, number>;
}

const increment = <K>(map: Map<K, number>, key: K, by = 1) => map.set(key, (map.get(key) ?? 0) + by);

/** The minute-aligned range GET /metrics counts for [from, to). */
const aligned = (from: number, to: number) => ({
  from: Math.floor(from / MINUTE) * MINUTE,
  to: Math.ceil(to / MINUTE) * MINUTE,
});

function truthOf(from: number, to: number, keep: (event: RequestEvent) => boolean = () => true): Truth {
  const range = aligned(from, to);
  const truth: Truth = {
    total: 0,
    errors: 0,
    hits: 0,
    misses: 0,
    byEventType: new Map(),
    byRoute: new Map(),
    byVendor: new Map(),
    byTier: new Map(),
    byErrorType: new Map(),
    byStatusClass: new Map(),
    lifecycle: new Map(),
    durations: [],
    minutes: new Map(),
  };
  for (const event of workload) {
    const at = Date.parse(event.timestamp);
    if (at < range.from || at >= range.to || !keep(event)) continue;
    const { metadata } = event;
    const isError = metadata.response_code >= 400;
    truth.total++;
    if (isError) truth.errors++;
    if (metadata.cache_hit === true) truth.hits++;
    if (metadata.cache_hit === false) truth.misses++;
    increment(truth.byEventType, event.event_type);
    const routeKey = `${metadata.method} ${metadata.route}`;
    const route = truth.byRoute.get(routeKey) ?? { requests: 0, errors: 0, durations: [] };
    route.requests++;
    if (isError) route.errors++;
    route.durations.push(metadata.request_duration_ms);
    truth.byRoute.set(routeKey, route);
    const { vendor, tier } = vendorTierOf(event);
    if (vendor !== undefined) increment(truth.byVendor, vendor);
    if (tier !== undefined) increment(truth.byTier, tier);
    if (isError) increment(truth.byErrorType, String(event.error.type));
    increment(truth.byStatusClass, `${Math.floor(metadata.response_code / 100)}xx`);
    if (event.event_type.startsWith('model.') && event.event_type !== 'model.queried') {
      increment(truth.lifecycle, `${event.event_type}|`);
      increment(truth.lifecycle, `${event.event_type}|vendor:${vendor}`);
      increment(truth.lifecycle, `${event.event_type}|tier:${tier}`);
    }
    truth.durations.push(metadata.request_duration_ms);
    increment(truth.minutes, Math.floor(at / MINUTE) * MINUTE);
  }
  return truth;
}

function vendorTierOf(event: RequestEvent): { vendor?: string; tier?: string } {
  if (event.event_type === 'filter.executed') {
    return { vendor: event.data.filters.vendor_id, tier: event.data.filters.capability_tier };
  }
  if ('vendor_id' in event.data) return { vendor: event.data.vendor_id, tier: event.data.capability_tier };
  return {};
}

function exactPercentile(values: readonly number[], percent: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[percentileRank(percent, sorted.length) - 1] as number;
}

function assertWithin1Percent(
  actual: number | null,
  values: readonly number[],
  percent: number,
  what: string,
) {
  assert.ok(values.length > 0, `${what}: no values`);
  const exact = exactPercentile(values, percent);
  assert.ok(actual !== null, `${what}: p${percent} is null`);
  const error = Math.abs(actual - exact) / exact;
  assert.ok(error <= 0.01, `${what}: p${percent} ${actual} vs exact ${exact} (${(100 * error).toFixed(3)}%)`);
}

const asMap = <T>(items: readonly T[], key: (item: T) => string, value: (item: T) => number) =>
  new Map(items.map((item) => [key(item), value(item)]));
const sorted = (map: Map<string, number>) => [...map.entries()].sort(([a], [b]) => (a < b ? -1 : 1));

/** Every count of a report against the truth for the same range and filter. */
function assertCounts(report: MetricsReport, truth: Truth, what: string) {
  assert.equal(report.requests.total, truth.total, `${what}: total`);
  assert.equal(report.errors.total, truth.errors, `${what}: errors`);
  assert.equal(report.cache.hits, truth.hits, `${what}: cache hits`);
  assert.equal(report.cache.misses, truth.misses, `${what}: cache misses`);
  const m = (items: Array<Record<string, unknown>>, key: string) =>
    sorted(
      asMap(
        items,
        (item) => String(item[key]),
        (item) => item.requests as number,
      ),
    );
  assert.deepEqual(
    m(report.requests.by_event_type, 'event_type'),
    sorted(truth.byEventType),
    `${what}: by event type`,
  );
  assert.deepEqual(m(report.requests.by_vendor, 'vendor_id'), sorted(truth.byVendor), `${what}: by vendor`);
  assert.deepEqual(m(report.requests.by_tier, 'capability_tier'), sorted(truth.byTier), `${what}: by tier`);
  assert.deepEqual(
    m(report.errors.by_type, 'error_type'),
    sorted(truth.byErrorType),
    `${what}: by error type`,
  );
  assert.deepEqual(
    m(report.errors.by_status_class, 'status_class'),
    sorted(truth.byStatusClass),
    `${what}: by status`,
  );
  assert.deepEqual(
    sorted(
      asMap(
        report.requests.by_route,
        (r) => `${r.method} ${r.route}`,
        (r) => r.requests,
      ),
    ),
    sorted(new Map([...truth.byRoute].map(([key, route]) => [key, route.requests]))),
    `${what}: by route`,
  );
  for (const route of report.requests.by_route) {
    const expected = truth.byRoute.get(`${route.method} ${route.route}`);
    assert.ok(expected);
    assert.equal(route.errors, expected.errors, `${what}: errors of ${route.method} ${route.route}`);
    for (const percent of [50, 95, 99] as const) {
      assertWithin1Percent(
        route.latency_ms[`p${percent}`],
        expected.durations,
        percent,
        `${what}: ${route.method} ${route.route}`,
      );
    }
  }
  for (const percent of [50, 95, 99] as const) {
    assertWithin1Percent(report.latency_ms[`p${percent}`], truth.durations, percent, `${what}: latency`);
  }
  const lifecycle = (type: string, key = '') => truth.lifecycle.get(`${type}|${key}`) ?? 0;
  assert.equal(report.models.registered_in_range, lifecycle('model.registered'), `${what}: registered`);
  assert.equal(report.models.updated_in_range, lifecycle('model.updated'), `${what}: updated`);
  assert.equal(report.models.deactivated_in_range, lifecycle('model.deactivated'), `${what}: deactivated`);
  for (const entry of report.models.by_vendor) {
    assert.equal(
      entry.registered_in_range,
      lifecycle('model.registered', `vendor:${entry.vendor_id}`),
      `${what}: ${entry.vendor_id}`,
    );
    assert.equal(entry.updated_in_range, lifecycle('model.updated', `vendor:${entry.vendor_id}`));
    assert.equal(entry.deactivated_in_range, lifecycle('model.deactivated', `vendor:${entry.vendor_id}`));
  }
  for (const entry of report.models.by_tier) {
    assert.equal(entry.registered_in_range, lifecycle('model.registered', `tier:${entry.capability_tier}`));
  }
  // The busiest minute (earliest on a tie).
  let peak: [number, number] | undefined;
  for (const [minute, count] of [...truth.minutes].sort(([a], [b]) => a - b)) {
    if (peak === undefined || count > peak[1]) peak = [minute, count];
  }
  assert.deepEqual(
    report.peak.minute,
    peak === undefined ? null : { start: iso(peak[0]), requests: peak[1] },
    `${what}: peak minute`,
  );
}

/** The series against the truth: counts per bucket, and p95 within 1% of each bucket's exact p95. */
function assertSeries(
  report: MetricsReport,
  from: number,
  to: number,
  keep?: (event: RequestEvent) => boolean,
) {
  const size = { '1m': MINUTE, '1h': HOUR, '1d': DAY }[report.bucket];
  const range = aligned(from, to);
  let start = Math.floor(range.from / size) * size;
  assert.equal(report.series[0]?.start, iso(start));
  for (const point of report.series) {
    assert.equal(point.start, iso(start));
    const truth = truthOf(Math.max(start, range.from), Math.min(start + size, range.to), keep);
    assert.equal(point.requests, truth.total, `requests at ${point.start}`);
    assert.equal(point.errors, truth.errors, `errors at ${point.start}`);
    if (truth.total === 0) assert.equal(point.p95_ms, null);
    else assertWithin1Percent(point.p95_ms, truth.durations, 95, `p95 at ${point.start}`);
    start += size;
  }
  assert.equal(
    start >= range.to && start - size < range.to,
    true,
    'the series ends with the bucket holding to',
  );
}

// ---------------------------------------------------------------------------------------------------
// Publishing: duplicates, a dead letter replayed, applied events published again.

const counters = () => harness.runtime.status()[0]?.counters ?? { applied: 0, duplicates: 0 };

before(async () => {
  // Models in the registry, through the API: what registered_total and active_now report.
  for (const [vendor, tier] of VENDORS) {
    const response = await app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': writerKey },
      payload: modelBody({ vendor_id: vendor, capability_tier: tier }),
    });
    assert.equal(response.statusCode, 201);
    if (vendor === 'Meta' || tier === 'Tier_2') {
      const id = encodeURIComponent((response.json() as { model_id: string }).model_id);
      const deactivated = await app.inject({
        method: 'POST',
        url: `/models/${id}/deactivate`,
        headers: { 'x-api-key': writerKey },
      });
      assert.equal(deactivated.statusCode, 200);
    }
  }

  const deadLettered = workload[12_345] as RequestEvent;
  failing.add(deadLettered.event_id);
  const chunk = 2000;
  for (let offset = 0; offset < EVENTS; offset += chunk) {
    const part = workload.slice(offset, offset + chunk);
    await harness.publish(part);
    // Duplicates of events of this chunk, some still in flight, some applied.
    const others = part.filter((event) => event !== deadLettered);
    await harness.publish(Array.from({ length: (DUPLICATES * chunk) / EVENTS }, () => pick(others)));
  }
  await harness.waitUntil(
    'every event but one applied, that one dead-lettered',
    async () => {
      const { rows } = await harness.pool.query('SELECT id FROM dead_letters WHERE event_id = $1', [
        deadLettered.event_id,
      ]);
      return counters().applied === EVENTS - 1 && rows.length === 1;
    },
    120_000,
  );
  assert.equal(counters().duplicates, DUPLICATES);
  const { rows } = await harness.pool.query<{ id: string }>(
    'SELECT id FROM dead_letters WHERE event_id = $1',
    [deadLettered.event_id],
  );
  failing.delete(deadLettered.event_id);
  const replay = await dlq.replay(
    { ids: [(rows[0] as { id: string }).id] },
    { actor: { label: 'test', keyId: null } },
  );
  assert.equal(replay.replayed, 1);
  await harness.publish(workload.slice(5000, 5000 + REPUBLISHED));
  await harness.waitUntil(
    'the replayed event applied and the republished ones skipped',
    () => counters().applied === EVENTS && counters().duplicates === DUPLICATES + REPUBLISHED,
    60_000,
  );
});

describe('exactness', () => {
  test('20,000 events with 600 duplicates, a dead letter replayed and 1,000 republished: every count exact', async () => {
    const from = WINDOW.from - HOUR;
    const to = WINDOW.to + HOUR;
    const report = await getMetrics({ from: iso(from), to: iso(to), bucket: '1h' });
    const truth = truthOf(from, to);
    assert.equal(truth.total, EVENTS);
    assertCounts(report, truth, 'whole window');
    assertSeries(report, from, to);
    // The busiest clock hour, with its count.
    const hours = new Map<number, number>();
    for (const [minute, count] of truth.minutes) increment(hours, Math.floor(minute / HOUR) * HOUR, count);
    const [peakHour, peakCount] = [...hours].sort(([a, x], [b, y]) => y - x || a - b)[0] as [number, number];
    assert.deepEqual(report.peak.hour, { start: iso(peakHour), requests: peakCount });
    assert.equal(
      report.requests.per_second,
      EVENTS / ((aligned(from, to).to - aligned(from, to).from) / 1000),
    );
    // The registry now: 6 registered, 3 deactivated (Meta, and the two Tier_2).
    assert.equal(report.models.registered_total, 6);
    assert.equal(report.models.active_now, 3);
    const openai = report.models.by_vendor.find((entry) => entry.vendor_id === 'OpenAI');
    assert.equal(openai?.registered_total, 2);
    assert.equal(openai?.active_now, 1);
    // The raw events: each once.
    const raw = await harness.pool.query<{ count: string; distinct: string }>(
      'SELECT count(*) AS count, count(DISTINCT event_id) AS distinct FROM metrics_events',
    );
    assert.equal(Number(raw.rows[0]?.count), EVENTS);
    assert.equal(Number(raw.rows[0]?.distinct), EVENTS);
    // Processing latency against the exact percentiles of the raw events' own figures.
    const processing = await harness.pool.query<{ ms: number }>(
      'SELECT processing_ms AS ms FROM metrics_events',
    );
    const values = processing.rows.map((row) => row.ms);
    for (const percent of [50, 95, 99] as const) {
      assertWithin1Percent(
        report.processing_latency_ms[`p${percent}`],
        values,
        percent,
        'processing latency',
      );
    }
  });
});

describe('time ranges and buckets', () => {
  test('per minute over an hour crossing midnight: 60 exact points', async () => {
    const from = MIDNIGHT - 30 * MINUTE;
    const to = MIDNIGHT + 30 * MINUTE;
    const report = await getMetrics({ from: iso(from), to: iso(to), bucket: '1m' });
    assert.equal(report.series.length, 60);
    assertCounts(report, truthOf(from, to), 'minutes around midnight');
    assertSeries(report, from, to);
    // Peak hour: the two partial clock hours, each counting only its part inside the range.
    const before = truthOf(from, MIDNIGHT).total;
    const afterMidnight = truthOf(MIDNIGHT, to).total;
    assert.deepEqual(report.peak.hour, {
      start: iso(afterMidnight > before ? MIDNIGHT : MIDNIGHT - HOUR),
      requests: Math.max(before, afterMidnight),
    });
  });

  test('ragged ends (seconds into a minute) read whole days, hours and edge minutes, exactly', async () => {
    const from = MIDNIGHT - 97 * MINUTE + 20_500;
    const to = MIDNIGHT + 83 * MINUTE + 10_000;
    for (const bucket of ['1m', '1h', '1d'] as const) {
      const report = await getMetrics({ from: iso(from), to: iso(to), bucket });
      assert.equal(report.from, iso(aligned(from, to).from));
      assert.equal(report.to, iso(aligned(from, to).to));
      assertCounts(report, truthOf(from, to), `bucket ${bucket}`);
      assertSeries(report, from, to);
    }
    const daily = await getMetrics({ from: iso(from), to: iso(to), bucket: '1d' });
    assert.deepEqual(
      daily.series.map((point) => point.start),
      [iso(MIDNIGHT - DAY), iso(MIDNIGHT)],
    );
  });

  test('a range of whole days is read from day rows and agrees with the hours', async () => {
    const from = MIDNIGHT - DAY;
    const to = MIDNIGHT + DAY;
    const daily = await getMetrics({ from: iso(from), to: iso(to), bucket: '1d' });
    const hourly = await getMetrics({ from: iso(from), to: iso(to), bucket: '1h' });
    assertCounts(daily, truthOf(from, to), 'two days');
    assert.deepEqual({ ...daily, bucket: '1h', series: [] }, { ...hourly, series: [] });
    assert.equal(hourly.series.length, 48);
    assertSeries(hourly, from, to);
  });

  test('a range with nothing in it', async () => {
    const report = await getMetrics({
      from: iso(MIDNIGHT + 3 * HOUR),
      to: iso(MIDNIGHT + 4 * HOUR),
      bucket: '1m',
    });
    assert.equal(report.requests.total, 0);
    assert.equal(report.latency_ms.p95, null);
    assert.equal(report.errors.rate, null);
    assert.deepEqual(report.peak, { minute: null, hour: null });
    assert.equal(report.series.length, 60);
    assert.ok(report.series.every((point) => point.requests === 0 && point.p95_ms === null));
  });
});

describe('filters', () => {
  const from = WINDOW.from;
  const to = WINDOW.to;
  const cases: Array<[string, Record<string, string>, (event: RequestEvent) => boolean]> = [
    ['vendor', { vendor_id: 'Anthropic' }, (event) => vendorTierOf(event).vendor === 'Anthropic'],
    ['tier', { capability_tier: 'Tier_2' }, (event) => vendorTierOf(event).tier === 'Tier_2'],
    ['route', { route: '/models/:model_id' }, (event) => event.metadata.route === '/models/:model_id'],
    [
      'vendor and tier',
      { vendor_id: 'OpenAI', capability_tier: 'Tier_1' },
      (event) => vendorTierOf(event).vendor === 'OpenAI' && vendorTierOf(event).tier === 'Tier_1',
    ],
  ];
  for (const [name, query, keep] of cases) {
    test(`by ${name}: every count of the matching events, the series too`, async () => {
      const report = await getMetrics({ from: iso(from), to: iso(to), bucket: '1h', ...query });
      const truth = truthOf(from, to, keep);
      assert.ok(truth.total > 500, `${name}: a meaningful share of the workload`);
      assertCounts(report, truth, name);
      assertSeries(report, from, to, keep);
      assert.deepEqual(report.filters, {
        vendor_id: query.vendor_id ?? null,
        capability_tier: query.capability_tier ?? null,
        route: query.route ?? null,
      });
    });
  }

  test('the registry counts follow vendor_id and capability_tier', async () => {
    const report = await getMetrics({ vendor_id: 'Anthropic' });
    assert.equal(report.models.registered_total, 2);
    assert.equal(report.models.active_now, 1);
    const tier = await getMetrics({ capability_tier: 'Tier_4' });
    assert.equal(tier.models.registered_total, 1);
    assert.equal(tier.models.active_now, 0);
  });
});

// ---------------------------------------------------------------------------------------------------
// Compaction: last, since the late event adds to the workload.

describe('compaction', () => {
  const shapes: Array<Record<string, string>> = [
    { from: iso(WINDOW.from - HOUR), to: iso(WINDOW.to + HOUR), bucket: '1h' },
    { from: iso(MIDNIGHT - 30 * MINUTE), to: iso(MIDNIGHT + 30 * MINUTE), bucket: '1m' },
    ...(['1m', '1h', '1d'] as const).map((bucket) => ({
      from: iso(MIDNIGHT - 97 * MINUTE + 20_500),
      to: iso(MIDNIGHT + 83 * MINUTE + 10_000),
      bucket,
    })),
    { from: iso(MIDNIGHT - DAY), to: iso(MIDNIGHT + DAY), bucket: '1d' },
    { from: iso(MIDNIGHT - DAY), to: iso(MIDNIGHT + DAY), bucket: '1h' },
    { from: iso(WINDOW.from), to: iso(WINDOW.to), bucket: '1h', vendor_id: 'Anthropic' },
    { from: iso(WINDOW.from), to: iso(WINDOW.to), bucket: '1d', capability_tier: 'Tier_2' },
    { from: iso(WINDOW.from), to: iso(WINDOW.to), bucket: '1m', route: '/models/:model_id' },
    {
      from: iso(WINDOW.from),
      to: iso(WINDOW.to),
      bucket: '1h',
      vendor_id: 'OpenAI',
      capability_tier: 'Tier_1',
    },
  ];
  const filtersOf = (shape: Record<string, string>): MetricsFilters => ({
    vendorId: shape.vendor_id,
    capabilityTier: shape.capability_tier,
    route: shape.route,
  });
  /** Through a MetricsQuery of its own, with no cache: what the rows say now. */
  const uncached = (shape: Record<string, string>) =>
    new MetricsQuery(harness.pool, { cache: { maxBytes: 0 } }).report(
      resolveMetricsRange(shape, { retentionDays: 400 }),
      filtersOf(shape),
    );
  const fromMinutes: MetricsReport[] = [];
  const watermark = async () =>
    (
      await harness.pool.query<{ w: Date }>('SELECT watermark AS w FROM metrics_compaction')
    ).rows[0]?.w.getTime();

  /** Every hour and day row (and totals row) holds exactly what its minutes before the watermark hold. */
  async function assertHoursAndDaysAreTheirMinutes() {
    for (const table of ['metrics_rollups', 'metrics_rollup_totals']) {
      const keys =
        table === 'metrics_rollups'
          ? "concat_ws('|', event_type, method, route, vendor_id, capability_tier, status_class, error_type)"
          : "''";
      for (const [granularity, interval] of [
        ['1h', '1 hour'],
        ['1d', '1 day'],
      ]) {
        const bin = `date_bin('${interval}', bucket_start, timestamptz 'epoch')`;
        const behind = "granularity = '1m' AND bucket_start < (SELECT watermark FROM metrics_compaction)";
        // Histograms compared as sorted arrays of bucket × 10^9 + count.
        const { rows } = await harness.pool.query<{ mismatched: string }>(
          `WITH elements AS (
             SELECT ${bin} AS b, ${keys} AS k, e >> 40 AS i, sum(e & 1099511627775) AS c
             FROM ${table}, unnest(request_latency) AS e WHERE ${behind} GROUP BY 1, 2, 3
           ),
           histograms AS (SELECT b, k, array_agg(i * 1000000000 + c ORDER BY i) AS h FROM elements GROUP BY 1, 2),
           requests AS (SELECT ${bin} AS b, ${keys} AS k, sum(requests) AS requests FROM ${table} WHERE ${behind} GROUP BY 1, 2),
           from_minutes AS (SELECT * FROM requests JOIN histograms USING (b, k)),
           coarse AS (
             SELECT bucket_start AS b, ${keys} AS k, requests,
                    (SELECT array_agg((e >> 40) * 1000000000 + (e & 1099511627775) ORDER BY e)
                     FROM unnest(request_latency) AS e) AS h
             FROM ${table} WHERE granularity = '${granularity}'
           )
           SELECT count(*) AS mismatched FROM from_minutes AS m FULL JOIN coarse AS c USING (b, k)
           WHERE m.requests IS DISTINCT FROM c.requests OR m.h::numeric[] IS DISTINCT FROM c.h::numeric[]`,
        );
        assert.equal(
          Number(rows[0]?.mismatched),
          0,
          `${table} ${granularity}: rows that are not their minutes`,
        );
      }
      // An hour row's requests per minute are its minutes' requests.
      const slots = await harness.pool.query<{ mismatched: string }>(
        `WITH minutes AS (
           SELECT date_bin('1 hour', bucket_start, timestamptz 'epoch') AS b, ${keys} AS k,
                  (extract(epoch FROM bucket_start)::bigint % 3600) / 60 + 1 AS i, requests
           FROM ${table} WHERE granularity = '1m' AND bucket_start < (SELECT watermark FROM metrics_compaction)
         ),
         hours AS (
           SELECT bucket_start AS b, ${keys} AS k, i, r AS requests
           FROM ${table}, unnest(minute_requests) WITH ORDINALITY AS u(r, i)
           WHERE granularity = '1h' AND r > 0
         )
         SELECT count(*) AS mismatched FROM minutes AS m FULL JOIN hours AS h USING (b, k, i)
         WHERE m.requests IS DISTINCT FROM h.requests`,
      );
      assert.equal(
        Number(slots.rows[0]?.mismatched),
        0,
        `${table}: minute_requests that are not the minutes`,
      );
    }
  }

  test('with the watermark mid-workload and past it: the same answers as from the minutes, twice', async () => {
    assert.equal(await watermark(), 0, 'a new database starts with nothing compacted');
    for (const shape of shapes) fromMinutes.push(await getMetrics(shape));
    const compactor = new MetricsCompactor(harness.pool, { lagMs: 0, stepMinutes: 7 });
    // Mid-workload: ragged minutes, whole hours and the minutes after the watermark in one answer.
    const middle = await compactor.compact(new Date(MIDNIGHT - 17 * MINUTE + 30_000));
    assert.equal(middle.watermark.getTime(), MIDNIGHT - 17 * MINUTE);
    assert.ok(middle.steps > 10, `stepped (${middle.steps} steps)`);
    await assertHoursAndDaysAreTheirMinutes();
    for (const [i, shape] of shapes.entries()) {
      assert.deepEqual(await getMetrics(shape), fromMinutes[i], `mid-way: ${JSON.stringify(shape)}`);
      assert.deepEqual(await getMetrics(shape), fromMinutes[i], `mid-way, again: ${JSON.stringify(shape)}`);
      assert.deepEqual(await uncached(shape), fromMinutes[i], `mid-way, uncached: ${JSON.stringify(shape)}`);
    }
    // The watermark is this minute's start as compact() read the clock: a minute may begin while it runs.
    const before = Math.floor(Date.now() / MINUTE) * MINUTE;
    const all = await compactor.compact();
    const after = Math.floor(Date.now() / MINUTE) * MINUTE;
    assert.ok(
      all.watermark.getTime() === before || all.watermark.getTime() === after,
      `watermark ${all.watermark.toISOString()}: the start of the minute compact() ran in`,
    );
    await assertHoursAndDaysAreTheirMinutes();
    for (const [i, shape] of shapes.entries()) {
      assert.deepEqual(await getMetrics(shape), fromMinutes[i], `compacted: ${JSON.stringify(shape)}`);
      assert.deepEqual(await getMetrics(shape), fromMinutes[i], `compacted, again: ${JSON.stringify(shape)}`);
    }
    assert.equal((await compactor.compact()).minuteRows, 0, 'nothing left to compact');
  });

  test('a late event (behind the watermark) is counted exactly, in minutes, hours, days and the cache', async () => {
    const late = generate(EVENTS);
    late.timestamp = iso(MIDNIGHT - 40 * MINUTE + 1234);
    workload.push(late);
    const applied = counters().applied;
    await harness.publish([late]);
    await harness.waitUntil('the late event applied', () => counters().applied === applied + 1, 30_000);
    const revision = await harness.pool.query<{ revision: string }>(
      'SELECT revision FROM metrics_revisions WHERE day = $1',
      [iso(MIDNIGHT - DAY)],
    );
    assert.equal(Number(revision.rows[0]?.revision), 1, "the late event's day has a new revision");
    await assertHoursAndDaysAreTheirMinutes();
    for (const shape of shapes) {
      const report = await getMetrics(shape);
      assert.deepEqual(report, await uncached(shape), `cached and uncached agree: ${JSON.stringify(shape)}`);
    }
    const from = WINDOW.from - HOUR;
    const to = WINDOW.to + HOUR;
    for (const bucket of ['1m', '1h', '1d']) {
      const report = await getMetrics({ from: iso(from), to: iso(to), bucket });
      const truth = truthOf(from, to);
      assert.equal(truth.total, EVENTS + 1);
      assertCounts(report, truth, `with the late event, bucket ${bucket}`);
      assertSeries(report, from, to);
    }
    const keep = (event: RequestEvent) => vendorTierOf(event).vendor === vendorTierOf(late).vendor;
    const report = await getMetrics({
      from: iso(WINDOW.from),
      to: iso(WINDOW.to),
      bucket: '1h',
      ...(vendorTierOf(late).vendor === undefined ? {} : { vendor_id: vendorTierOf(late).vendor as string }),
    });
    if (vendorTierOf(late).vendor !== undefined) {
      assertCounts(report, truthOf(WINDOW.from, WINDOW.to, keep), 'filtered, with the late event');
    }
  });
});
