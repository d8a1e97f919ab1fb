/**
 * One valid, fully deterministic event of each type. The schema tests start from these and break one
 * field at a time, the bus tests publish them, and `scripts/generate-event-docs.ts` prints them as the
 * examples of `docs/events/README.md` and `docs/asyncapi.yaml` — so every documented example is checked
 * against its schema by the tests.
 */
import type { EventOf } from '../../src/bus/event-schemas.ts';
import { EVENT_TYPES, type EventType, SCHEMA_VERSION } from '../../src/bus/event-types.ts';
import type { Model } from '../../src/registry/model-schemas.ts';

/** Top-level fields to replace; a field given as `undefined` is removed. */
export type EventOverrides<T extends EventType> = { [K in keyof EventOf<T>]?: EventOf<T>[K] | undefined };

const TIMESTAMP = '2025-01-15T10:30:00.123Z';
const CREATED_AT = '2025-01-14T08:00:00.000Z';
/** SHA-256 of the API key 'example-key': user_id is a key's hash, never the key. */
const USER_ID = '4a1d1b8e0c4a3b3d5c0f2a35e4f3b8f7c9e7a1d2b6c5f4e3d2c1b0a9f8e7d6c5';

const model: Model = {
  model_id: 'openai/gpt-4-turbo',
  vendor_id: 'OpenAI',
  capability_tier: 'Tier_1',
  context_window: 128000,
  cost_in_per_mil: 10,
  cost_out_per_mil: 30,
  function_call_support: true,
  is_active: true,
  version: 1,
  created_at: CREATED_AT,
  updated_at: CREATED_AT,
};

const noError = { type: null, message: null, stack_trace: null };

const metadata = (method: string, route: string, responseCode: number, cacheHit: boolean | null = null) => ({
  request_duration_ms: 4.2,
  response_code: responseCode,
  user_agent: 'curl/8.5.0',
  ip_address: '127.0.0.1',
  route,
  method,
  cache_hit: cacheHit,
});

/** The fields every envelope shares; each type's event_id differs so examples never collide in a store. */
function common<T extends EventType>(type: T) {
  return {
    schema_version: SCHEMA_VERSION as typeof SCHEMA_VERSION,
    event_id: `0b3f6a1c-7d2e-4c5b-9a8f-${(EVENT_TYPES.indexOf(type) + 1).toString().padStart(12, '0')}`,
    event_type: type,
    timestamp: TIMESTAMP,
    source: 'api' as const,
    correlation_id: 'req-7f3c9a12',
    user_id: USER_ID,
  };
}

/**
 * `sequence` is typed loosely by the envelope's static type (it is `unknown` on every type), so the
 * builders state it themselves; the schema tests check that it is there exactly on model events.
 */
type Example<T extends EventType> = Omit<EventOf<T>, 'sequence'> & { sequence?: number };

const BUILDERS: { [T in EventType]: () => Example<T> } = {
  'model.registered': () => ({
    ...common('model.registered'),
    sequence: 1,
    data: model,
    metadata: metadata('POST', '/models', 201),
    error: noError,
  }),
  'model.updated': () => ({
    ...common('model.updated'),
    sequence: 2,
    data: { ...model, cost_in_per_mil: 5, version: 2, updated_at: TIMESTAMP, changed: true },
    metadata: metadata('PATCH', '/models/:model_id', 200),
    error: noError,
  }),
  'model.deactivated': () => ({
    ...common('model.deactivated'),
    sequence: 3,
    data: {
      ...model,
      cost_in_per_mil: 5,
      is_active: false,
      version: 3,
      updated_at: TIMESTAMP,
      changed: true,
    },
    metadata: metadata('POST', '/models/:model_id/deactivate', 200),
    error: noError,
  }),
  'model.queried': () => ({
    ...common('model.queried'),
    sequence: 1,
    data: model,
    metadata: metadata('GET', '/models/:model_id', 200, true),
    error: noError,
  }),
  'filter.executed': () => ({
    ...common('filter.executed'),
    data: {
      filters: { capability_tier: 'Tier_1', sort: 'model_id', limit: 50, cursor: false },
      result_count: 1,
      has_more: false,
    },
    metadata: metadata('GET', '/models', 200, false),
    error: noError,
  }),
  'api.error': () => ({
    ...common('api.error'),
    data: { model_id: 'openai/gpt-5', field: 'model_id' },
    metadata: metadata('GET', '/models/:model_id', 404),
    error: { type: 'MODEL_NOT_FOUND', message: "model 'openai/gpt-5' does not exist", stack_trace: null },
  }),
  'api.request': () => ({
    ...common('api.request'),
    user_id: null,
    data: {},
    metadata: metadata('GET', '/livez', 200),
    error: noError,
  }),
  'dlq.replayed': () => ({
    ...common('dlq.replayed'),
    source: 'admin' as const,
    data: {
      operation_id: 17,
      actor: 'api-key:6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
      dry_run: false,
      selection: { ids: null, filter: { model_id: 'openai/gpt-4-turbo', state: 'dead' }, max: 1000 },
      matched: 1,
      part: 1,
      dead_letters: [
        {
          id: '9d5e2f4a-1b3c-4d6e-8f7a-2b4c6d8e0f1a',
          event_id: '0b3f6a1c-7d2e-4c5b-9a8f-000000000002',
          event_type: 'model.updated',
          model_id: 'openai/gpt-4-turbo',
          queue: 'audit.trail',
        },
      ],
    },
    metadata: null,
    error: noError,
  }),
};

/** A fresh valid event of `type` (a new object each call, safe to mutate), with `overrides` applied. */
export function exampleEvent<T extends EventType>(type: T, overrides: EventOverrides<T> = {}): EventOf<T> {
  const event: Record<string, unknown> = { ...structuredClone(BUILDERS[type]()), ...overrides };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined) delete event[key];
  }
  return event as unknown as EventOf<T>;
}
