/**
 * Telemetry events as the API emits them (src/http/plugins/telemetry.ts `requestEvent()`), for the bus
 * benchmarks: a fresh event id, correlation id and trace context each, a realistic model, user agent and
 * metadata, so a model.queried event and its spool record are about 1 KiB, as they are behind GET
 * /models/:id. test/support/event-examples.ts `exampleEvent()` gives the shape; only the values that differ
 * per request are replaced. Every event built here is checked against its schema once, at build time.
 */
import { randomUUID } from 'node:crypto';
import { newEventId } from '../../src/bus/event-id.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { validateEvent } from '../../src/bus/event-validator.ts';
import { eventRecord } from '../../src/bus/outbound-message.ts';
import { ProducerSequences } from '../../src/bus/producer-sequence.ts';
import { childTraceparent } from '../../src/bus/trace-context.ts';
import { exampleEvent } from '../../test/support/event-examples.ts';
import { seedModel } from './seed-models.ts';

/** The types a mix is made of. */
export type MixType = 'model.queried' | 'filter.executed' | 'api.request' | 'api.error';

/** What the read-heavy API sends: mostly model reads, some filters, other routes and errors. */
export const DEFAULT_MIX: ReadonlyArray<readonly [MixType, number]> = [
  ['model.queried', 60],
  ['filter.executed', 20],
  ['api.request', 10],
  ['api.error', 10],
];

/** A typical SDK user agent (the API keeps up to 512 characters of it). */
const USER_AGENT = 'openai-python/1.54.4 (linux; x86_64) httpx/0.27.2 CPython/3.12.7 registry-client/2.3.1';

/** A 64-hex user id, as the API derives from the key's hash. */
const userId = (index: number) => `${index.toString(16).padStart(8, '0')}${'c5d6e7f8'.repeat(7)}`;

/** One event of `type` as the API would emit it for request number `index`, at `nowMs`. */
export function apiEvent(type: MixType, index: number, nowMs: number): TelemetryEvent {
  const model = seedModel(index % 1000);
  const { model_id: modelId, vendor_id: vendor } = model;
  const common = {
    event_id: newEventId(),
    timestamp: new Date(nowMs).toISOString(),
    correlation_id: randomUUID(),
    user_id: userId(index),
  };
  const metadata = (route: string, method: string, code: number, cacheHit: boolean | null) => ({
    request_duration_ms: Math.round((0.4 + (index % 37) * 0.091) * 1000) / 1000,
    response_code: code,
    user_agent: USER_AGENT,
    ip_address: `10.${(index >> 8) & 255}.${index & 255}.${(index * 7) & 255}`,
    route,
    method,
    cache_hit: cacheHit,
  });
  switch (type) {
    case 'model.queried': {
      const created = new Date(nowMs - 86_400_000 - (index % 1000) * 60_000).toISOString();
      const version = 1 + (index % 5);
      return exampleEvent('model.queried', {
        ...common,
        sequence: version,
        data: { ...model, version, created_at: created, updated_at: created },
        metadata: metadata('/models/:model_id', 'GET', 200, index % 20 !== 0),
      }) as TelemetryEvent;
    }
    case 'filter.executed':
      return exampleEvent('filter.executed', {
        ...common,
        data: {
          filters: {
            vendor_id: vendor,
            capability_tier: model.capability_tier,
            is_active: true,
            sort: '-context_window',
            limit: 50,
            cursor: index % 4 === 0,
          },
          result_count: index % 51,
          has_more: index % 3 === 0,
        },
        metadata: metadata('/models', 'GET', 200, index % 2 === 0),
      }) as TelemetryEvent;
    case 'api.request':
      return exampleEvent('api.request', {
        ...common,
        user_id: null,
        metadata: metadata('/health', 'GET', 200, null),
      }) as TelemetryEvent;
    case 'api.error':
      return exampleEvent('api.error', {
        ...common,
        data: { model_id: modelId, field: 'model_id' },
        metadata: metadata('/models/:model_id', 'GET', 404, null),
        error: { type: 'MODEL_NOT_FOUND', message: `model '${modelId}' does not exist`, stack_trace: null },
      }) as TelemetryEvent;
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
 * `count` distinct emit calls following `types` (cycled); the first `validate` of them (all by default)
 * are checked against their schema. Distinct objects and ids, so no layer can profit from repeated data.
 */
export function buildEmitCalls(
  count: number,
  types: readonly MixType[],
  validate = Number.POSITIVE_INFINITY,
  nowMs = Date.now(),
): EmitCall[] {
  const calls: EmitCall[] = [];
  for (let i = 0; i < count; i++) {
    const type = types[i % types.length] as MixType;
    const event = apiEvent(type, i, nowMs);
    if (i >= validate) {
      calls.push({ event, traceparent: childTraceparent(undefined), timestampMs: nowMs });
      continue;
    }
    const validation = validateEvent(event);
    if (!validation.ok) throw new Error(`bench event ${type} #${i} is not valid: ${validation.reason}`);
    calls.push({ event, traceparent: childTraceparent(undefined), timestampMs: nowMs });
  }
  return calls;
}

/** What `eventRecord()` returns, and `EventBus.emit()` hands to `Spool.append()`. */
export type SpoolRecordText = ReturnType<typeof eventRecord>;

/** The producer the records below are stamped as, as one API process stamps what it emits. */
const producer = new ProducerSequences();

/**
 * The spool record `EventBus.emit()` writes for a call: the same `eventRecord()` call
 * (src/bus/outbound-message.ts), byte for byte; each call takes the next number of its type.
 */
export function recordOf(call: EmitCall): SpoolRecordText {
  const { event } = call;
  return eventRecord(event, call.traceparent, call.timestampMs, {
    producer: producer.producer,
    sequence: producer.claim(event.event_type),
  });
}

/** The record's bytes as the spool stores them (UTF-8), as the publisher reads them back. */
export function recordBytes(record: Buffer | string): Buffer {
  return typeof record === 'string' ? Buffer.from(record, 'utf8') : record;
}
