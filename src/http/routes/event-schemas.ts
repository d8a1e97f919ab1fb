/**
 * The JSON Schemas of the telemetry events, for consumers to validate what they read from the bus. Public:
 * they describe the bus, not the registry's data. The same documents are in `docs/events/`.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { eventJsonSchemas } from '../../bus/event-schemas.ts';
import { EVENT_TYPES, SCHEMA_VERSION } from '../../bus/event-types.ts';
import { errorResponses } from '../error-response.ts';

/**
 * Only the shape every event schema shares: describing the schema's own keywords here would make the
 * OpenAPI document restate JSON Schema. The body is sent as text serialised at start-up, so this schema
 * documents the response and never filters it.
 */
const EventJsonSchema = Type.Object(
  {
    title: Type.String({ description: 'The event type' }),
    description: Type.String(),
    type: Type.Literal('object'),
  },
  { additionalProperties: true, description: 'The JSON Schema (draft-07) of one event type' },
);

const EventSchemaIndex = Type.Object(
  {
    schema_version: Type.Literal(SCHEMA_VERSION, { description: 'The envelope version of these schemas' }),
    events: Type.Object(Object.fromEntries(EVENT_TYPES.map((type) => [type, EventJsonSchema]))),
  },
  { description: 'The JSON Schema of every event type, keyed by type' },
);

// An enum rather than a lookup: an unknown type is then a 400 naming `event_type` and listing the valid
// ones, from the validator, like every other bad parameter of the API.
const EventTypeParams = Type.Object(
  { event_type: Type.Enum(EVENT_TYPES, { description: 'An event type' }) },
  { additionalProperties: false },
);

const sendJsonText = (reply: FastifyReply, text: string): FastifyReply =>
  reply.type('application/json; charset=utf-8').send(text);

const eventSchemaRoutes: FastifyPluginAsyncTypebox = async (app) => {
  // The schemas are fixed for the life of the process: serialise them once, not per request.
  const schemas = eventJsonSchemas();
  const indexText = JSON.stringify({ schema_version: SCHEMA_VERSION, events: schemas });
  const schemaTexts = new Map(EVENT_TYPES.map((type) => [type, JSON.stringify(schemas[type])]));

  app.get(
    '/schemas/events',
    {
      schema: {
        tags: ['events'],
        summary: 'The JSON Schemas of all telemetry event types',
        response: { 200: EventSchemaIndex },
      },
    },
    async (_request, reply) => sendJsonText(reply, indexText),
  );

  app.get(
    '/schemas/events/:event_type',
    {
      schema: {
        tags: ['events'],
        summary: 'The JSON Schema of one telemetry event type',
        params: EventTypeParams,
        response: { 200: EventJsonSchema, ...errorResponses(400) },
      },
    },
    async (request, reply) => sendJsonText(reply, schemaTexts.get(request.params.event_type) as string),
  );
};

export default eventSchemaRoutes;
