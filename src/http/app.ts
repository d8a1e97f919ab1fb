/**
 * The Fastify application: plugins and routes wired to the domain services it is given. Building it does
 * not listen, so tests drive it with `inject()`.
 */
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  LogController,
} from 'fastify';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { ApiKeyStore } from '../auth/api-key-store.ts';
import type { EventBus } from '../bus/event-bus.ts';
import type { QueueInspector } from '../bus/queue-inspector.ts';
import { clientAddressRecorder, type IpAddressMode } from '../client-address.ts';
import { AnalyticsQuery } from '../consumers/analytics/analytics-query.ts';
import type { DlqService } from '../consumers/dlq/dlq-service.ts';
import { MetricsQuery } from '../consumers/metrics/metrics-query.ts';
import { METRICS_RETENTION_DEFAULTS } from '../consumers/metrics/metrics-retention.ts';
import { DashboardFeed } from '../dashboard-feed/dashboard-feed.ts';
import { eventObserver } from '../dashboard-feed/event-observer.ts';
import { LiveWindow } from '../dashboard-feed/live-window.ts';
import { RecentErrors } from '../dashboard-feed/recent-errors.ts';
import { ValidationError } from '../errors.ts';
import { LedgerQuery } from '../ledger/ledger-query.ts';
import type { EventLoopHealth } from '../prometheus/event-loop-health.ts';
import { HttpRequestMetrics } from '../prometheus/http-request-metrics.ts';
import type { ModelRegistry } from '../registry/model-registry.ts';
import { ClientErrors } from './client-errors.ts';
import authentication from './plugins/authentication.ts';
import closingGuard from './plugins/closing-guard.ts';
import errorHandler, { errorBody, toAppError } from './plugins/error-handler.ts';
import openapi from './plugins/openapi.ts';
import prometheusExposition from './plugins/prometheus-exposition.ts';
import rateLimit from './plugins/rate-limit.ts';
import requestMetrics from './plugins/request-metrics.ts';
import telemetry from './plugins/telemetry.ts';
import analyticsRoutes from './routes/analytics.ts';
import auditRoutes from './routes/audit.ts';
import dashboardRoutes from './routes/dashboard.ts';
import dlqRoutes from './routes/dlq.ts';
import eventSchemaRoutes from './routes/event-schemas.ts';
import healthRoutes from './routes/health.ts';
import ledgerRoutes from './routes/ledger.ts';
import metricsRoutes from './routes/metrics.ts';
import modelRoutes from './routes/models.ts';
import selfTestRoutes from './routes/self-test.ts';
import { schemaCompilers } from './schema-compilers.ts';
import { fastifyServerOptions, type ServerLimits } from './server-limits.ts';

/**
 * Why a body Fastify's JSON parser refused is refused, when it is valid JSON: it holds a `__proto__` key
 * (or `constructor.prototype`), refused against prototype poisoning. Fastify reports both as "not valid
 * JSON", which sends the client looking for a syntax error that is not there.
 */
function prototypeKeyRefusal(body: string): ValidationError | undefined {
  try {
    JSON.parse(body);
  } catch {
    return undefined;
  }
  return new ValidationError(
    'body',
    'body must not contain a "__proto__" key or a "constructor" key holding "prototype" ' +
      '(refused against prototype poisoning)',
  );
}

/** Request bodies above this size get 413. */
export const BODY_LIMIT_BYTES = 64 * 1024;

export interface AppDependencies {
  pool: pg.Pool;
  registry: ModelRegistry;
  apiKeys: ApiKeyStore;
  /** Where every request's event goes; none when telemetry is off. */
  bus?: EventBus | undefined;
  queues?: QueueInspector | undefined;
  /** The dead-letter archive behind /dlq (admin only). */
  dlq: DlqService;
  /** The process's Prometheus registry: served on /metrics/prometheus, and gets the request histogram. */
  metrics?: Registry | undefined;
  /** Bytes GET /metrics's cache of closed periods may hold. @default its share of CACHE_MAX_BYTES's default */
  metricsCacheMaxBytes?: number;
  /** The threads' event-loop delay and utilisation, for GET /health and the dashboard. */
  eventLoop?: EventLoopHealth | undefined;
}

export interface AppOptions {
  /** A pino logger; none when absent. */
  logger?: FastifyBaseLogger;
  /** Requests per API key per minute; 0 disables. @default 0 */
  rateLimitPerMinute?: number;
  /** Requests without a valid API key per client address per minute; 0 disables. @default 0 */
  rateLimitKeylessPerMinute?: number;
  /** Trust X-Forwarded-For. @default false */
  trustProxy?: boolean;
  /** What an event stores of the client's IP address. @default 'full' */
  eventIpAddress?: IpAddressMode;
  /** Key of the HMAC of `eventIpAddress: 'hashed'`; '' draws a random one. @default '' */
  eventIpHashKey?: string;
  /** Bearer token a scrape of the metrics must present; '' leaves them open. @default '' */
  metricsScrapeToken?: string;
  /** Days of metrics rollups kept: GET /metrics refuses ranges reaching further back. @default 400 */
  metricsRollupRetentionDays?: number;
  /** Timeouts and the connection cap of the HTTP server. @default Node's and Fastify's own (none of them low) */
  serverLimits?: ServerLimits;
}

export async function buildApp(deps: AppDependencies, options: AppOptions = {}): Promise<FastifyInstance> {
  const clientErrors = new ClientErrors(deps.metrics);
  const app = Fastify({
    ...(options.serverLimits === undefined ? {} : fastifyServerOptions(options.serverLimits)),
    // What Node's parser refuses (and the request timeouts) is answered in the API's error format.
    clientErrorHandler: clientErrors.handleClientError,
    ...(options.logger === undefined ? { logger: false } : { loggerInstance: options.logger }),
    // The telemetry bus records every request; a log line per request would double that cost.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    // model_id is up to 128 characters, and a '/' in it arrives percent-encoded as 3.
    routerOptions: { maxParamLength: 3 * 128 },
    trustProxy: options.trustProxy ?? false,
    // closing-guard answers requests that arrive while draining, in the API's error format.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Errors the router raises before a route is chosen get the same error format as all others.
    frameworkErrors: (error, _request, reply: FastifyReply) => {
      const appError = toAppError(error);
      reply.code(appError.statusCode).send(errorBody(appError));
    },
  });
  clientErrors.attach(app.server);
  const maxConnections = options.serverLimits?.maxConnections ?? 0;
  if (maxConnections > 0) app.server.maxConnections = maxConnections;
  app.setValidatorCompiler(schemaCompilers());

  // JSON is the only body this API takes: anything else, text/plain included, is 415.
  app.removeContentTypeParser('text/plain');
  // An empty body with a JSON content type (curl -X POST -H 'content-type: application/json') is "no
  // body", which the route's schema then judges, rather than a parse error.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined);
    parseJson(request, body as string, (error, parsed) => {
      if (error === null) return done(null, parsed);
      done(prototypeKeyRefusal(body as string) ?? error, undefined);
    });
  });

  // What the API answers, second by second, for the live dashboard: in memory, no query per viewer.
  const liveWindow = new LiveWindow();
  const recentErrors = new RecentErrors();
  const ledger = new LedgerQuery(deps.pool);
  const bus = deps.bus;
  const queues = deps.queues;
  const eventLoop = deps.eventLoop;
  const feed = new DashboardFeed({
    window: liveWindow,
    errors: recentErrors,
    busStatus: bus === undefined ? undefined : () => bus.status(),
    publishLatency: bus === undefined ? undefined : (nowMs) => bus.publishLatency.recent(nowMs),
    eventLoop: eventLoop === undefined ? undefined : () => eventLoop.snapshot(),
    queues: queues === undefined ? undefined : () => queues.report(),
    pingDatabase: () => deps.pool.query('SELECT 1'),
    deadLetters: () => deps.dlq.count({}),
    ledger: (from, to) => ledger.summary({ from, to }),
  });

  await app.register(errorHandler);
  // Before the closing guard, so that even a request refused while draining has its correlation id.
  await app.register(telemetry, {
    bus: deps.bus,
    observe: eventObserver(liveWindow, recentErrors),
    clientAddress: clientAddressRecorder(options.eventIpAddress ?? 'full', options.eventIpHashKey ?? ''),
  });
  await app.register(closingGuard);
  await app.register(openapi);
  if (deps.metrics !== undefined) {
    // Before authentication and rate limiting: its onRequest hook answers a scrape of GET /metrics
    // before theirs run, whatever key the JSON /metrics route asks of its own clients.
    await app.register(prometheusExposition, {
      registry: deps.metrics,
      scrapeToken: options.metricsScrapeToken ?? '',
    });
    await app.register(requestMetrics, { metrics: HttpRequestMetrics.on(deps.metrics) });
  }
  await app.register(authentication, { apiKeys: deps.apiKeys });
  await app.register(rateLimit, {
    perMinute: options.rateLimitPerMinute ?? 0,
    keylessPerMinute: options.rateLimitKeylessPerMinute ?? 0,
    registry: deps.metrics,
  });
  await app.register(healthRoutes, {
    pool: deps.pool,
    bus: deps.bus,
    queues: deps.queues,
    eventLoop: deps.eventLoop,
  });
  await app.register(eventSchemaRoutes);
  await app.register(modelRoutes, { registry: deps.registry });
  await app.register(dlqRoutes, { dlq: deps.dlq });
  await app.register(auditRoutes, { pool: deps.pool });
  await app.register(analyticsRoutes, { analytics: new AnalyticsQuery(deps.pool) });
  await app.register(ledgerRoutes, { ledger });
  await app.register(dashboardRoutes, { feed });
  if (deps.bus !== undefined) await app.register(selfTestRoutes, { bus: deps.bus, pool: deps.pool });
  await app.register(metricsRoutes, {
    metrics: new MetricsQuery(deps.pool, { cache: { maxBytes: deps.metricsCacheMaxBytes } }),
    retentionDays: options.metricsRollupRetentionDays ?? METRICS_RETENTION_DEFAULTS.rollupRetentionDays,
  });
  return app;
}
