/**
 * The API's request duration histogram, in seconds, by route template, method and status code. The HTTP
 * layer calls {@link HttpRequestMetrics.observe} once per response; this module knows nothing of Fastify.
 */
import { Histogram, type Registry } from 'prom-client';

/**
 * Bucket upper bounds, in seconds: cached reads take well under a millisecond, writes a few ms (a
 * PostgreSQL commit), and anything past a second is an incident. Log-spaced 1-2.5-5 from 0.25 ms to 10 s.
 */
export const HTTP_DURATION_BUCKETS_SECONDS = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The route label of a request no route matched: one series, whatever paths clients try. */
export const UNMATCHED_ROUTE = 'unmatched';

/** Methods kept as labels; anything else is `OTHER`, so a client cannot grow the label set. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

type Child = { observe(value: number): void };

const ON_REGISTRY = new WeakMap<Registry, HttpRequestMetrics>();

export class HttpRequestMetrics {
  readonly #histogram: Histogram<'route' | 'method' | 'status_code'>;
  /** Children by `method route status`: a label lookup hashes its label object, a Map get does not. */
  readonly #children = new Map<string, Child>();

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
    this.#histogram = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time from receiving a request to its response being written, by route template, method and status code',
      labelNames: ['route', 'method', 'status_code'],
      buckets: HTTP_DURATION_BUCKETS_SECONDS,
      registers: [registry],
    });
  }

  /** Records one response. `route` is the matched template (`/models/:model_id`), undefined for none. */
  observe(route: string | undefined, method: string, statusCode: number, seconds: number): void {
    const key = `${method} ${route ?? ''} ${statusCode}`;
    let child = this.#children.get(key);
    if (child === undefined) {
      child = this.#histogram.labels({
        route: route ?? UNMATCHED_ROUTE,
        method: KNOWN_METHODS.has(method) ? method : 'OTHER',
        status_code: String(statusCode),
      });
      this.#children.set(key, child);
    }
    child.observe(seconds);
  }
}
