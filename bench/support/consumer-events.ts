/**
 * The events each consumer's queue receives, as the API emits them, for bench/consumers.ts:
 *   audit.trail       model.* (reads mostly, some lifecycle), filter.executed and api.error
 *   analytics.events  model.* and filter.executed
 *   logging.errors    api.error (404s mostly, some 400s, and 500s carrying a stack trace)
 *   metrics.updates   every event: the audit mix
 * Reads, filters and 404s come from bench/support/events.ts `apiEvent()` (the bus benchmarks' events:
 * about 1 KiB each, a fresh event_id and correlation id each, 1,000 model_ids over 8 vendors); lifecycle
 * events, 400s and 500s are built here the same way from test/support/event-examples.ts `exampleEvent()`.
 * Timestamps go forward 20 ms per event, so a long backlog spans some hours (analytics counts by hour).
 */
import { randomUUID } from 'node:crypto';
import { newEventId } from '../../src/bus/event-id.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { validateEvent } from '../../src/bus/event-validator.ts';
import { childTraceparent } from '../../src/bus/trace-context.ts';
import { exampleEvent } from '../../test/support/event-examples.ts';
import { apiEvent, type EmitCall, mixSequence } from './events.ts';
import { seedModel } from './seed-models.ts';

export type BenchedConsumer = 'audit' | 'analytics' | 'logging' | 'metrics';

type Kind =
  | 'model.queried'
  | 'model.registered'
  | 'model.updated'
  | 'model.deactivated'
  | 'filter.executed'
  | 'api.error 404'
  | 'api.error 400'
  | 'api.error 500';

/** The API's traffic, as the audit trail receives all of it (shares per 100). */
const ALL_KINDS: ReadonlyArray<readonly [Kind, number]> = [
  ['model.queried', 60],
  ['filter.executed', 20],
  ['api.error 404', 8],
  ['api.error 400', 1],
  ['api.error 500', 1],
  ['model.updated', 5],
  ['model.registered', 3],
  ['model.deactivated', 2],
];

/** Per consumer, the kinds of event in its queue and their shares (per 100). */
export const QUEUE_MIXES: Record<BenchedConsumer, ReadonlyArray<readonly [Kind, number]>> = {
  audit: ALL_KINDS,
  analytics: [
    ['model.queried', 66],
    ['filter.executed', 24],
    ['model.updated', 5],
    ['model.registered', 3],
    ['model.deactivated', 2],
  ],
  logging: [
    ['api.error 404', 80],
    ['api.error 400', 15],
    ['api.error 500', 5],
  ],
  // metrics.updates takes every event; api.request (health, docs) is left out as rare in real traffic.
  metrics: ALL_KINDS,
};

export const mixText = (consumer: BenchedConsumer): string =>
  QUEUE_MIXES[consumer].map(([kind, share]) => `${share}% ${kind}`).join(', ');

const USER_AGENT = 'openai-python/1.54.4 (linux; x86_64) httpx/0.27.2 CPython/3.12.7 registry-client/2.3.1';
const userId = (index: number) => `${index.toString(16).padStart(8, '0')}${'c5d6e7f8'.repeat(7)}`;

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

/** The model event `kind` (lifecycle) for event number `index`, in the shape of apiEvent's model.queried. */
function lifecycleEvent(
  kind: 'model.registered' | 'model.updated' | 'model.deactivated',
  index: number,
  nowMs: number,
): TelemetryEvent {
  const created = new Date(nowMs - 86_400_000 - (index % 1000) * 60_000).toISOString();
  const version = kind === 'model.registered' ? 1 : 2 + (index % 5);
  const model = {
    ...seedModel(index % 1000),
    is_active: kind !== 'model.deactivated',
    version,
    created_at: created,
    updated_at: kind === 'model.registered' ? created : new Date(nowMs).toISOString(),
  };
  const [method, route, code] =
    kind === 'model.registered'
      ? ['POST', '/models', 201]
      : kind === 'model.updated'
        ? ['PATCH', '/models/:model_id', 200]
        : ['POST', '/models/:model_id/deactivate', 200];
  const common = {
    event_id: newEventId(),
    timestamp: new Date(nowMs).toISOString(),
    correlation_id: randomUUID(),
    user_id: userId(index),
    sequence: version,
    metadata: {
      request_duration_ms: Math.round((2.1 + (index % 37) * 0.173) * 1000) / 1000,
      response_code: code,
      user_agent: USER_AGENT,
      ip_address: `10.${(index >> 8) & 255}.${index & 255}.${(index * 7) & 255}`,
      route,
      method,
      cache_hit: null,
    },
  };
  const data = kind === 'model.registered' ? model : { ...model, changed: true };
  return exampleEvent(kind, { ...common, data } as never) as TelemetryEvent;
}

/** A 400 or 500 api.error, from apiEvent's 404 with the fields a 400 or 500 has. */
function errorEvent(status: 400 | 500, index: number, nowMs: number): TelemetryEvent {
  const base = apiEvent('api.error', index, nowMs) as TelemetryEvent & {
    data: { model_id: string | null; field: string | null };
  };
  if (status === 400) {
    return {
      ...base,
      data: { model_id: null, field: 'context_window' },
      metadata: { ...base.metadata, route: '/models', method: 'POST', response_code: 400 },
      error: {
        type: 'VALIDATION_ERROR',
        message: 'body/context_window must be integer',
        stack_trace: null,
      },
    } as TelemetryEvent;
  }
  return {
    ...base,
    metadata: { ...base.metadata, response_code: 500, request_duration_ms: 30.5 + (index % 11) },
    error: {
      type: 'INTERNAL_ERROR',
      message: 'connection terminated unexpectedly',
      stack_trace: STACK_TRACE,
    },
  } as TelemetryEvent;
}

function eventOf(kind: Kind, index: number, nowMs: number): TelemetryEvent {
  switch (kind) {
    case 'model.queried':
    case 'filter.executed':
    case 'api.error 404':
      return apiEvent(kind === 'api.error 404' ? 'api.error' : kind, index, nowMs);
    case 'api.error 400':
      return errorEvent(400, index, nowMs);
    case 'api.error 500':
      return errorEvent(500, index, nowMs);
    default:
      return lifecycleEvent(kind, index, nowMs);
  }
}

/**
 * `count` distinct emit calls for `consumer`'s queue, oldest first (20 ms apart, ending now); every kind's
 * first events (the first `validate`) are checked against their schema.
 */
export function queueEmitCalls(
  consumer: BenchedConsumer,
  count: number,
  validate = 4096,
  endMs = Date.now(),
): { calls: EmitCall[]; byType: Record<string, number> } {
  const kinds = mixSequence(QUEUE_MIXES[consumer]);
  const calls: EmitCall[] = [];
  const byType: Record<string, number> = {};
  const startMs = endMs - count * 20;
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length] as Kind;
    const nowMs = startMs + i * 20;
    const event = eventOf(kind, i, nowMs);
    if (i < validate) {
      const validation = validateEvent(event);
      if (!validation.ok) throw new Error(`bench event ${kind} #${i} is not valid: ${validation.reason}`);
    }
    byType[event.event_type] = (byType[event.event_type] ?? 0) + 1;
    calls.push({ event, traceparent: childTraceparent(undefined), timestampMs: nowMs });
  }
  return { calls, byType };
}
