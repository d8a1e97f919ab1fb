/**
 * Models in PostgreSQL. Takes a pg Pool; knows nothing of HTTP.
 */
import type pg from 'pg';
import { ModelAlreadyExistsError, ModelNotFoundError } from '../errors.ts';
import { buildFilterQuery, encodeCursor, type ModelFilter } from './model-filter.ts';
import {
  type CreateModelInput,
  type Model,
  type ModelPage,
  UpdateModelBody,
  type UpdateModelInput,
} from './model-schemas.ts';

const UNIQUE_VIOLATION = '23505';

const COLUMNS = `model_id, vendor_id, capability_tier, context_window, cost_in_per_mil, cost_out_per_mil,
  function_call_support, is_active, version, created_at, updated_at`;

/** Timestamps are kept to the millisecond, the precision of a JSON date and of the keyset cursor. */
const NOW_MS = `date_trunc('milliseconds', statement_timestamp())`;

/** The columns a PATCH may set: exactly the fields of its schema, which allows no others. */
const UPDATABLE_COLUMNS = Object.keys(UpdateModelBody.properties) as (keyof UpdateModelInput)[];

interface ModelRow extends Omit<Model, 'created_at' | 'updated_at'> {
  created_at: Date;
  updated_at: Date;
}

function toModel(row: ModelRow): Model {
  return { ...row, created_at: row.created_at.toISOString(), updated_at: row.updated_at.toISOString() };
}

/** The outcome of a write: the model as stored, and whether anything changed (and so `version` grew). */
export interface WriteResult {
  model: Model;
  changed: boolean;
}

export class ModelRepository {
  constructor(private readonly pool: pg.Pool) {}

  async create(input: CreateModelInput): Promise<Model> {
    try {
      const { rows } = await this.pool.query<ModelRow>({
        name: 'models.create',
        text: `INSERT INTO models (model_id, vendor_id, capability_tier, context_window, cost_in_per_mil,
                 cost_out_per_mil, function_call_support, is_active, version, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, ${NOW_MS}, ${NOW_MS})
               RETURNING ${COLUMNS}`,
        values: [
          input.model_id,
          input.vendor_id,
          input.capability_tier,
          input.context_window,
          input.cost_in_per_mil,
          input.cost_out_per_mil,
          input.function_call_support,
          input.is_active ?? true,
        ],
      });
      return toModel(rows[0] as ModelRow);
    } catch (error) {
      if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
        throw new ModelAlreadyExistsError(input.model_id, error);
      }
      throw error;
    }
  }

  async get(modelId: string): Promise<Model | undefined> {
    const { rows } = await this.pool.query<ModelRow>({
      name: 'models.get',
      text: `SELECT ${COLUMNS} FROM models WHERE model_id = $1`,
      values: [modelId],
    });
    return rows[0] === undefined ? undefined : toModel(rows[0]);
  }

  /**
   * Applies the fields given. A change that sets every field to the value it already has is no change:
   * the version stays, so versions count real changes only.
   */
  async update(modelId: string, patch: UpdateModelInput): Promise<WriteResult> {
    const columns = UPDATABLE_COLUMNS.filter((column) => patch[column] !== undefined);
    if (columns.length === 0) return this.outcome(modelId, undefined);
    const values: unknown[] = [modelId, ...columns.map((column) => patch[column])];
    const assignments = columns.map((column, index) => `${column} = $${index + 2}`);
    const differs = columns.map((column, index) => `${column} IS DISTINCT FROM $${index + 2}`);
    const { rows } = await this.pool.query<ModelRow>(
      `UPDATE models SET ${assignments.join(', ')}, version = version + 1, updated_at = ${NOW_MS}
       WHERE model_id = $1 AND (${differs.join(' OR ')})
       RETURNING ${COLUMNS}`,
      values,
    );
    return this.outcome(modelId, rows[0]);
  }

  /** Sets `is_active` to false; deactivating an inactive model changes nothing and succeeds. */
  async deactivate(modelId: string): Promise<WriteResult> {
    const { rows } = await this.pool.query<ModelRow>({
      name: 'models.deactivate',
      text: `UPDATE models SET is_active = false, version = version + 1, updated_at = ${NOW_MS}
             WHERE model_id = $1 AND is_active
             RETURNING ${COLUMNS}`,
      values: [modelId],
    });
    return this.outcome(modelId, rows[0]);
  }

  async filter(filter: ModelFilter): Promise<ModelPage> {
    const query = buildFilterQuery(filter, COLUMNS);
    const { rows } = await this.pool.query<ModelRow>(query.text, query.values);
    const items = rows.slice(0, filter.limit).map(toModel);
    const last = items.at(-1);
    const hasMore = rows.length > filter.limit;
    return { items, next_cursor: hasMore && last !== undefined ? encodeCursor(filter, last) : null };
  }

  private async outcome(modelId: string, updated: ModelRow | undefined): Promise<WriteResult> {
    if (updated !== undefined) return { model: toModel(updated), changed: true };
    const current = await this.get(modelId);
    if (current === undefined) throw new ModelNotFoundError(modelId);
    return { model: current, changed: false };
  }
}
