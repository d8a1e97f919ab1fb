/**
 * What one API process grants a connection: time to send its request, time idle, and how many may be
 * open at once (issue 17, item 5: 1,000 POSTs announcing 60,000 bytes and sending a few were still open
 * after 203 s; partial headers took 84 s to get a 408).
 *
 * How Node applies them, which is what keeps the live dashboard's streams open:
 * - `requestTimeoutMs` and `headersTimeoutMs` run from a request's first byte until it has been received
 *   whole (headers, then body); a GET's clock stops at the end of its headers, so an hour-long
 *   /dashboard/stream response is not cut, and neither is a slow handler (a large DLQ replay).
 *   Node checks them every {@link CONNECTIONS_CHECKING_INTERVAL_MS}, so one fires up to that late.
 * - `connectionTimeoutMs` closes a socket with no traffic either way for that long: a stream writes a
 *   snapshot every second; a client that stops reading its response is dropped.
 * - `keepAliveTimeoutMs`: how long an idle keep-alive connection waits for its next request.
 * - `maxConnections`: over it, Node closes a new connection at once (counted in
 *   `telemetry_http_connections_refused_total`).
 */
export interface ServerLimits {
  /** Time to receive a whole request (headers and body), in milliseconds; 0: none. */
  requestTimeoutMs: number;
  /** Time to receive a request's headers, in milliseconds; at most `requestTimeoutMs`. */
  headersTimeoutMs: number;
  /** Time a socket may go without traffic either way, in milliseconds; 0: none. */
  connectionTimeoutMs: number;
  /** Time an idle keep-alive connection is kept for its next request, in milliseconds. */
  keepAliveTimeoutMs: number;
  /** Connections open at once; a new one over it is closed at once. 0: no cap. */
  maxConnections: number;
}

/** The limits an API process grants by default. */
export const SERVER_LIMIT_DEFAULTS: Readonly<ServerLimits> = {
  /** 10 s to send a whole request. */
  requestTimeoutMs: 10_000,
  /** 5 s to send the headers. */
  headersTimeoutMs: 5000,
  /** 60 s without traffic either way. */
  connectionTimeoutMs: 60_000,
  /** 5 s idle between two requests of a keep-alive connection. */
  keepAliveTimeoutMs: 5000,
  maxConnections: 4096,
};

/** How often Node looks for requests past their time, in milliseconds (its default is 30 s). */
export const CONNECTIONS_CHECKING_INTERVAL_MS = 1000;

/** Fastify's server options for these limits (Node refuses a headers timeout above the request timeout). */
export function fastifyServerOptions(limits: ServerLimits) {
  const headersTimeout =
    limits.requestTimeoutMs > 0
      ? Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs)
      : limits.headersTimeoutMs;
  return {
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.connectionTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: { headersTimeout, connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS },
  };
}
