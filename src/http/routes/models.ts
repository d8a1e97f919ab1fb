/** The registry's routes: thin wiring from HTTP to {@link ModelRegistry}. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { ModelRegistry } from '../../registry/model-registry.ts';
import {
  CreateModelBody,
  ModelFilterQuery,
  ModelIdParams,
  ModelPageSchema,
  ModelSchema,
  UpdateModelBody,
} from '../../registry/model-schemas.ts';
import { errorResponses } from '../error-response.ts';
import { SerializedJson, sendCachedRead } from '../serialized-json.ts';

export interface ModelRoutesOptions {
  registry: ModelRegistry;
}

const security = [{ apiKey: [] }];

const modelRoutes: FastifyPluginAsyncTypebox<ModelRoutesOptions> = async (app, { registry }) => {
  const json = new SerializedJson();
  app.post(
    '/models',
    {
      config: { role: 'writer' },
      schema: {
        tags: ['models'],
        summary: 'Register a model',
        security,
        body: CreateModelBody,
        response: { 201: ModelSchema, ...errorResponses(400, 401, 403, 409, 413, 415, 429) },
      },
    },
    async (request, reply) => {
      const model = await registry.register(request.body);
      request.telemetry = { type: 'model.registered', model };
      return reply
        .code(201)
        .header('location', `/models/${encodeURIComponent(model.model_id)}`)
        .send(model);
    },
  );

  app.get(
    '/models',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['models'],
        summary: 'Filter models (keyset-paginated)',
        security,
        querystring: ModelFilterQuery,
        response: { 200: ModelPageSchema, ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (request, reply) => {
      const read = await registry.filter(request.query);
      const { cursor, ...filters } = request.query;
      request.telemetry = {
        type: 'filter.executed',
        data: {
          filters: { ...filters, cursor: cursor !== undefined },
          result_count: read.value.items.length,
          has_more: read.value.next_cursor !== null,
        },
        cacheHit: read.hit,
      };
      return sendCachedRead(reply, read, json);
    },
  );

  app.get(
    '/models/:model_id',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['models'],
        summary: 'Get a model',
        security,
        params: ModelIdParams,
        response: { 200: ModelSchema, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request, reply) => {
      const read = await registry.get(request.params.model_id);
      request.telemetry = { type: 'model.queried', model: read.value, cacheHit: read.hit };
      return sendCachedRead(reply, read, json);
    },
  );

  app.patch(
    '/models/:model_id',
    {
      config: { role: 'writer' },
      schema: {
        tags: ['models'],
        summary: 'Update some fields of a model',
        security,
        params: ModelIdParams,
        body: UpdateModelBody,
        response: { 200: ModelSchema, ...errorResponses(400, 401, 403, 404, 413, 415, 429) },
      },
    },
    async (request) => {
      const { model, changed } = await registry.update(request.params.model_id, request.body);
      request.telemetry = { type: 'model.updated', model, changed };
      return model;
    },
  );

  app.post(
    '/models/:model_id/deactivate',
    {
      config: { role: 'writer' },
      schema: {
        tags: ['models'],
        summary: 'Deactivate a model (idempotent)',
        security,
        params: ModelIdParams,
        response: { 200: ModelSchema, ...errorResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request) => {
      const { model, changed } = await registry.deactivate(request.params.model_id);
      request.telemetry = { type: 'model.deactivated', model, changed };
      return model;
    },
  );
};

export default modelRoutes;
