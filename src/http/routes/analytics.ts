/**
 * `GET /analytics/models/popular` and `GET /analytics/filters`: thin wiring from HTTP to
 * {@link AnalyticsQuery}, over the hourly counts the analytics consumer keeps.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { COUNTED_FILTER_VALUES } from '../../consumers/analytics/analytics-aggregation.ts';
import {
  ANALYTICS_LIMITS,
  type AnalyticsQuery,
  resolveTimeRange,
} from '../../consumers/analytics/analytics-query.ts';
import { CapabilityTierSchema, VendorId } from '../../registry/model-schemas.ts';
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
