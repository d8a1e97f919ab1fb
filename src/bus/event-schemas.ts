/**
 * The event envelope and one JSON Schema per event type, in TypeBox: they type the code that builds
 * events, validate every event in the tests and in the consumers, and are exported to `docs/events/` and
 * served at `GET /schemas/events` (a test keeps the files in step).
 */
import { type Static, type TSchema, Type } from 'typebox';
import { MODEL_ID_PATTERN, ModelFilterQuery, ModelSchema } from '../registry/model-schemas.ts';
import { EVENT_SOURCES, EVENT_TYPES, type EventType, SCHEMA_VERSION } from './event-types.ts';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

/** Visible ASCII only, so it travels safely in AMQP properties, log lines and headers. */
export const CORRELATION_ID_PATTERN = '^[\\x21-\\x7e]{1,128}$';

const Metadata = Type.Object(
  {
    request_duration_ms: Type.Number({
      minimum: 0,
      description: 'Time from the request arriving to its response being ready, in milliseconds',
    }),
    response_code: Type.Integer({ minimum: 100, maximum: 599 }),
    user_agent: Nullable(Type.String({ maxLength: 512, description: 'Truncated to 512 characters' })),
    ip_address: Type.String({ maxLength: 64 }),
    route: Nullable(
      Type.String({ maxLength: 256, description: 'Route template, e.g. /models/:model_id; null if none' }),
    ),
    method: Type.String({ maxLength: 16 }),
    cache_hit: Nullable(Type.Boolean({ description: 'Whether a read was served from cache; null if none' })),
  },
  { additionalProperties: false },
);

const NoError = Type.Object(
  { type: Type.Null(), message: Type.Null(), stack_trace: Type.Null() },
  { additionalProperties: false, description: 'All null: the request succeeded' },
);

/** Stack traces are cut to this many characters so one event stays small. */
export const STACK_TRACE_MAX_LENGTH = 8192;

const ErrorInfo = Type.Object(
  {
    type: Type.String({ maxLength: 64, description: 'The error code of the response, e.g. MODEL_NOT_FOUND' }),
    message: Type.String({ maxLength: 1024 }),
    stack_trace: Nullable(
      Type.String({
        maxLength: STACK_TRACE_MAX_LENGTH,
        description: 'For 5xx only: the stack of the underlying failure',
      }),
    ),
  },
  { additionalProperties: false },
);

function commonProperties<T extends EventType>(eventType: T) {
  return {
    schema_version: Type.Literal(SCHEMA_VERSION),
    // Only the canonical lower-case form: ajv's uuid format also takes `urn:uuid:…`, which the uuid
    // columns refuse (a retried failure rather than a poison message), and an id spelt in two cases would
    // be two ids to the text columns that de-duplicate.
    event_id: Type.String({
      format: 'uuid',
      pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
      description: 'A UUID, lower case, without a urn:uuid: prefix',
    }),
    event_type: Type.Literal(eventType),
    timestamp: Type.String({
      format: 'date-time',
      pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$',
      description: 'When the event was emitted: ISO-8601 UTC with milliseconds',
    }),
    source: Type.Enum(EVENT_SOURCES),
    correlation_id: Type.String({
      pattern: CORRELATION_ID_PATTERN,
      description: 'x-correlation-id of the request (or generated), echoed in its response',
    }),
    user_id: Nullable(
      Type.String({
        pattern: '^[0-9a-f]{64}$',
        description: 'SHA-256 of the API key (never the key); null for an unauthenticated request',
      }),
    ),
  };
}

function schemaOptions(eventType: EventType, description: string) {
  return {
    $id: `https://telemetry-bus.dev/schemas/events/v${SCHEMA_VERSION}/${eventType}.json`,
    title: eventType,
    description,
    additionalProperties: false,
  };
}

function envelope<T extends EventType, D extends TSchema, E extends TSchema>(
  eventType: T,
  description: string,
  data: D,
  error: E,
) {
  return Type.Object(
    { ...commonProperties(eventType), data, metadata: Metadata, error },
    schemaOptions(eventType, description),
  );
}

/** Model events add `sequence`: the model's version, so a consumer can check it sees them in order. */
function modelEnvelope<T extends EventType, D extends TSchema>(eventType: T, description: string, data: D) {
  return Type.Object(
    {
      ...commonProperties(eventType),
      sequence: Type.Integer({
        minimum: 1,
        description: "The model's version after this event: per model, it grows with every change",
      }),
      data,
      metadata: Metadata,
      error: NoError,
    },
    schemaOptions(eventType, description),
  );
}

const ModelChange = Type.Object(
  {
    ...ModelSchema.properties,
    changed: Type.Boolean({
      description: 'False when the request changed nothing (same values, idempotent)',
    }),
  },
  { additionalProperties: false },
);

const FilterData = Type.Object(
  {
    filters: Type.Object(
      { ...ModelFilterQuery.properties, cursor: Type.Optional(Type.Boolean()) },
      {
        additionalProperties: false,
        description: 'The query parameters as applied (defaults filled in); cursor says if one was given',
      },
    ),
    result_count: Type.Integer({ minimum: 0 }),
    has_more: Type.Boolean(),
  },
  { additionalProperties: false },
);

const ErrorData = Type.Object(
  {
    model_id: Nullable(
      Type.String({
        maxLength: 128,
        pattern: MODEL_ID_PATTERN,
        description: 'The model the request named, if it is a valid model id',
      }),
    ),
    field: Nullable(Type.String({ maxLength: 256, description: 'The invalid input field, for 400s' })),
  },
  { additionalProperties: false },
);

/** Dead letters listed in one `dlq.replayed` event, at most: a replay is recorded in parts this big. */
export const DLQ_REPLAYED_MAX_DEAD_LETTERS = 1000;

const ReplayedDeadLetter = Type.Object(
  {
    id: Type.String({ format: 'uuid', description: 'The dead letter (GET /dlq/:id)' }),
    event_id: Nullable(Type.String({ maxLength: 256, description: 'The event it holds, if it has one' })),
    event_type: Nullable(Type.String({ maxLength: 256 })),
    model_id: Nullable(Type.String({ maxLength: 256 })),
    queue: Type.String({ maxLength: 256, description: 'The queue it failed in, and is republished to' }),
  },
  { additionalProperties: false },
);

const DlqReplayedData = Type.Object(
  {
    operation_id: Type.Integer({
      minimum: 1,
      description: 'The replay in dlq_operations; every part of one replay carries the same',
    }),
    actor: Type.String({
      maxLength: 512,
      description:
        "Who replayed: 'api-key:<key id>' (user_id is then the key's SHA-256) or 'cli:<os user>@<host>'",
    }),
    dry_run: Type.Boolean({ description: 'True: nothing was republished; dead_letters lists what would be' }),
    selection: Type.Object(
      {
        ids: Nullable(
          Type.Integer({
            minimum: 1,
            description:
              'Dead letters asked for by id (the list is in dlq_operations.selection); null for a filter',
          }),
        ),
        filter: Nullable(
          Type.Object(
            {
              event_type: Type.Optional(Type.String({ maxLength: 256 })),
              model_id: Type.Optional(Type.String({ maxLength: 256 })),
              error_type: Type.Optional(Type.String({ maxLength: 256 })),
              queue: Type.Optional(Type.String({ maxLength: 256 })),
              event_id: Type.Optional(Type.String({ maxLength: 256 })),
              from: Type.Optional(Type.String({ format: 'date-time' })),
              to: Type.Optional(Type.String({ format: 'date-time' })),
              state: Type.Optional(Type.String({ maxLength: 16 })),
            },
            { additionalProperties: false, description: 'The filter asked for; null when by ids' },
          ),
        ),
        max: Type.Integer({ minimum: 1, description: 'Dead letters the replay could take at most' }),
      },
      { additionalProperties: false },
    ),
    matched: Type.Integer({ minimum: 0, description: 'Dead letters the selection matched when it started' }),
    part: Type.Integer({
      minimum: 1,
      description:
        'A replay is recorded in parts, 1, 2, …: one per chunk the broker confirmed (before the chunk is marked ' +
        'replayed), so what was republished is recorded even if the replay stops half-way',
    }),
    dead_letters: Type.Array(ReplayedDeadLetter, {
      maxItems: DLQ_REPLAYED_MAX_DEAD_LETTERS,
      description: 'Republished in this part (a dry run: would be); empty for a replay that found none',
    }),
  },
  { additionalProperties: false },
);

/**
 * An operator's action, not a request: no `metadata` (the request that asked, if any, has its own
 * `api.request` event with the same correlation_id).
 */
function adminEnvelope<T extends EventType, D extends TSchema>(eventType: T, description: string, data: D) {
  return Type.Object(
    {
      ...commonProperties(eventType),
      data,
      metadata: Type.Null({ description: 'Always null: an operator action is not a request' }),
      error: NoError,
    },
    schemaOptions(eventType, description),
  );
}

export const EVENT_SCHEMAS = {
  'model.registered': modelEnvelope('model.registered', 'A model was registered (POST /models)', ModelSchema),
  'model.updated': modelEnvelope(
    'model.updated',
    'A model was updated (PATCH /models/:model_id)',
    ModelChange,
  ),
  'model.deactivated': modelEnvelope(
    'model.deactivated',
    'A model was deactivated (POST /models/:model_id/deactivate)',
    ModelChange,
  ),
  'model.queried': modelEnvelope('model.queried', 'A model was read (GET /models/:model_id)', ModelSchema),
  'filter.executed': envelope('filter.executed', 'Models were filtered (GET /models)', FilterData, NoError),
  'api.error': envelope('api.error', 'A request was answered with a 4xx or 5xx status', ErrorData, ErrorInfo),
  'api.request': envelope(
    'api.request',
    'A request to any other route (health, docs, schemas, …) succeeded',
    Type.Object({}, { additionalProperties: false }),
    NoError,
  ),
  'dlq.replayed': adminEnvelope(
    'dlq.replayed',
    'Dead letters were replayed into their queues (POST /dlq/replay, telemetry-bus dlq replay), or a dry run said which would be',
    DlqReplayedData,
  ),
} as const satisfies Record<EventType, TSchema>;

type Schemas = typeof EVENT_SCHEMAS;
export type EventOf<T extends EventType> = Static<Schemas[T]>;
export type TelemetryEvent = { [T in EventType]: EventOf<T> }[EventType];
export type EventMetadata = Static<typeof Metadata>;
export type FilterEventData = Static<typeof FilterData>;
export type DlqReplayedData = Static<typeof DlqReplayedData>;

/** All schemas as plain JSON Schema documents, keyed by event type. */
export function eventJsonSchemas(): Record<EventType, Record<string, unknown>> {
  return Object.fromEntries(
    EVENT_TYPES.map((type) => [type, JSON.parse(JSON.stringify(EVENT_SCHEMAS[type]))]),
  ) as Record<EventType, Record<string, unknown>>;
}
