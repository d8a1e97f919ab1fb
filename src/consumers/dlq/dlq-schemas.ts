/**
 * TypeBox schemas of the dead-letter archive's API: they validate requests, serialise responses, type the
 * store and the CLI, and feed the OpenAPI document. No web framework here.
 */
import { type Static, type TSchema, Type } from 'typebox';

export const DLQ_LIMITS = {
  pageSizeMax: 200,
  pageSizeDefault: 50,
  cursorMaxLength: 512,
  /** Dead letters one replay takes at most, and its default. */
  replayMax: 10_000,
  replayMaxDefault: 1000,
  filterValueMaxLength: 256,
} as const;

const FilterText = (description: string) =>
  Type.String({ minLength: 1, maxLength: DLQ_LIMITS.filterValueMaxLength, description });

/** The filters shared by listing, replay and purge. */
export const deadLetterFilterFields = {
  event_type: Type.Optional(FilterText('Event type, e.g. model.updated')),
  model_id: Type.Optional(FilterText('The model the event is about')),
  error_type: Type.Optional(
    FilterText('Error type: the error code or class (e.g. POISON_MESSAGE), or DELIVERY_LIMIT'),
  ),
  queue: Type.Optional(FilterText('The queue the message failed in, e.g. audit.trail')),
  event_id: Type.Optional(FilterText('The event id (or AMQP message id)')),
  from: Type.Optional(
    Type.String({ format: 'date-time', description: 'Last failure at or after this time (ISO 8601)' }),
  ),
  to: Type.Optional(
    Type.String({ format: 'date-time', description: 'Last failure before this time (ISO 8601)' }),
  ),
};

export const DeadLetterFilter = Type.Object(deadLetterFilterFields, { additionalProperties: false });
export type DeadLetterFilterInput = Static<typeof DeadLetterFilter>;

export const DEAD_LETTER_STATES = ['dead', 'replayed'] as const;
export type DeadLetterState = (typeof DEAD_LETTER_STATES)[number];

export const DeadLetterListQuery = Type.Object(
  {
    ...deadLetterFilterFields,
    state: Type.Optional(
      Type.Enum(['dead', 'replayed', 'any'], {
        default: 'dead',
        description: 'dead (not replayed yet; the default), replayed, or any',
      }),
    ),
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: DLQ_LIMITS.pageSizeMax,
        default: DLQ_LIMITS.pageSizeDefault,
        description: 'Page size',
      }),
    ),
    cursor: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: DLQ_LIMITS.cursorMaxLength,
        description: 'next_cursor of the previous page',
      }),
    ),
  },
  { additionalProperties: false },
);
export type DeadLetterListInput = Static<typeof DeadLetterListQuery>;

export const DeadLetterIdParams = Type.Object({
  id: Type.String({ format: 'uuid', description: 'The dead letter id (its x-dead-letter-id header)' }),
});

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Timestamp = Type.String({ format: 'date-time' });

export const DeadLetterSummary = Type.Object({
  id: Type.String({ format: 'uuid' }),
  event_id: Nullable(Type.String()),
  event_type: Nullable(Type.String()),
  model_id: Nullable(Type.String()),
  correlation_id: Nullable(Type.String()),
  original_exchange: Nullable(Type.String()),
  original_routing_key: Nullable(Type.String()),
  original_queue: Nullable(Type.String({ description: 'The queue a replay republishes to' })),
  reason: Type.String({
    description: 'retries_exhausted, poison, delivery_limit (and other RabbitMQ reasons), or unknown',
  }),
  attempts: Type.Integer({ description: 'Failed attempts (x-attempts), or broker deliveries' }),
  error_type: Type.String(),
  error_message: Type.String(),
  first_failure_at: Timestamp,
  last_failure_at: Timestamp,
  received_at: Timestamp,
  content_bytes: Type.Integer(),
  state: Type.Enum(DEAD_LETTER_STATES),
  replayed_at: Type.Union([Timestamp, Type.Null()]),
  replayed_by: Nullable(Type.String()),
});
export type DeadLetterSummary = Static<typeof DeadLetterSummary>;

export const DeadLetterDetail = Type.Object({
  ...DeadLetterSummary.properties,
  error_stack: Nullable(Type.String()),
  content: Type.Object({
    encoding: Type.Enum(['utf8', 'base64'], { description: 'utf8 when the body is valid UTF-8' }),
    data: Type.String(),
  }),
  properties: Type.Record(Type.String(), Type.Unknown(), { description: 'AMQP properties but headers' }),
  headers: Type.Record(Type.String(), Type.Unknown(), {
    description: 'All headers, x-death included; byte arrays as {"$bytes": base64}',
  }),
  replay_operation_id: Type.Union([Type.Integer(), Type.Null()]),
});
export type DeadLetterDetail = Static<typeof DeadLetterDetail>;

export const DeadLetterPage = Type.Object({
  items: Type.Array(DeadLetterSummary),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'null on the last page' }),
});
export type DeadLetterPage = Static<typeof DeadLetterPage>;

export const ReplayBody = Type.Object(
  {
    ids: Type.Optional(
      Type.Array(Type.String({ format: 'uuid' }), {
        minItems: 1,
        maxItems: DLQ_LIMITS.replayMax,
        uniqueItems: true,
        description: 'Dead letters to replay; give ids or filter',
      }),
    ),
    filter: Type.Optional(
      Type.Object(deadLetterFilterFields, {
        additionalProperties: false,
        description: 'Replay the dead letters matching this ({} for all), oldest first',
      }),
    ),
    dry_run: Type.Optional(
      Type.Boolean({ default: false, description: 'Only report what would be replayed; move nothing' }),
    ),
    max: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: DLQ_LIMITS.replayMax,
        default: DLQ_LIMITS.replayMaxDefault,
        description: 'Dead letters taken by this call, at most',
      }),
    ),
  },
  { additionalProperties: false },
);
export type ReplayInput = Static<typeof ReplayBody>;

export const SKIP_REASONS = [
  'not_found',
  'already_replayed',
  'not_replayable',
  'unroutable',
  'busy',
] as const;

export const ReplayResultSchema = Type.Object({
  operation_id: Type.Integer({ description: 'The record of this replay in dlq_operations' }),
  matched: Type.Integer({ description: 'Dead letters (not yet replayed) the selection matched' }),
  replayed: Type.Integer({ description: 'Dead letters republished to their queue (0 in a dry run)' }),
  dry_run: Type.Boolean(),
  ids: Type.Array(Type.String({ format: 'uuid' }), {
    description: 'Dead letters republished (in a dry run: that would be)',
  }),
  skipped: Type.Array(
    Type.Object({
      id: Type.String({ format: 'uuid' }),
      reason: Type.Enum(SKIP_REASONS, {
        description:
          'not_found / already_replayed (ids only), not_replayable (no known original queue), ' +
          'unroutable (the broker had no such queue), busy (taken by a concurrent replay)',
      }),
    }),
  ),
});
export type ReplayResult = Static<typeof ReplayResultSchema>;
