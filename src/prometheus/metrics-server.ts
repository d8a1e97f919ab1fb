/**
 * A minimal HTTP endpoint for a process without the API (`telemetry-bus worker`): `GET /metrics` serves
 * the registry (OpenMetrics when preferred, else Prometheus text), `GET /livez` answers 200 for container
 * health checks, anything else 404. Plain `node:http`: a worker does not load the web application.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { chooseExpositionFormat, renderExposition, scrapeAllowed } from './exposition.ts';

export interface MetricsServerOptions {
  registry: Registry;
  /** Interface to bind. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Bearer token scrapes must present; '' leaves the endpoint open. @default '' */
  scrapeToken?: string;
}

export interface MetricsServer {
  /** Base URL, e.g. `http://127.0.0.1:9464`. */
  url: string;
  close(): Promise<void>;
}

function json(status: number, body: unknown): [number, Record<string, string>, string] {
  return [status, { 'content-type': 'application/json; charset=utf-8' }, JSON.stringify(body)];
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const token = options.scrapeToken ?? '';
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    const reply = ([status, headers, body]: [number, Record<string, string>, string]) => {
      response.writeHead(status, headers);
      response.end(request.method === 'HEAD' ? undefined : body);
    };
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      reply(json(405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'only GET' } }));
      return;
    }
    if (path === '/livez') {
      reply(json(200, { status: 'ok' }));
      return;
    }
    if (path !== '/metrics') {
      reply(json(404, { error: { code: 'ROUTE_NOT_FOUND', message: 'GET /metrics or /livez' } }));
      return;
    }
    if (!scrapeAllowed(request.headers.authorization, token)) {
      reply(
        json(401, {
          error: {
            code: 'UNAUTHENTICATED',
            message: 'the metrics need an Authorization: Bearer token',
            field: 'authorization',
          },
        }),
      );
      return;
    }
    renderExposition(options.registry, chooseExpositionFormat(request.headers.accept)).then(
      ({ contentType, body }) =>
        reply([200, { 'content-type': contentType, 'cache-control': 'no-store' }, body]),
      () => reply(json(500, { error: { code: 'INTERNAL_ERROR', message: 'metrics collection failed' } })),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host.replace('0.0.0.0', '127.0.0.1').replace('[::]', '[::1]')}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
