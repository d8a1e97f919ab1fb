/**
 * Telemetry events as the API emits them (src/http/plugins/telemetry.ts `requestEvent()`), for the bus
 * benchmarks: test/support/event-examples.ts `exampleEvent()` gives the shape, and the values that differ
 * per request are replaced: a fresh event id, correlation id and trace context each, one of 1,000 models
 * (seedModel), a real user agent and metadata, so a model.queried event and its spool record are about
 * 1 KiB, as behind GET /models/:id.
 */
import { randomUUID } from 'node:crypto';
import { newEventId } from '../../src/bus/event-id.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import type { EventType } from '../../src/bus/event-types.ts';
import { validateEvent } from '../../src/bus/event-validator.ts';
import { eventRecord, type OutboundMessage, toOutboundMessage } from '../../src/bus/outbound-message.ts';
import { ProducerSequences } from '../../src/bus/producer-sequence.ts';
import { childTraceparent } from '../../src/bus/trace-context.ts';
import { exampleEvent } from '../../test/support/event-examples.ts';
import { seedModel } from './seed-models.ts';

/** The kinds of event built here: the event types, and api.error also as a 400 and as a 500. */
export type MixType =
  | 'model.queried'
  | 'filter.executed'
  | 'api.request'
  | 'api.error'
  | 'api.error 400'
  | 'api.error 500'
  | 'model.registered'
  | 'model.updated'
  | 'model.deactivated';

/** What the read-heavy API sends: mostly model reads, some filters, other routes and errors (per 100). */
export const DEFAULT_MIX: ReadonlyArray<readonly [MixType, number]> = [
  ['model.queried', 60],
  ['filter.executed', 20],
  ['api.request', 10],
  ['api.error', 10],
];

/** A typical SDK user agent (the API keeps up to 512 characters of it). */
const USER_AGENT = 'openai-python/1.54.4 (linux; x86_64) httpx/0.27.2 CPython/3.12.7 registry-client/2.3.1';

/** A stack as the API's error handler records it for a 500 (a few hundred characters, ten frames). */
const STACK_TRACE = [
  'Error: connection terminated unexpectedly',
  '    at Connection.<anonymous> (/app/node_modules/pg/lib/client.js:132:73)',
  '    at Object.onceWrapper (node:events:634:28)',
  '    at Connection.emit (node:events:520:28)',
  '    at Socket.<anonymous> (/app/node_modules/pg/lib/connection.js:63:12)',
  '    at Socket.emit (node:events:520:28)',
  '    at TCP.<anonymous> (node:net:343:12)',
  '    at ModelRepository.findById (/app/src/registry/model-repository.ts:88:21)',
  '    at async ModelService.get (/app/src/registry/model-service.ts:54:19)',
  '    at async Object.<anonymous> (/app/src/http/routes/models.ts:121:20)',
].join('\n');

const LIFECYCLE = {
  'model.registered': ['POST', '/models', 201],
  'model.updated': ['PATCH', '/models/:model_id', 200],
  'model.deactivated': ['POST', '/models/:model_id/deactivate', 200],
} as const;

/** One event of `kind` as the API would emit it for request number `index`, at `nowMs`. */
export function apiEvent(kind: MixType, index: number, nowMs: number): TelemetryEvent {
  const model = seedModel(index % 1000);
  const created = new Date(nowMs - 86_400_000 - (index % 1000) * 60_000).toISOString();
  // A 64-hex user id, as the API derives from the key's hash.
  const userId = `${index.toString(16).padStart(8, '0')}${'c5d6e7f8'.repeat(7)}`;
  const common = {
    event_id: newEventId(),
    timestamp: new Date(nowMs).toISOString(),
    correlation_id: randomUUID(),
    user_id: userId,
  };
  const readMs = Math.round((0.4 + (index % 37) * 0.091) * 1000) / 1000;
  const metadata = (method: string, route: string, code: number, cacheHit: boolean | null, ms = readMs) => ({
    request_duration_ms: ms,
    response_code: code,
    user_agent: USER_AGENT,
    ip_address: `10.${(index >> 8) & 255}.${index & 255}.${(index * 7) & 255}`,
    route,
    method,
    cache_hit: cacheHit,
  });
  const error = (type: string, message: string, stack_trace: string | null = null) => ({
    type,
    message,
    stack_trace,
  });
  const notFound = {
    data: { model_id: model.model_id, field: 'model_id' },
    error: error('MODEL_NOT_FOUND', `model '${model.model_id}' does not exist`),
  };
  const event = (type: EventType, overrides: object) =>
    exampleEvent(type, { ...common, ...overrides } as never) as TelemetryEvent;
  switch (kind) {
    case 'model.queried': {
      const version = 1 + (index % 5);
      return event(kind, {
        sequence: version,
        data: { ...model, version, created_at: created, updated_at: created },
        metadata: metadata('GET', '/models/:model_id', 200, index % 20 !== 0),
      });
    }
    case 'filter.executed': {
      const { vendor_id, capability_tier } = model;
      return event(kind, {
        data: {
          filters: {
            vendor_id,
            capability_tier,
            is_active: true,
            sort: '-context_window',
            limit: 50,
            cursor: index % 4 === 0,
          },
          result_count: index % 51,
          has_more: index % 3 === 0,
        },
        metadata: metadata('GET', '/models', 200, index % 2 === 0),
      });
    }
    case 'api.request':
      return event(kind, { user_id: null, metadata: metadata('GET', '/health', 200, null) });
    case 'api.error':
      return event(kind, { ...notFound, metadata: metadata('GET', '/models/:model_id', 404, null) });
    case 'api.error 400':
      return event('api.error', {
        data: { model_id: null, field: 'context_window' },
        metadata: metadata('POST', '/models', 400, null),
        error: error('VALIDATION_ERROR', 'body/context_window must be integer'),
      });
    case 'api.error 500':
      return event('api.error', {
        ...notFound,
        metadata: metadata('GET', '/models/:model_id', 500, null, 30.5 + (index % 11)),
        error: error('INTERNAL_ERROR', 'connection terminated unexpectedly', STACK_TRACE),
      });
    default: {
      const version = kind === 'model.registered' ? 1 : 2 + (index % 5);
      const [method, route, code] = LIFECYCLE[kind];
      const data = {
        ...model,
        is_active: kind !== 'model.deactivated',
        version,
        created_at: created,
        updated_at: kind === 'model.registered' ? created : common.timestamp,
      };
      return event(kind, {
        sequence: version,
        data: kind === 'model.registered' ? data : { ...data, changed: true },
        metadata: metadata(method, route, code, null, Math.round((2.1 + (index % 37) * 0.173) * 1000) / 1000),
      });
    }
  }
}

/** The kind of item number `index` in a mix: a fixed interleaving (per 100 items) of the mix's shares. */
export function mixSequence<T>(mix: ReadonlyArray<readonly [T, number]>, length = 100): T[] {
  const total = mix.reduce((sum, [, share]) => sum + share, 0);
  const sequence: T[] = [];
  const credit = mix.map(() => 0);
  for (let i = 0; i < length; i++) {
    // Smooth weighted round-robin: spreads each type evenly instead of in blocks.
    let best = 0;
    mix.forEach(([, share], k) => {
      credit[k] = (credit[k] as number) + share;
      if ((credit[k] as number) > (credit[best] as number)) best = k;
    });
    credit[best] = (credit[best] as number) - total;
    sequence.push((mix[best] as readonly [T, number])[0]);
  }
  return sequence;
}

/** What `EventBus.emit()` is called with for one request. */
export interface EmitCall {
  event: TelemetryEvent;
  traceparent: string;
  timestampMs: number;
}

/**
 * `count` distinct emit calls following `kinds` (cycled), so no layer can profit from repeated data; the
 * first `validate` (all by default) are checked against their schema. The last is at `endMs`, each
 * `stepMs` after the one before.
 */
export function buildEmitCalls(
  count: number,
  kinds: readonly MixType[],
  validate = Number.POSITIVE_INFINITY,
  endMs = Date.now(),
  stepMs = 0,
): EmitCall[] {
  const calls: EmitCall[] = [];
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length] as MixType;
    const timestampMs = endMs - (count - 1 - i) * stepMs;
    const event = apiEvent(kind, i, timestampMs);
    const validation = i < validate ? validateEvent(event) : { ok: true as const };
    if (!validation.ok) throw new Error(`bench event ${kind} #${i} is not valid: ${validation.reason}`);
    calls.push({ event, traceparent: childTraceparent(undefined), timestampMs });
  }
  return calls;
}

/** What `eventRecord()` returns, and `EventBus.emit()` hands to `Spool.append()`. */
export type SpoolRecordText = ReturnType<typeof eventRecord>;

/** The producer the records below are stamped as, as one API process stamps what it emits. */
const producer = new ProducerSequences();

/** The spool record `EventBus.emit()` writes for a call, byte for byte; each takes its type's next number. */
export function recordOf(call: EmitCall): SpoolRecordText {
  const stamp = { producer: producer.producer, sequence: producer.claim(call.event.event_type) };
  return eventRecord(call.event, call.traceparent, call.timestampMs, stamp);
}

/** The record's bytes as the spool stores them (UTF-8), as the publisher reads them back. */
export function recordBytes(record: Buffer | string): Buffer {
  return typeof record === 'string' ? Buffer.from(record, 'utf8') : record;
}

/** The message the publisher sends for a call: its spool record read back. */
export const messageOf = (call: EmitCall): OutboundMessage => toOutboundMessage(recordBytes(recordOf(call)));
