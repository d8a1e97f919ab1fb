/**
 * The API's request duration histogram, in seconds, by route template, method and status code. The HTTP
 * layer calls {@link HttpRequestMetrics.observe} once per response; this module knows nothing of Fastify.
 *
 * On every request's path, so it keeps plain numbers: prom-client's `Histogram.observe()` validates and
 * hashes the label set on every call (about 1.1 µs here), where a Map lookup and an array increment cost
 * a few tens of ns. The family is written out, cumulative buckets and all, when scraped — the way
 * bus-metrics.ts reads the bus's counters — through prom-client's own formatter.
 */
import type { Metric, Registry } from 'prom-client';

/**
 * Bucket upper bounds, in seconds: cached reads take well under a millisecond, writes a few ms (a
 * PostgreSQL commit), and anything past a second is an incident. Log-spaced 1-2.5-5 from 0.25 ms to 10 s.
 */
export const HTTP_DURATION_BUCKETS_SECONDS = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The route label of a request no route matched: one series, whatever paths clients try. */
export const UNMATCHED_ROUTE = 'unmatched';

export const HTTP_DURATION_METRIC = 'http_request_duration_seconds';

/** Methods kept as labels; anything else is `OTHER`, so a client cannot grow the label set. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

const LABEL_NAMES = ['route', 'method', 'status_code'] as const;

interface Series {
  labels: Record<(typeof LABEL_NAMES)[number], string>;
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  buckets: Float64Array;
  sum: number;
  count: number;
}

const ON_REGISTRY = new WeakMap<Registry, HttpRequestMetrics>();

export class HttpRequestMetrics {
  /** Every series, for the scrape. */
  readonly #series = new Set<Series>();
  /** Series by route, then method, then status: three Map lookups, no key string built per request. */
  readonly #byRoute = new Map<string | undefined, Map<string, Map<number, Series>>>();

  /** The request metrics of a registry: made on first use, so several apps may share one registry. */
  static on(registry: Registry): HttpRequestMetrics {
    let metrics = ON_REGISTRY.get(registry);
    if (metrics === undefined) {
      metrics = new HttpRequestMetrics(registry);
      ON_REGISTRY.set(registry, metrics);
    }
    return metrics;
  }

  private constructor(registry: Registry) {
    const series = this.#series;
    const byRoute = this.#byRoute;
    const help =
      'Time from receiving a request to its response being written, by route template, method and status code';
    const family = {
      name: HTTP_DURATION_METRIC,
      help,
      type: 'histogram',
      labelNames: [...LABEL_NAMES],
      aggregator: 'sum',
      async get() {
        const values: Array<{ labels: Record<string, string>; value: number; metricName: string }> = [];
        for (const { labels, buckets, sum, count } of series.values()) {
          let cumulative = 0;
          for (let i = 0; i < buckets.length; i++) {
            cumulative += buckets[i] as number;
            const bound = HTTP_DURATION_BUCKETS_SECONDS[i];
            values.push({
              labels: { le: bound === undefined ? '+Inf' : String(bound), ...labels },
              value: cumulative,
              metricName: `${HTTP_DURATION_METRIC}_bucket`,
            });
          }
          values.push({ labels, value: sum, metricName: `${HTTP_DURATION_METRIC}_sum` });
          values.push({ labels, value: count, metricName: `${HTTP_DURATION_METRIC}_count` });
        }
        return { name: HTTP_DURATION_METRIC, help, type: 'histogram', values, aggregator: 'sum' };
      },
      reset() {
        series.clear();
        byRoute.clear();
      },
    };
    // prom-client writes any registered object with get(); this one is a histogram family.
    registry.registerMetric(family as unknown as Metric);
  }

  /** Records one response. `route` is the matched template (`/models/:model_id`), undefined for none. */
  observe(route: string | undefined, requestMethod: string, statusCode: number, seconds: number): void {
    const method = KNOWN_METHODS.has(requestMethod) ? requestMethod : 'OTHER';
    let byMethod = this.#byRoute.get(route);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.#byRoute.set(route, byMethod);
    }
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) {
      byStatus = new Map();
      byMethod.set(method, byStatus);
    }
    let series = byStatus.get(statusCode);
    if (series === undefined) {
      series = {
        labels: {
          route: route ?? UNMATCHED_ROUTE,
          method,
          status_code: String(statusCode),
        },
        buckets: new Float64Array(HTTP_DURATION_BUCKETS_SECONDS.length + 1),
        sum: 0,
        count: 0,
      };
      byStatus.set(statusCode, series);
      this.#series.add(series);
    }
    let bucket = 0;
    while (
      bucket < HTTP_DURATION_BUCKETS_SECONDS.length &&
      seconds > (HTTP_DURATION_BUCKETS_SECONDS[bucket] as number)
    ) {
      bucket++;
    }
    (series.buckets as Float64Array)[bucket] = (series.buckets[bucket] as number) + 1;
    series.sum += seconds;
    series.count++;
  }
}
