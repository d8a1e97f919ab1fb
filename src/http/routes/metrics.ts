/**
 * `GET /metrics` (JSON): how the registry is used and how it performs over a time range — thin wiring
 * from HTTP to {@link MetricsQuery}, over the rollups the metrics consumer keeps. JSON only: the
 * Prometheus exposition is served by the Prometheus work, which answers a text/plain or OpenMetrics
 * request to this path before it reaches this route.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type TSchema, Type } from 'typebox';
import { GRANULARITIES } from '../../consumers/metrics/metrics-granularity.ts';
import { METRICS_LIST_LIMIT, type MetricsQuery } from '../../consumers/metrics/metrics-query.ts';
import { METRICS_RANGE_LIMITS, resolveMetricsRange } from '../../consumers/metrics/metrics-range.ts';
import { MAX_RELATIVE_ERROR } from '../../log-linear-histogram.ts';
import { CapabilityTierSchema, VendorId } from '../../registry/model-schemas.ts';
import { errorResponses } from '../error-response.ts';

export interface MetricsRoutesOptions {
  metrics: MetricsQuery;
  /** Days of rollups kept (METRICS_ROLLUP_RETENTION_DAYS): a range reaching further back is refused. */
  retentionDays: number;
}

const security = [{ apiKey: [] }];

// Parsed by resolveMetricsRange rather than by a `format`, so that a relative time is accepted and a
// bad date is a 400 naming the field, with one message for every bad form.
const Instant = (end: string, fallback: string) =>
  Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 64,
      description:
        `${end} of the range: now, a time relative to now (-30m, -24h, -7d; units s, m, h, d, w), or an ` +
        `ISO-8601 date (midnight UTC) or date-time with an offset (in a URL, send '+' as %2B); default ` +
        `${fallback}. Rounded out to whole minutes: every minute overlapping the range counts.`,
      examples: ['-24h', '2025-01-15T10:00:00Z'],
    }),
  );

const MetricsQueryString = Type.Object(
  {
    from: Instant('Start (inclusive)', '24 h before to'),
    to: Instant('End (exclusive)', 'now'),
    bucket: Type.Optional(
      Type.Enum(GRANULARITIES, {
        description:
          'Time series bucket: a minute, an hour or a day (UTC). Default: 1m up to 6 h, 1h up to 14 days, ' +
          `1d beyond. At most ${METRICS_RANGE_LIMITS.maxSeriesPoints} points.`,
      }),
    ),
    vendor_id: Type.Optional(VendorId),
    capability_tier: Type.Optional(CapabilityTierSchema),
    route: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description: 'A route template, e.g. /models/:model_id (every method)',
        examples: ['/models/:model_id'],
      }),
    ),
  },
  { additionalProperties: false },
);

const Count = (description: string) => Type.Integer({ minimum: 0, description });
const Rate = (description: string) =>
  Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()], { description });
const Ms = Type.Union([Type.Number({ minimum: 0 }), Type.Null()]);
const Percentiles = (what: string) =>
  Type.Object(
    { p50: Ms, p95: Ms, p99: Ms },
    {
      description:
        `${what}, in ms, merged from log-linear histograms: within ${(100 * MAX_RELATIVE_ERROR).toFixed(2)} % ` +
        'of the exact nearest-rank percentile; null without requests',
    },
  );

const lifecycleFields = {
  registered_total: Count('Models in the registry now (models are never deleted): registered ever'),
  active_now: Count('Models in the registry with is_active true, now'),
  registered_in_range: Count('model.registered events in the range'),
  updated_in_range: Count('model.updated events in the range'),
  deactivated_in_range: Count('model.deactivated events in the range'),
};

const list = <T extends TSchema>(item: T, description: string) => Type.Array(item, { description });

const MetricsResponse = Type.Object({
  from: Type.String({ format: 'date-time', description: 'Start of the first minute counted' }),
  to: Type.String({ format: 'date-time', description: 'End of the last minute counted (exclusive)' }),
  bucket: Type.Enum(GRANULARITIES),
  filters: Type.Object({
    vendor_id: Type.Union([Type.String(), Type.Null()]),
    capability_tier: Type.Union([Type.String(), Type.Null()]),
    route: Type.Union([Type.String(), Type.Null()]),
  }),
  models: Type.Object(
    {
      ...lifecycleFields,
      by_vendor: list(Type.Object({ vendor_id: Type.String(), ...lifecycleFields }), 'By vendor_id'),
      by_tier: list(
        Type.Object({ capability_tier: Type.String(), ...lifecycleFields }),
        'By capability_tier',
      ),
    },
    {
      description:
        'registered_total and active_now come from the registry (vendor_id and capability_tier filters ' +
        'apply); the *_in_range counts from the events (every filter applies)',
    },
  ),
  requests: Type.Object(
    {
      total: Count('Requests answered in the range (one event each)'),
      per_second: Type.Number({ minimum: 0, description: 'total / seconds of the range elapsed so far' }),
      by_event_type: list(Type.Object({ event_type: Type.String(), requests: Count('') }), 'Most first'),
      by_route: list(
        Type.Object({
          method: Type.String(),
          route: Type.Union([Type.String(), Type.Null()], {
            description: 'Route template; null for requests that matched no route',
          }),
          requests: Count(''),
          errors: Count('4xx and 5xx responses'),
          error_rate: Type.Number({ minimum: 0, maximum: 1 }),
          latency_ms: Percentiles('Request duration'),
        }),
        'Per method and route template, most requests first',
      ),
      by_vendor: list(
        Type.Object({ vendor_id: Type.String(), requests: Count('') }),
        "Requests about a vendor: its models' events, and filters by vendor_id. Most first",
      ),
      by_tier: list(
        Type.Object({ capability_tier: Type.String(), requests: Count('') }),
        "Requests about a tier: its models' events, and filters by capability_tier. Most first",
      ),
    },
    { description: 'API queries: every request the API answered' },
  ),
  latency_ms: Percentiles('Request duration (metadata.request_duration_ms) over every request'),
  errors: Type.Object({
    total: Count('Responses with a 4xx or 5xx status'),
    rate: Rate('errors / requests; null without requests'),
    by_type: list(
      Type.Object({ error_type: Type.String({ description: 'The error code' }), requests: Count('') }),
      'Most first',
    ),
    by_status_class: list(
      Type.Object({ status_class: Type.String({ examples: ['2xx'] }), requests: Count('') }),
      'Every response, by status class',
    ),
  }),
  cache: Type.Object({
    hits: Count('Reads served from the API cache'),
    misses: Count('Cacheable reads that were not'),
    hit_rate: Rate('hits / (hits + misses); null without cacheable reads'),
  }),
  processing_latency_ms: Percentiles('Event timestamp → applied by the metrics consumer'),
  peak: Type.Object({
    minute: Type.Union(
      [Type.Object({ start: Type.String({ format: 'date-time' }), requests: Count('') }), Type.Null()],
      { description: 'The busiest minute of the range (earliest on a tie); null without requests' },
    ),
    hour: Type.Union(
      [Type.Object({ start: Type.String({ format: 'date-time' }), requests: Count('') }), Type.Null()],
      {
        description:
          'The busiest clock hour (UTC) of the range, counting only its part inside the range; null without requests',
      },
    ),
  }),
  series: list(
    Type.Object({
      start: Type.String({ format: 'date-time' }),
      requests: Count(''),
      errors: Count(''),
      p95_ms: Ms,
    }),
    'One point per bucket from the bucket holding from to the one holding to, empty buckets included',
  ),
  truncated: Type.Record(Type.String(), Type.Integer({ minimum: 0 }), {
    description:
      `The lists cut to their first ${METRICS_LIST_LIMIT} entries, by path (e.g. requests.by_vendor), each ` +
      'with how many it had; {} when none was. Values a client chooses (a filter vendor unknown to the ' +
      "registry) are counted under '(other)' rather than listed one by one.",
  }),
});

const metricsRoutes: FastifyPluginAsyncTypebox<MetricsRoutesOptions> = async (
  app,
  { metrics, retentionDays },
) => {
  app.get(
    '/metrics',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['metrics'],
        summary: 'Usage and performance of the API over a time range (JSON)',
        description:
          'Counts are exact (each event counted once, whatever redeliveries happen); percentiles are ' +
          'merged from per-minute histograms. A request is reflected within about a second.',
        security,
        querystring: MetricsQueryString,
        response: { 200: MetricsResponse, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { from, to, bucket, vendor_id: vendorId, capability_tier: capabilityTier, route } = request.query;
      return metrics.report(resolveMetricsRange({ from, to, bucket }, { retentionDays }), {
        vendorId,
        capabilityTier,
        route,
      });
    },
  );
};

export default metricsRoutes;
