/**
 * Requests refused before Fastify sees them — by Node's HTTP parser (an unknown method, a conflicting or
 * negative content-length, bare LF line endings, headers over the size limit), by the request timeouts,
 * or as CONNECT, which Node hands to a `connect` listener or else drops unanswered — get the API's error
 * format like every other refusal, and are counted by reason in `telemetry_http_client_errors_total`
 * (issue 17, item 8). No event is emitted: there is no request to describe, and a flood of garbage must
 * not become a flood of events.
 *
 * The reasons are a fixed set, whatever the client sends, so the counter cannot grow its series.
 */
import { type Server, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { Counter, type Registry } from 'prom-client';
import { AppError, type ErrorCode } from '../errors.ts';
import { errorBody } from './plugins/error-handler.ts';

export const CLIENT_ERRORS_METRIC = 'telemetry_http_client_errors_total';

export const CLIENT_ERROR_REASONS = [
  'timeout',
  'header_overflow',
  'invalid_method',
  'content_length',
  'line_ending',
  'malformed',
  'connect',
  'connection_cap',
] as const;
export type ClientErrorReason = (typeof CLIENT_ERROR_REASONS)[number];

interface Refusal {
  reason: ClientErrorReason;
  code: ErrorCode;
  message: string;
}

/** Node's (llhttp's) error code → what the client is told. */
function refusalOf(code: string | undefined): Refusal {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { reason: 'timeout', code: 'REQUEST_TIMEOUT', message: 'the request was not received in time' };
    case 'HPE_HEADER_OVERFLOW':
      return {
        reason: 'header_overflow',
        code: 'HEADERS_TOO_LARGE',
        message: 'the request headers are too large',
      };
    case 'HPE_INVALID_METHOD':
      return { reason: 'invalid_method', code: 'MALFORMED_REQUEST', message: 'unknown HTTP method' };
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return {
        reason: 'content_length',
        code: 'MALFORMED_REQUEST',
        message: 'content-length is invalid, repeated with different values, or sent with transfer-encoding',
      };
    case 'HPE_LF_EXPECTED':
    case 'HPE_CR_EXPECTED':
      return { reason: 'line_ending', code: 'MALFORMED_REQUEST', message: 'header lines must end with CRLF' };
    case 'HPE_INVALID_VERSION':
      // A bare LF after the request line lands here too: the parser wants CR right after the version.
      return {
        reason: 'line_ending',
        code: 'MALFORMED_REQUEST',
        message: 'the request line must be METHOD target HTTP/1.x, ending with CRLF',
      };
    default:
      return { reason: 'malformed', code: 'MALFORMED_REQUEST', message: 'the request is not valid HTTP/1.1' };
  }
}

function rawResponse(refusal: Refusal, headers: Record<string, string> = {}): string {
  const error = new AppError(refusal.code, refusal.message, { field: 'request' });
  const body = JSON.stringify(errorBody(error));
  const lines = [
    `HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode] ?? ''}`,
    'content-type: application/json; charset=utf-8',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

export class ClientErrors {
  readonly #counter: Counter<'reason'> | undefined;

  /** Counts on `registry` when given (one counter per registry, shared by the apps built on it). */
  constructor(registry: Registry | undefined) {
    if (registry === undefined) return;
    const existing = registry.getSingleMetric(CLIENT_ERRORS_METRIC) as Counter<'reason'> | undefined;
    this.#counter =
      existing ??
      new Counter({
        name: CLIENT_ERRORS_METRIC,
        help: 'Requests and connections refused before reaching a route (parser errors, timeouts, CONNECT, over the connection cap), by reason',
        labelNames: ['reason'],
        registers: [registry],
      });
    for (const reason of CLIENT_ERROR_REASONS) this.#counter.inc({ reason }, 0);
  }

  count(reason: ClientErrorReason): void {
    this.#counter?.inc({ reason });
  }

  /** Fastify's `clientErrorHandler`: answers in the API's format when the socket can still take it. */
  readonly handleClientError = (error: NodeJS.ErrnoException, socket: Duplex): void => {
    // A reset: nobody to answer, nothing the client did wrong.
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE' || socket.destroyed) return;
    const refusal = refusalOf(error.code);
    this.count(refusal.reason);
    // As Node itself: not over a response that has started (a timeout can fire while one is written).
    const response = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && response?.headersSent !== true) socket.end(rawResponse(refusal));
    else socket.destroy();
  };

  /** CONNECT (a proxy tunnel) is not served here: 405, where Node would close the socket unanswered. */
  readonly handleConnect = (_request: unknown, socket: Duplex): void => {
    this.count('connect');
    if (!socket.writable) return void socket.destroy();
    socket.end(
      rawResponse(
        {
          reason: 'connect',
          code: 'METHOD_NOT_ALLOWED',
          message: 'CONNECT is not served: this is not a proxy',
        },
        { allow: 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS' },
      ),
    );
  };

  /** Listens on `server`: CONNECT, and connections closed over `maxConnections`. */
  attach(server: Server): void {
    server.on('connect', this.handleConnect);
    server.on('drop', () => this.count('connection_cap'));
  }
}
