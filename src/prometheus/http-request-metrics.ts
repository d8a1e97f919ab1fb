/**
 * The API's request duration histogram, in seconds, by route template, method and status code. The HTTP
 * layer calls {@link HttpRequestMetrics.observe} once per response; this module knows nothing of Fastify.
 *
 * On every request's path, so it keeps plain numbers (../bucket-histogram.ts): a Map lookup and an array
 * increment rather than prom-client's per-call label hashing.
 */
import type { Registry } from 'prom-client';
import { BucketHistogram, registerHistogramFamily } from '../bucket-histogram.ts';

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
  histogram: BucketHistogram;
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
    registerHistogramFamily(registry, {
      name: HTTP_DURATION_METRIC,
      help: 'Time from receiving a request to its response being written, by route template, method and status code',
      labelNames: LABEL_NAMES,
      series: () => this.#series,
      reset: () => {
        this.#series.clear();
        this.#byRoute.clear();
      },
    });
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
        histogram: new BucketHistogram(HTTP_DURATION_BUCKETS_SECONDS),
      };
      byStatus.set(statusCode, series);
      this.#series.add(series);
    }
    series.histogram.observe(seconds);
  }
}
