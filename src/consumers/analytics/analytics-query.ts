/**
 * Reads of the analytics tables: the most queried models, how the filter is used, and one model's "last
 * seen" state with its reads, over a time range. Shared by `GET /analytics/*` and the recommendation
 * work; knows nothing of HTTP. The counts are hourly, so a range takes every hour that overlaps it:
 * `from` 10:30 includes the 10:00–11:00 hour.
 */
import type pg from 'pg';
import { inTransaction } from '../../db/transaction.ts';
import { AppError, ValidationError } from '../../errors.ts';
import { ModelFilterQuery } from '../../registry/model-schemas.ts';
import type { TimeRange } from '../../time-range.ts';
import { COUNTED_FILTER_VALUES, type ModelEventType } from './analytics-aggregation.ts';

export const ANALYTICS_LIMITS = {
  popularDefault: 10,
  popularMax: 100,
  /** Values listed per filter parameter in `top_values`. */
  topValues: 10,
} as const;

export interface PopularModel {
  model_id: string;
  /** The vendor and tier of the model's latest counted hour in the range. */
  vendor_id: string;
  capability_tier: string;
  queries: number;
  cache_hits: number;
  /** cache_hits / queries. */
  cache_hit_rate: number;
}

export interface PopularModels {
  from: string;
  to: string;
  models: PopularModel[];
}

export interface PopularModelsOptions {
  range: TimeRange;
  /** Models returned, 1–{@link ANALYTICS_LIMITS.popularMax}. @default 10 */
  limit?: number;
  /** Only reads made while the model had this vendor. */
  vendorId?: string;
  /** Only reads made while the model had this tier. */
  capabilityTier?: string;
}

export interface ParameterUsage {
  parameter: string;
  executions: number;
  /** executions / all executions in the range. */
  share: number;
}

export interface ValueUsage {
  value: string;
  executions: number;
  share: number;
}

export interface FilterUsage {
  from: string;
  to: string;
  executions: number;
  /** Items per returned page, on average; null without executions (as are the rates). */
  average_result_count: number | null;
  zero_result_rate: number | null;
  has_more_rate: number | null;
  cache_hit_rate: number | null;
  /** Every filter parameter, most used first. */
  parameters: ParameterUsage[];
  /** The most used values of the parameters with few possible values, most used first. */
  top_values: Record<(typeof COUNTED_FILTER_VALUES)[number], ValueUsage[]>;
}

/** One model as analytics last saw it (`analytics_model_activity`), and its reads in a range. */
export interface ModelActivity {
  model_id: string;
  /** The model's version in its newest event applied: never goes backwards. */
  last_sequence: number;
  last_event_type: ModelEventType;
  last_event_id: string;
  /** The newest event's timestamp, ISO-8601. */
  last_event_at: string;
  /** When the registry committed version last_sequence: the model's newest change, ISO-8601. */
  last_changed_at: string;
  vendor_id: string;
  capability_tier: string;
  is_active: boolean;
  /** The newest read's timestamp; null if none was seen. */
  last_queried_at: string | null;
  /** When the consumer last moved the row. */
  updated_at: string;
  /** The range the counts cover. */
  from: string;
  to: string;
  /** Reads in the range, under any vendor and tier. */
  queries: number;
  cache_hits: number;
  /** cache_hits / queries; null without reads. */
  cache_hit_rate: number | null;
}

/** Every parameter of `GET /models`, as the filter.executed event names them. */
export const FILTER_PARAMETERS: readonly string[] = [...Object.keys(ModelFilterQuery.properties), 'cursor'];

/** Hours that overlap [from, to): their start is after from − 1 h and before to. */
const IN_RANGE = `hour > $1::timestamptz - interval '1 hour' AND hour < $2::timestamptz`;

const rate = (part: number, whole: number): number | null => (whole === 0 ? null : part / whole);

export class AnalyticsQuery {
  constructor(private readonly pool: pg.Pool) {}

  async popularModels(options: PopularModelsOptions): Promise<PopularModels> {
    const limit = options.limit ?? ANALYTICS_LIMITS.popularDefault;
    if (!Number.isInteger(limit) || limit < 1 || limit > ANALYTICS_LIMITS.popularMax) {
      throw new ValidationError('limit', `limit must be an integer from 1 to ${ANALYTICS_LIMITS.popularMax}`);
    }
    const { from, to } = options.range;
    const values: unknown[] = [from.toISOString(), to.toISOString(), limit];
    const where = [IN_RANGE];
    if (options.vendorId !== undefined) {
      values.push(options.vendorId);
      where.push(`vendor_id = $${values.length}`);
    }
    if (options.capabilityTier !== undefined) {
      values.push(options.capabilityTier);
      where.push(`capability_tier = $${values.length}`);
    }
    const { rows } = await this.pool.query<{
      model_id: string;
      vendor_id: string;
      capability_tier: string;
      queries: string;
      cache_hits: string;
    }>(
      `SELECT model_id,
              (array_agg(vendor_id ORDER BY hour DESC, queries DESC, vendor_id))[1] AS vendor_id,
              (array_agg(capability_tier ORDER BY hour DESC, queries DESC, capability_tier))[1]
                AS capability_tier,
              sum(queries) AS queries,
              sum(cache_hits) AS cache_hits
       FROM analytics_model_queries
       WHERE ${where.join(' AND ')}
       GROUP BY model_id
       ORDER BY sum(queries) DESC, model_id
       LIMIT $3`,
      values,
    );
    return {
      from: from.toISOString(),
      to: to.toISOString(),
      models: rows.map((row) => {
        const queries = Number(row.queries);
        const cacheHits = Number(row.cache_hits);
        return {
          model_id: row.model_id,
          vendor_id: row.vendor_id,
          capability_tier: row.capability_tier,
          queries,
          cache_hits: cacheHits,
          cache_hit_rate: cacheHits / queries,
        };
      }),
    };
  }

  /**
   * A model's "last seen" state and its reads in `range`, in one statement (one snapshot). Throws a
   * MODEL_NOT_FOUND error when analytics has no event of the model: its registration may predate the
   * table, or the consumer may not have reached it yet.
   */
  async modelActivity(modelId: string, range: TimeRange): Promise<ModelActivity> {
    const { rows } = await this.pool.query<{
      model_id: string;
      last_sequence: number;
      last_event_type: ModelEventType;
      last_event_id: string;
      last_event_at: Date;
      last_changed_at: Date;
      vendor_id: string;
      capability_tier: string;
      is_active: boolean;
      last_queried_at: Date | null;
      updated_at: Date;
      queries: string;
      cache_hits: string;
    }>({
      name: 'analytics.model-activity.read',
      text: `SELECT a.model_id, a.last_sequence, a.last_event_type, a.last_event_id::text AS last_event_id,
                    a.last_event_at, a.last_changed_at, a.vendor_id, a.capability_tier, a.is_active,
                    a.last_queried_at, a.updated_at,
                    coalesce(q.queries, 0) AS queries, coalesce(q.cache_hits, 0) AS cache_hits
             FROM analytics_model_activity AS a
             CROSS JOIN LATERAL (
               SELECT sum(queries) AS queries, sum(cache_hits) AS cache_hits
               FROM analytics_model_queries
               WHERE model_id = a.model_id AND ${IN_RANGE}
             ) AS q
             WHERE a.model_id = $3`,
      values: [range.from.toISOString(), range.to.toISOString(), modelId],
    });
    const row = rows[0];
    if (row === undefined) {
      throw new AppError('MODEL_NOT_FOUND', `analytics has seen no event of model '${modelId}'`, {
        field: 'model_id',
      });
    }
    const queries = Number(row.queries);
    const cacheHits = Number(row.cache_hits);
    return {
      model_id: row.model_id,
      last_sequence: row.last_sequence,
      last_event_type: row.last_event_type,
      last_event_id: row.last_event_id,
      last_event_at: row.last_event_at.toISOString(),
      last_changed_at: row.last_changed_at.toISOString(),
      vendor_id: row.vendor_id,
      capability_tier: row.capability_tier,
      is_active: row.is_active,
      last_queried_at: row.last_queried_at === null ? null : row.last_queried_at.toISOString(),
      updated_at: row.updated_at.toISOString(),
      from: range.from.toISOString(),
      to: range.to.toISOString(),
      queries,
      cache_hits: cacheHits,
      cache_hit_rate: rate(cacheHits, queries),
    };
  }

  async filterUsage(range: TimeRange): Promise<FilterUsage> {
    const values = [range.from.toISOString(), range.to.toISOString()];
    // One snapshot: the totals and the per-parameter counts agree even while the consumer writes.
    const { totals, parameters, topValues } = await inTransaction(
      this.pool,
      async (client) => {
        const totals = await client.query<Record<string, string>>(
          `SELECT coalesce(sum(executions), 0) AS executions,
                coalesce(sum(result_count_sum), 0) AS result_count_sum,
                coalesce(sum(zero_results), 0) AS zero_results,
                coalesce(sum(has_more), 0) AS has_more,
                coalesce(sum(cache_hits), 0) AS cache_hits
         FROM analytics_filter_executions WHERE ${IN_RANGE}`,
          values,
        );
        const parameters = await client.query<{ parameter: string; executions: string }>(
          `SELECT parameter, sum(executions) AS executions
         FROM analytics_filter_parameters WHERE ${IN_RANGE}
         GROUP BY parameter`,
          values,
        );
        const topValues = await client.query<{ parameter: string; value: string; executions: string }>(
          `SELECT parameter, value, executions FROM (
           SELECT parameter, value, sum(executions) AS executions,
                  row_number() OVER (PARTITION BY parameter ORDER BY sum(executions) DESC, value) AS rank
           FROM analytics_filter_values WHERE ${IN_RANGE}
           GROUP BY parameter, value
         ) AS ranked
         WHERE rank <= $3
         ORDER BY parameter, rank`,
          [...values, ANALYTICS_LIMITS.topValues],
        );
        return { totals, parameters, topValues };
      },
      { begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' },
    );
    const total = totals.rows[0] ?? {};
    const executions = Number(total.executions ?? 0);
    const used = new Map(parameters.rows.map((row) => [row.parameter, Number(row.executions)]));
    const names = [...new Set([...FILTER_PARAMETERS, ...used.keys()])];
    const share = (count: number) => rate(count, executions) ?? 0;
    const top = Object.fromEntries(COUNTED_FILTER_VALUES.map((parameter) => [parameter, []])) as Record<
      string,
      ValueUsage[]
    >;
    for (const row of topValues.rows) {
      const count = Number(row.executions);
      top[row.parameter]?.push({ value: row.value, executions: count, share: share(count) });
    }
    return {
      from: range.from.toISOString(),
      to: range.to.toISOString(),
      executions,
      average_result_count: rate(Number(total.result_count_sum ?? 0), executions),
      zero_result_rate: rate(Number(total.zero_results ?? 0), executions),
      has_more_rate: rate(Number(total.has_more ?? 0), executions),
      cache_hit_rate: rate(Number(total.cache_hits ?? 0), executions),
      parameters: names
        .map((parameter) => {
          const count = used.get(parameter) ?? 0;
          return { parameter, executions: count, share: share(count) };
        })
        .sort((a, b) => b.executions - a.executions || (a.parameter < b.parameter ? -1 : 1)),
      top_values: top as FilterUsage['top_values'],
    };
  }
}
