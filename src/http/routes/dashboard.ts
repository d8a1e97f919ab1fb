/**
 * The live dashboard: `GET /dashboard` (a static page, public: it holds no data), its assets (uPlot is
 * served from node_modules, so the page works offline), and `GET /dashboard/stream`, Server-Sent Events
 * fed by the one shared {@link DashboardFeed} (reader key in `x-api-key`).
 *
 * The stream is a request like any other for the telemetry rule: its one event is emitted when the
 * stream opens (`onSend` runs before the headers go out), with the time it took to open, so an hour-long
 * stream does not skew the latency figures.
 *
 * Browser hardening (issue 17, item 10), on these routes only (the JSON API is not a page): a Content
 * Security Policy that lets the page load only its own files — no inline script or style, no eval, data
 * only from this origin — may not be framed (`frame-ancestors 'none'` and `X-Frame-Options: DENY`, against
 * clickjacking the replay button), and sends no referrer (the page's URL never leaves the browser).
 * test/integration/dashboard.test.ts fails on any CSP violation the page causes.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import fastifyHelmet from '@fastify/helmet';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { EVENT_TYPES } from '../../bus/event-types.ts';
import type { DashboardFeed } from '../../dashboard-feed/dashboard-feed.ts';

export interface DashboardRoutesOptions {
  feed: DashboardFeed;
  /** A client whose unsent data grows past this is dropped (it reconnects), in bytes. @default 1 MiB */
  maxBufferedBytes?: number;
  /** Delay a disconnected browser waits before reconnecting, in ms (the SSE `retry` field). @default 2000 */
  retryMs?: number;
}

const ASSETS = join(dirname(fileURLToPath(import.meta.url)), '..', 'dashboard');
const UPLOT = dirname(createRequire(import.meta.url).resolve('uplot'));
/** The uPlot files the page loads; nothing else of node_modules is reachable. */
const UPLOT_FILES = ['uPlot.iife.min.js', 'uPlot.min.css'] as const;

function frame(event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`;
}

const dashboardRoutes: FastifyPluginAsyncTypebox<DashboardRoutesOptions> = async (
  app,
  { feed, maxBufferedBytes = 1024 * 1024, retryMs = 2000 },
) => {
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        // The favicon is an empty data: URL; uPlot draws on canvas.
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        baseUri: ["'none'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        objectSrc: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Served over plain HTTP on 127.0.0.1 by default: HSTS is the TLS terminator's to send.
    strictTransportSecurity: false,
  });
  await app.register(fastifyStatic, {
    root: ASSETS,
    prefix: '/dashboard/assets/',
    // One route per file, made at start: a request can only ever reach these files.
    wildcard: false,
    index: false,
    cacheControl: true,
    maxAge: 60_000,
  });

  app.get(
    '/dashboard',
    {
      schema: {
        tags: ['dashboard'],
        summary: 'The live dashboard (HTML; data comes from /dashboard/stream)',
      },
    },
    (_request, reply) => reply.sendFile('index.html', ASSETS, { maxAge: 0 }),
  );

  for (const file of UPLOT_FILES) {
    app.get(`/dashboard/vendor/${file}`, { schema: { hide: true } }, (_request, reply) =>
      reply.sendFile(file, UPLOT, { maxAge: 3_600_000 }),
    );
  }

  const streams = new Set<PassThrough>();
  // Open streams would hold the HTTP server's close: end them first, so shutdown is not delayed.
  app.addHook('preClose', async () => {
    feed.stop();
    for (const stream of streams) stream.end();
  });

  app.get(
    '/dashboard/stream',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['dashboard'],
        summary: 'Live dashboard data as Server-Sent Events: `history` once, then a `snapshot` each second',
        description:
          'text/event-stream. `history`: the per-second traffic of the last 5 minutes. `snapshot` (every ' +
          'second): dependencies up or down, the last seconds of traffic (events by type, latency ' +
          'p50/p95/p99, 4xx/5xx), publisher, spool, queues, dead letters, loss ledger, recent errors. ' +
          'Figures read from PostgreSQL or the broker carry `stale` and `updated_at`.',
        security: [{ apiKey: [] }],
        // No response schema: the body is a stream, and errors (401, 403, 429) take the API's usual format.
        produces: ['text/event-stream'],
      },
    },
    (request, reply) => {
      const stream = new PassThrough();
      streams.add(stream);
      const unsubscribe = feed.subscribe((text) => {
        if (stream.writableLength > maxBufferedBytes) {
          // A client that does not read: drop it rather than buffer without end; it reconnects.
          stream.end();
          return;
        }
        stream.write(frame('snapshot', text));
      });
      const done = () => {
        unsubscribe();
        streams.delete(stream);
      };
      stream.on('close', done);
      request.raw.on('close', () => stream.destroy());
      stream.write(`retry: ${retryMs}\n\n`);
      stream.write(frame('history', JSON.stringify({ event_types: EVENT_TYPES, traffic: feed.history() })));
      stream.write(frame('snapshot', JSON.stringify(feed.snapshot())));
      return (
        reply
          .header('content-type', 'text/event-stream; charset=utf-8')
          .header('cache-control', 'no-cache, no-transform')
          // Proxies such as nginx would otherwise hold the events back in their buffer.
          .header('x-accel-buffering', 'no')
          .send(stream)
      );
    },
  );
};

export default dashboardRoutes;
