/**
 * The filter of `GET /models` as pure logic: a normalised filter, its keyset cursor, and the SQL it
 * becomes. Keyset (not offset) pagination keeps every page an index range scan and never skips or repeats
 * a row when models are added between pages.
 */
import { isStorableDateTime } from '../db/postgres-timestamp.ts';
import { ValidationError } from '../errors.ts';
import {
  LIMITS,
  MODEL_ID_PATTERN,
  type Model,
  type ModelFilterInput,
  SORT_FIELDS,
  type SortField,
} from './model-schemas.ts';

export interface ModelFilter {
  vendorId?: string;
  capabilityTier?: string;
  isActive?: boolean;
  functionCallSupport?: boolean;
  minContextWindow?: number;
  maxCostInPerMil?: number;
  maxCostOutPerMil?: number;
  sortField: SortField;
  descending: boolean;
  limit: number;
  /** Position after which the page starts, decoded from the cursor. */
  after?: CursorPosition;
}

export interface CursorPosition {
  value: string | number;
  modelId: string;
}

interface CursorPayload {
  /** sort as requested, e.g. "-context_window": a cursor is only valid for the sort it came from */
  s: string;
  v: string | number;
  id: string;
}

export function sortKey(filter: Pick<ModelFilter, 'sortField' | 'descending'>): string {
  return `${filter.descending ? '-' : ''}${filter.sortField}`;
}

export function encodeCursor(filter: ModelFilter, last: Model): string {
  const payload: CursorPayload = { s: sortKey(filter), v: last[filter.sortField], id: last.model_id };
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

/** The model_id rule of the schema and of the table's CHECK. */
const MODEL_ID = new RegExp(MODEL_ID_PATTERN);
const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/**
 * Whether a cursor value is one this API could have issued for the sort column, so that binding it can
 * never fail in PostgreSQL (a tampered cursor is a 400, not a database error).
 */
function isCursorValue(sortField: SortField, value: string | number): boolean {
  switch (SORT_CAST[sortField]) {
    case 'integer':
      return Number.isInteger(value) && (value as number) >= -(2 ** 31) && (value as number) < 2 ** 31;
    case 'double precision':
      return typeof value === 'number' && Number.isFinite(value);
    case 'timestamptz':
      return (
        typeof value === 'string' &&
        ISO_TIMESTAMP.test(value) &&
        isStorableDateTime(value) &&
        new Date(value).toISOString() === value
      );
    default:
      return typeof value === 'string' && !value.includes('\u0000');
  }
}

function decodeCursor(cursor: string, expectedSort: string, sortField: SortField): CursorPosition {
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (error) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API', error);
  }
  const { s, v, id } = (payload ?? {}) as Partial<CursorPayload>;
  if (typeof s !== 'string' || typeof id !== 'string' || (typeof v !== 'string' && typeof v !== 'number')) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API');
  }
  if (s !== expectedSort) {
    throw new ValidationError('cursor', `cursor belongs to sort '${s}', not '${expectedSort}'`);
  }
  if (!MODEL_ID.test(id) || id.length > LIMITS.modelIdMaxLength || !isCursorValue(sortField, v)) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API');
  }
  return { value: v, modelId: id };
}

/** Turns validated query parameters into a filter; throws a ValidationError naming `cursor` if it is bad. */
export function normalizeFilter(input: ModelFilterInput): ModelFilter {
  const sort = input.sort ?? 'model_id';
  const descending = sort.startsWith('-');
  const sortField = (descending ? sort.slice(1) : sort) as SortField;
  if (!SORT_FIELDS.includes(sortField)) throw new ValidationError('sort', `cannot sort by '${sort}'`);
  const filter: ModelFilter = {
    vendorId: input.vendor_id,
    capabilityTier: input.capability_tier,
    isActive: input.is_active,
    functionCallSupport: input.function_call_support,
    minContextWindow: input.min_context_window,
    maxCostInPerMil: input.max_cost_in_per_mil,
    maxCostOutPerMil: input.max_cost_out_per_mil,
    sortField,
    descending,
    limit: input.limit ?? LIMITS.pageSizeDefault,
  };
  if (input.cursor !== undefined) filter.after = decodeCursor(input.cursor, sort, sortField);
  return filter;
}

/** A stable text key for the filter-result cache: equal filters give equal keys. */
export function filterCacheKey(filter: ModelFilter): string {
  return JSON.stringify([
    filter.vendorId,
    filter.capabilityTier,
    filter.isActive,
    filter.functionCallSupport,
    filter.minContextWindow,
    filter.maxCostInPerMil,
    filter.maxCostOutPerMil,
    sortKey(filter),
    filter.limit,
    filter.after?.value,
    filter.after?.modelId,
  ]);
}

const SORT_CAST: Record<SortField, string> = {
  model_id: 'text',
  vendor_id: 'text',
  capability_tier: 'text',
  context_window: 'integer',
  cost_in_per_mil: 'double precision',
  cost_out_per_mil: 'double precision',
  created_at: 'timestamptz',
  updated_at: 'timestamptz',
};

/**
 * The SQL of one page. It fetches `limit + 1` rows: the extra row only tells whether a next page exists.
 * Column names come from the closed {@link SORT_FIELDS} list; every value is a bind parameter.
 */
export function buildFilterQuery(filter: ModelFilter, columns: string): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const bind = (value: unknown): string => {
    values.push(value);
    return `$${values.length}`;
  };
  if (filter.vendorId !== undefined) where.push(`vendor_id = ${bind(filter.vendorId)}`);
  if (filter.capabilityTier !== undefined) where.push(`capability_tier = ${bind(filter.capabilityTier)}`);
  if (filter.isActive !== undefined) where.push(`is_active = ${bind(filter.isActive)}`);
  if (filter.functionCallSupport !== undefined) {
    where.push(`function_call_support = ${bind(filter.functionCallSupport)}`);
  }
  if (filter.minContextWindow !== undefined) where.push(`context_window >= ${bind(filter.minContextWindow)}`);
  if (filter.maxCostInPerMil !== undefined) where.push(`cost_in_per_mil <= ${bind(filter.maxCostInPerMil)}`);
  if (filter.maxCostOutPerMil !== undefined)
    where.push(`cost_out_per_mil <= ${bind(filter.maxCostOutPerMil)}`);
  const column = filter.sortField;
  const direction = filter.descending ? 'DESC' : 'ASC';
  if (filter.after !== undefined) {
    const comparison = filter.descending ? '<' : '>';
    if (column === 'model_id') {
      where.push(`model_id ${comparison} ${bind(filter.after.modelId)}`);
    } else {
      // A row comparison matches the (column, model_id) index order in either direction.
      const value = `${bind(filter.after.value)}::${SORT_CAST[column]}`;
      where.push(`(${column}, model_id) ${comparison} (${value}, ${bind(filter.after.modelId)})`);
    }
  }
  const order =
    column === 'model_id' ? `model_id ${direction}` : `${column} ${direction}, model_id ${direction}`;
  const text = `SELECT ${columns} FROM models${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${order} LIMIT ${bind(filter.limit + 1)}`;
  return { text, values };
}
