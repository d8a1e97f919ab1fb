/**
 * `GET /analytics/models/popular`, `GET /analytics/models/:model_id` and `GET /analytics/filters`: thin
 * wiring from HTTP to {@link AnalyticsQuery}, over the hourly counts and the per-model "last seen" state
 * the analytics consumer keeps.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { COUNTED_FILTER_VALUES } from '../../consumers/analytics/analytics-aggregation.ts';
import { ANALYTICS_LIMITS, type AnalyticsQuery } from '../../consumers/analytics/analytics-query.ts';
import { CapabilityTierSchema, ModelIdParams, VendorId } from '../../registry/model-schemas.ts';
import { resolveTimeRange } from '../../time-range.ts';
import { errorResponses } from '../error-response.ts';
import { rangeFields } from '../time-range-query.ts';

export interface AnalyticsRoutesOptions {
  analytics: AnalyticsQuery;
}

const security = [{ apiKey: [] }];

const Range = {
  from: Type.String({ format: 'date-time', description: 'The range used, ISO-8601 UTC' }),
  to: Type.String({ format: 'date-time' }),
};

const Rate = (description: string) =>
  Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()], { description });

const PopularQuery = Type.Object(
  {
    ...rangeFields('hour'),
    limit: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: ANALYTICS_LIMITS.popularMax,
        default: ANALYTICS_LIMITS.popularDefault,
        description: 'Models returned',
      }),
    ),
    vendor_id: Type.Optional(VendorId),
    capability_tier: Type.Optional(CapabilityTierSchema),
  },
  { additionalProperties: false },
);

const PopularModelsResponse = Type.Object({
  ...Range,
  models: Type.Array(
    Type.Object({
      model_id: Type.String(),
      vendor_id: Type.String({ description: "The model's vendor in its latest counted hour of the range" }),
      capability_tier: Type.String({
        description: "The model's tier in its latest counted hour of the range",
      }),
      queries: Type.Integer({ minimum: 1, description: 'Reads (GET /models/:model_id) in the range' }),
      cache_hits: Type.Integer({ minimum: 0, description: "Reads served from the API's cache" }),
      cache_hit_rate: Type.Number({ minimum: 0, maximum: 1 }),
    }),
    { description: 'Most read first; ties by model_id' },
  ),
});

const ModelActivityQuery = Type.Object(rangeFields('hour'), { additionalProperties: false });

const Timestamp = (description: string) => Type.String({ format: 'date-time', description });

const ModelActivityResponse = Type.Object({
  model_id: Type.String(),
  last_sequence: Type.Integer({
    minimum: 1,
    description:
      "The model's version (event sequence) in the newest of its events analytics applied. Never goes " +
      'backwards: an older event applied late (a retry, a replayed dead letter, a stale cached read) ' +
      'changes none of the last_* fields, vendor_id, capability_tier or is_active',
  }),
  last_event_type: Type.Enum(['model.registered', 'model.updated', 'model.deactivated', 'model.queried'], {
    description: 'The newest event: highest sequence, then latest timestamp (reads repeat a version)',
  }),
  last_event_id: Type.String({ format: 'uuid' }),
  last_event_at: Timestamp("The newest event's timestamp"),
  last_changed_at: Timestamp(
    "When the registry committed version last_sequence: the model's newest registration, update or deactivation",
  ),
  vendor_id: Type.String({ description: 'As of version last_sequence' }),
  capability_tier: Type.String({ description: 'As of version last_sequence' }),
  is_active: Type.Boolean({ description: 'As of version last_sequence' }),
  last_queried_at: Type.Union([Timestamp('The newest read (GET /models/:model_id) seen'), Type.Null()], {
    description: 'The newest read (GET /models/:model_id) seen; null if none',
  }),
  updated_at: Timestamp('When the analytics consumer last moved this state'),
  ...Range,
  queries: Type.Integer({ minimum: 0, description: 'Reads in the range, under any vendor and tier' }),
  cache_hits: Type.Integer({ minimum: 0, description: "Reads in the range served from the API's cache" }),
  cache_hit_rate: Rate('cache_hits / queries; null without reads'),
});

const FilterQuery = Type.Object(rangeFields('hour'), { additionalProperties: false });

const Share = Type.Number({
  minimum: 0,
  maximum: 1,
  description: 'executions / all executions in the range',
});

const ParameterUsage = Type.Object({
  parameter: Type.String({ description: 'A query parameter of GET /models' }),
  executions: Type.Integer({ minimum: 0 }),
  share: Share,
});

const ValueUsage = Type.Object({
  value: Type.String({ description: "The parameter's value; booleans as 'true' / 'false'" }),
  executions: Type.Integer({ minimum: 1 }),
  share: Share,
});

const TopValues = Type.Array(ValueUsage, {
  description: `The ${ANALYTICS_LIMITS.topValues} most used values, most used first`,
});

const FilterUsageResponse = Type.Object({
  ...Range,
  executions: Type.Integer({ minimum: 0, description: 'GET /models requests answered in the range' }),
  average_result_count: Type.Union([Type.Number({ minimum: 0 }), Type.Null()], {
    description: 'Models per returned page, on average; null without executions',
  }),
  zero_result_rate: Rate('Share of executions that returned no model; null without executions'),
  has_more_rate: Rate('Share of executions with a next page'),
  cache_hit_rate: Rate("Share of executions served from the API's cache"),
  parameters: Type.Array(ParameterUsage, {
    description:
      'Every parameter, most used first. sort and limit are always counted (defaults are filled in); ' +
      'cursor counts when one was given.',
  }),
  top_values: Type.Object(
    Object.fromEntries(COUNTED_FILTER_VALUES.map((parameter) => [parameter, TopValues])) as Record<
      (typeof COUNTED_FILTER_VALUES)[number],
      typeof TopValues
    >,
    { description: 'Per parameter with few possible values' },
  ),
});

const analyticsRoutes: FastifyPluginAsyncTypebox<AnalyticsRoutesOptions> = async (app, { analytics }) => {
  app.get(
    '/analytics/models/popular',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['analytics'],
        summary: 'The most read models in a time range',
        security,
        querystring: PopularQuery,
        response: { 200: PopularModelsResponse, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { from, to, limit, vendor_id: vendorId, capability_tier: capabilityTier } = request.query;
      return analytics.popularModels({
        range: resolveTimeRange({ from, to }),
        limit,
        vendorId,
        capabilityTier,
      });
    },
  );

  // A model named 'popular' is shadowed by the route above (static segments win); its state is still
  // readable by the recommendation work through AnalyticsQuery.
  app.get(
    '/analytics/models/:model_id',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['analytics'],
        summary: 'What analytics last saw of a model, and its reads in a time range',
        security,
        params: ModelIdParams,
        querystring: ModelActivityQuery,
        response: { 200: ModelActivityResponse, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => analytics.modelActivity(request.params.model_id, resolveTimeRange(request.query)),
  );

  app.get(
    '/analytics/filters',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['analytics'],
        summary: 'How GET /models is filtered in a time range',
        security,
        querystring: FilterQuery,
        response: { 200: FilterUsageResponse, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => analytics.filterUsage(resolveTimeRange(request.query)),
  );
};

export default analyticsRoutes;
