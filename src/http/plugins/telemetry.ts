/**
 * One event per request, emitted when its outcome is known and before its response is written (the
 * `onSend` hook): a client that has its response knows the event is already in the spool.
 *
 * Routes say what happened (`request.telemetry`: the model registered, read, …); the error handler says
 * what went wrong (`request.appError`). Everything else — a 4xx/5xx from anywhere, a request to any other
 * route — is recognised here. The correlation id is taken from `x-correlation-id` (when it is a safe
 * token) or made up, and echoed on every response.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { redactApiKeys } from '../../auth/api-key.ts';
import type { EventBus } from '../../bus/event-bus.ts';
import { newEventId } from '../../bus/event-id.ts';
import {
  CORRELATION_ID_PATTERN,
  type EventMetadata,
  type FilterEventData,
  STACK_TRACE_MAX_LENGTH,
  type TelemetryEvent,
} from '../../bus/event-schemas.ts';
import { SCHEMA_VERSION } from '../../bus/event-types.ts';
import { redactApiKeysIn } from '../../bus/redact-event.ts';
import { childTraceparent } from '../../bus/trace-context.ts';
import type { AppError } from '../../errors.ts';
import { LIMITS, MODEL_ID_PATTERN, type Model } from '../../registry/model-schemas.ts';

/** What a route reports about its request, for its event. */
export type RequestTelemetry =
  | { type: 'model.registered'; model: Model }
  | { type: 'model.queried'; model: Model; cacheHit: boolean }
  | { type: 'model.updated' | 'model.deactivated'; model: Model; changed: boolean }
  | { type: 'filter.executed'; data: FilterEventData; cacheHit: boolean };

declare module 'fastify' {
  interface FastifyRequest {
    correlationId: string;
    telemetry: RequestTelemetry | undefined;
    /** Set by the error handler: the error this request is answered with. */
    appError: AppError | undefined;
    telemetryEmitted: boolean;
    /** performance.now() when onRequest ran; 0 for a request that skipped it. */
    telemetryStartedAt: number;
    /** The client's IP address as events store it (EVENT_IP_ADDRESS). */
    clientAddress: string;
  }
}

export interface TelemetryOptions {
  /** Where events go; none when telemetry is off. */
  bus: EventBus | undefined;
  /**
   * Sees every request's event as it is emitted (the live dashboard's in-process figures). Called even
   * when telemetry is off; it must be cheap and must not throw.
   */
  observe?: ((event: TelemetryEvent) => void) | undefined;
  /** What an event stores of the client's IP address (see ../../client-address.ts). @default as received */
  clientAddress?: ((address: string) => string) | undefined;
}

const CORRELATION_ID = new RegExp(CORRELATION_ID_PATTERN);
const MODEL_ID = new RegExp(MODEL_ID_PATTERN);

function validModelId(value: unknown): string | null {
  return typeof value === 'string' && value.length <= LIMITS.modelIdMaxLength && MODEL_ID.test(value)
    ? value
    : null;
}

/** The client's correlation id when it is a safe token (a key in it redacted, as in the event), else a new one. */
function correlationIdOf(request: FastifyRequest): string {
  const header = request.headers['x-correlation-id'];
  return typeof header === 'string' && CORRELATION_ID.test(header) ? redactApiKeys(header) : randomUUID();
}

/**
 * Time to answer, in ms. Measured here because Fastify's `reply.elapsedTime` is 0 unless the app has a
 * logger or an onResponse hook (an app built with `logger: false` — every test — had all durations 0).
 */
function durationMs(request: FastifyRequest, reply: FastifyReply): number {
  return request.telemetryStartedAt > 0 ? performance.now() - request.telemetryStartedAt : reply.elapsedTime;
}

const asReceived = (address: string) => address.slice(0, 64);

function metadataOf(request: FastifyRequest, reply: FastifyReply, cacheHit: boolean | null): EventMetadata {
  const userAgent = request.headers['user-agent'];
  return {
    request_duration_ms: Math.round(durationMs(request, reply) * 1000) / 1000,
    response_code: reply.statusCode,
    user_agent: userAgent === undefined ? null : userAgent.slice(0, 512),
    ip_address: request.clientAddress,
    route: request.routeOptions.url ?? null,
    method: request.method.slice(0, 16),
    cache_hit: cacheHit,
  };
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown; field?: unknown };
}

/** The code, message and field of an error response: from the error handler, else from the body. */
function errorOf(request: FastifyRequest, status: number, payload: unknown) {
  const appError = request.appError;
  if (appError !== undefined) {
    const failure = appError.cause instanceof Error ? appError.cause : appError;
    return {
      type: appError.code as string,
      message: appError.message,
      field: appError.field ?? null,
      stack: status >= 500 ? (failure.stack ?? null) : null,
    };
  }
  let body: ErrorBody = {};
  if (typeof payload === 'string') {
    try {
      body = JSON.parse(payload) as ErrorBody;
    } catch {
      // Not the API's error format: the status alone describes it.
    }
  }
  const error = body.error ?? {};
  return {
    type: typeof error.code === 'string' ? error.code : `HTTP_${status}`,
    message: typeof error.message === 'string' ? error.message : `HTTP ${status}`,
    field: typeof error.field === 'string' ? error.field : null,
    stack: null,
  };
}

/**
 * The request's event, from what the route, the error handler and the reply say, with every key-shaped
 * text in it redacted (see ../../bus/redact-event.ts): the one place the spool and every consumer get
 * their copy from.
 */
export function requestEvent(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  nowMs: number,
): TelemetryEvent {
  return redactApiKeysIn(unredactedEvent(request, reply, payload, nowMs));
}

function unredactedEvent(
  request: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  nowMs: number,
): TelemetryEvent {
  const base = {
    schema_version: SCHEMA_VERSION,
    event_id: newEventId(),
    timestamp: new Date(nowMs).toISOString(),
    source: 'api' as const,
    correlation_id: request.correlationId,
    user_id: request.principal?.userId ?? null,
  };
  const noError = { type: null, message: null, stack_trace: null };
  const status = reply.statusCode;
  if (status >= 400) {
    const error = errorOf(request, status, payload);
    const params = request.params as { model_id?: unknown } | undefined;
    const body = request.body as { model_id?: unknown } | undefined;
    return {
      ...base,
      event_type: 'api.error',
      data: {
        model_id: validModelId(params?.model_id) ?? validModelId(body?.model_id),
        field: error.field?.slice(0, 256) ?? null,
      },
      metadata: metadataOf(request, reply, null),
      error: {
        type: error.type.slice(0, 64),
        message: error.message.slice(0, 1024),
        stack_trace: error.stack?.slice(0, STACK_TRACE_MAX_LENGTH) ?? null,
      },
    };
  }
  const telemetry = request.telemetry;
  switch (telemetry?.type) {
    case undefined:
      return {
        ...base,
        event_type: 'api.request',
        data: {},
        metadata: metadataOf(request, reply, null),
        error: noError,
      };
    case 'model.registered':
      return {
        ...base,
        event_type: telemetry.type,
        sequence: telemetry.model.version,
        data: telemetry.model,
        metadata: metadataOf(request, reply, null),
        error: noError,
      };
    case 'model.queried':
      return {
        ...base,
        event_type: telemetry.type,
        sequence: telemetry.model.version,
        data: telemetry.model,
        metadata: metadataOf(request, reply, telemetry.cacheHit),
        error: noError,
      };
    case 'model.updated':
    case 'model.deactivated':
      return {
        ...base,
        event_type: telemetry.type,
        sequence: telemetry.model.version,
        data: { ...telemetry.model, changed: telemetry.changed },
        metadata: metadataOf(request, reply, null),
        error: noError,
      };
    case 'filter.executed':
      return {
        ...base,
        event_type: telemetry.type,
        data: telemetry.data,
        metadata: metadataOf(request, reply, telemetry.cacheHit),
        error: noError,
      };
  }
}

export default fp<TelemetryOptions>(
  async function telemetry(app: FastifyInstance, { bus, observe, clientAddress = asReceived }) {
    app.decorateRequest('correlationId', '');
    app.decorateRequest('telemetry', undefined);
    app.decorateRequest('appError', undefined);
    app.decorateRequest('telemetryEmitted', false);
    app.decorateRequest('telemetryStartedAt', 0);
    app.decorateRequest('clientAddress', '');

    // Callback-style hooks: they run on every request, and an async one costs a promise each time.
    app.addHook('onRequest', (request, reply, done) => {
      request.telemetryStartedAt = performance.now();
      request.correlationId = correlationIdOf(request);
      request.clientAddress = clientAddress(request.ip ?? '');
      reply.header('x-correlation-id', request.correlationId);
      done();
    });

    app.addHook('onSend', (request, reply, payload, done) => {
      // Errors the router raises before any route is chosen skip onRequest.
      if (request.correlationId === '') {
        request.correlationId = correlationIdOf(request);
        request.clientAddress = clientAddress(request.ip ?? '');
        reply.header('x-correlation-id', request.correlationId);
      }
      // A failing onSend hook sends again through the error handler: still one event per request.
      if ((bus !== undefined || observe !== undefined) && !request.telemetryEmitted) {
        request.telemetryEmitted = true;
        const now = Date.now();
        const event = requestEvent(request, reply, payload, now);
        if (bus !== undefined) {
          const header = request.headers.traceparent;
          const traceparent = childTraceparent(typeof header === 'string' ? header : undefined);
          bus.emit(event, traceparent, now);
        }
        observe?.(event);
      }
      done(null, payload);
    });
  },
  { name: 'telemetry', dependencies: ['error-handler'] },
);
