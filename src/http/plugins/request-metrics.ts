/**
 * Observes every response in the `http_request_duration_seconds` histogram, when it has been written
 * (`onResponse`), by route template (not the path: `/models/:model_id` is one series), method and status.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { HttpRequestMetrics } from '../../prometheus/http-request-metrics.ts';
import { METRICS_PATH } from './prometheus-exposition.ts';

export interface RequestMetricsOptions {
  metrics: HttpRequestMetrics;
}

export default fp<RequestMetricsOptions>(
  async function requestMetrics(app: FastifyInstance, { metrics }) {
    // Callback style: an async hook would cost a promise per request.
    app.addHook('onResponse', (request, reply, done) => {
      const route = request.routeOptions.url ?? (request.metricsExposition ? METRICS_PATH : undefined);
      metrics.observe(route, request.method, reply.statusCode, reply.elapsedTime / 1000);
      done();
    });
  },
  { name: 'request-metrics', dependencies: ['prometheus-exposition'] },
);
