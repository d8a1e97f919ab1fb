/**
 * Serves the process's Prometheus registry:
 *
 * - `GET /metrics/prometheus`, always: OpenMetrics when the client prefers it, else the Prometheus text
 *   format 0.0.4.
 * - `GET /metrics` when the client prefers `text/plain` or `application/openmetrics-text` to
 *   `application/json` (a Prometheus server does: it need not be told another path). An `onRequest` hook
 *   answers those before routing goes further, so the JSON `GET /metrics` route never sees them and
 *   needs to know nothing about Prometheus; a client that prefers JSON, or states no preference, goes on
 *   to the JSON route.
 *
 * Scrapers rarely carry API keys, so the exposition is open unless `METRICS_SCRAPE_TOKEN` is set; then it
 * needs `Authorization: Bearer <token>` (401 otherwise). Each scrape is a request like any other and
 * emits its one `api.request` event (to `metrics.updates` only): at a 15 s scrape interval that is 4
 * events a minute per scraper.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Registry } from 'prom-client';
import { AuthError } from '../../errors.ts';
import {
  chooseExpositionFormat,
  type ExpositionFormat,
  negotiateExposition,
  renderExposition,
  scrapeAllowed,
} from '../../prometheus/exposition.ts';

export interface PrometheusExpositionOptions {
  /** The registry to serve. */
  registry: Registry;
  /** Bearer token scrapes must present; '' leaves the exposition open. @default '' */
  scrapeToken?: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set when the Prometheus exposition answered `GET /metrics` (no route of its own did). */
    metricsExposition: boolean;
  }
}

/** The path Prometheus scrapes by default. */
export const METRICS_PATH = '/metrics';

function isMetricsPath(url: string): boolean {
  return url === METRICS_PATH || url.startsWith(`${METRICS_PATH}?`);
}

export default fp<PrometheusExpositionOptions>(
  async function prometheusExposition(app: FastifyInstance, { registry, scrapeToken = '' }) {
    app.decorateRequest('metricsExposition', false);

    const answer = async (request: FastifyRequest, reply: FastifyReply, format: ExpositionFormat) => {
      if (!scrapeAllowed(request.headers.authorization, scrapeToken)) {
        throw new AuthError('UNAUTHENTICATED', 'the metrics need an Authorization: Bearer token', {
          field: 'authorization',
        });
      }
      const { contentType, body } = await renderExposition(registry, format);
      return reply.header('cache-control', 'no-store').type(contentType).send(body);
    };

    // Callback style: it runs for every request, and most leave at the first comparison.
    app.addHook('onRequest', (request, reply, done) => {
      if (request.method !== 'GET' || !isMetricsPath(request.url)) return done();
      const format = negotiateExposition(request.headers.accept);
      if (format === 'json') return done();
      request.metricsExposition = true;
      // Answered here, so routing stops: done() is not called.
      answer(request, reply, format).catch((error: unknown) => reply.send(error));
    });

    app.get(
      '/metrics/prometheus',
      {
        schema: {
          tags: ['metrics'],
          summary:
            'Prometheus exposition of this process (OpenMetrics when preferred); a bearer token when METRICS_SCRAPE_TOKEN is set',
          produces: ['text/plain', 'application/openmetrics-text'],
        },
      },
      async (request, reply) => answer(request, reply, chooseExpositionFormat(request.headers.accept)),
    );
  },
  { name: 'prometheus-exposition', dependencies: ['error-handler'] },
);
