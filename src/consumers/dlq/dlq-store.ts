/**
 * Reading and removing archived dead letters, and the log of who did what to them (`dlq_operations`).
 *
 * Pages are newest first and keyset-paginated on (last_failure_at, id): every page is an index range
 * scan, and dead letters arriving between pages never shift it. The cursor is opaque, and checked when
 * decoded, so a tampered one is a 400, never a database error.
 */
import type pg from 'pg';
import { isStorableDateTime } from '../../db/postgres-timestamp.ts';
import { inTransaction } from '../../db/transaction.ts';
import { ValidationError } from '../../errors.ts';
import {
  type DeadLetterDetail,
  type DeadLetterFilterInput,
  type DeadLetterListInput,
  type DeadLetterPage,
  type DeadLetterState,
  type DeadLetterSummary,
  DLQ_LIMITS,
} from './dlq-schemas.ts';

/** Who acts on the archive. */
export interface DlqActor {
  /** `api-key:<key id>` or `cli:<user>@<host>`: recorded, and sent as `x-replayed-by`. */
  label: string;
  /** The API key, when the action came through the HTTP API. */
  keyId: string | null;
  /** SHA-256 of that key: the `user_id` of the audit trail's `dlq.replayed` records. @default null */
  userId?: string | null;
}

export interface DeadLetterFilter {
  eventType?: string;
  modelId?: string;
  errorType?: string;
  queue?: string;
  eventId?: string;
  from?: Date;
  to?: Date;
  /** @default 'dead' */
  state?: DeadLetterState | 'any';
}

interface CursorPosition {
  /** last_failure_at as PostgreSQL prints it (microseconds kept). */
  at: string;
  id: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PG_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}(:\d{2})?)$/;

function dateParameter(field: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const date = new Date(value);
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1 || year > 9999) {
    throw new ValidationError(field, `${field} must be an ISO 8601 date-time`);
  }
  return date;
}

/** The filter of validated input (snake_case, as the API and CLI take it); throws for bad dates. */
export function normalizeFilter(
  input: DeadLetterFilterInput & { state?: DeadLetterState | 'any' | undefined },
): DeadLetterFilter {
  const filter: DeadLetterFilter = {
    eventType: input.event_type,
    modelId: input.model_id,
    errorType: input.error_type,
    queue: input.queue,
    eventId: input.event_id,
    from: dateParameter('from', input.from),
    to: dateParameter('to', input.to),
    state: input.state ?? 'dead',
  };
  if (filter.from !== undefined && filter.to !== undefined && filter.from >= filter.to) {
    throw new ValidationError('to', 'to must be later than from');
  }
  return filter;
}

/** The filter as snake_case JSON, for dlq_operations.selection. */
export function describeFilter(filter: DeadLetterFilter): Record<string, string> {
  const described: Record<string, string | undefined> = {
    event_type: filter.eventType,
    model_id: filter.modelId,
    error_type: filter.errorType,
    queue: filter.queue,
    event_id: filter.eventId,
    from: filter.from?.toISOString(),
    to: filter.to?.toISOString(),
    state: filter.state,
  };
  return Object.fromEntries(Object.entries(described).filter(([, value]) => value !== undefined)) as Record<
    string,
    string
  >;
}

/** SQL conditions of a filter; values are bound through `bind`, which returns the placeholder. */
export function filterConditions(filter: DeadLetterFilter, bind: (value: unknown) => string): string[] {
  const where: string[] = [];
  if (filter.eventType !== undefined) where.push(`event_type = ${bind(filter.eventType)}`);
  if (filter.modelId !== undefined) where.push(`model_id = ${bind(filter.modelId)}`);
  if (filter.errorType !== undefined) where.push(`error_type = ${bind(filter.errorType)}`);
  if (filter.queue !== undefined) where.push(`original_queue = ${bind(filter.queue)}`);
  if (filter.eventId !== undefined) where.push(`event_id = ${bind(filter.eventId)}`);
  if (filter.from !== undefined) where.push(`last_failure_at >= ${bind(filter.from.toISOString())}`);
  if (filter.to !== undefined) where.push(`last_failure_at < ${bind(filter.to.toISOString())}`);
  const state = filter.state ?? 'dead';
  if (state !== 'any') where.push(`state = ${bind(state)}`);
  return where;
}

/** A `bind` for {@link filterConditions} that collects into `values`. */
export function binder(values: unknown[]): (value: unknown) => string {
  return (value) => {
    values.push(value);
    return `$${values.length}`;
  };
}

export function encodeCursor(position: CursorPosition): string {
  return Buffer.from(JSON.stringify({ t: position.at, id: position.id })).toString('base64url');
}

export function decodeCursor(cursor: string): CursorPosition {
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (error) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API', error);
  }
  const { t, id } = (payload ?? {}) as { t?: unknown; id?: unknown };
  if (
    typeof t !== 'string' ||
    typeof id !== 'string' ||
    !PG_TIMESTAMP.test(t) ||
    !isStorableDateTime(t) ||
    !UUID.test(id)
  ) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API');
  }
  return { at: t, id };
}

const SUMMARY_COLUMNS = `id, event_id, event_type, model_id, correlation_id, original_exchange,
  original_routing_key, original_queue, reason, attempts, error_type, error_message, first_failure_at,
  last_failure_at, received_at, octet_length(content) AS content_bytes, state, replayed_at, replayed_by`;

interface SummaryRow
  extends Omit<DeadLetterSummary, 'first_failure_at' | 'last_failure_at' | 'received_at' | 'replayed_at'> {
  first_failure_at: Date;
  last_failure_at: Date;
  received_at: Date;
  replayed_at: Date | null;
}

function toSummary(row: SummaryRow): DeadLetterSummary {
  return {
    id: row.id,
    event_id: row.event_id,
    event_type: row.event_type,
    model_id: row.model_id,
    correlation_id: row.correlation_id,
    original_exchange: row.original_exchange,
    original_routing_key: row.original_routing_key,
    original_queue: row.original_queue,
    reason: row.reason,
    attempts: row.attempts,
    error_type: row.error_type,
    error_message: row.error_message,
    first_failure_at: row.first_failure_at.toISOString(),
    last_failure_at: row.last_failure_at.toISOString(),
    received_at: row.received_at.toISOString(),
    content_bytes: row.content_bytes,
    state: row.state,
    replayed_at: row.replayed_at?.toISOString() ?? null,
    replayed_by: row.replayed_by,
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function describeContent(content: Buffer): DeadLetterDetail['content'] {
  try {
    return { encoding: 'utf8', data: utf8.decode(content) };
  } catch {
    return { encoding: 'base64', data: content.toString('base64') };
  }
}

export interface OperationRecord {
  action: 'replay' | 'delete' | 'purge';
  actor: DlqActor;
  dryRun: boolean;
  selection: Record<string, unknown>;
  matched: number;
  affectedIds?: string[];
  affected?: number;
}

/** Records an operation on the archive; returns its id. */
export async function insertOperation(
  db: pg.Pool | pg.PoolClient,
  operation: OperationRecord,
): Promise<number> {
  const ids = operation.affectedIds ?? [];
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO dlq_operations (action, actor, actor_key_id, dry_run, selection, matched, affected_ids, affected)
     VALUES ($1, $2, $3, $4, $5, $6, $7::uuid[], $8) RETURNING id`,
    [
      operation.action,
      operation.actor.label,
      operation.actor.keyId,
      operation.dryRun,
      JSON.stringify(operation.selection),
      operation.matched,
      ids,
      operation.affected ?? ids.length,
    ],
  );
  return Number((rows[0] as { id: number | string }).id);
}

export class DlqStore {
  constructor(private readonly pool: pg.Pool) {}

  /** One page of dead letters, newest first. */
  async list(input: DeadLetterListInput): Promise<DeadLetterPage> {
    const filter = normalizeFilter(input);
    const limit = input.limit ?? DLQ_LIMITS.pageSizeDefault;
    const values: unknown[] = [];
    const bind = binder(values);
    const where = filterConditions(filter, bind);
    if (input.cursor !== undefined) {
      const after = decodeCursor(input.cursor);
      where.push(`(last_failure_at, id) < (${bind(after.at)}::timestamptz, ${bind(after.id)}::uuid)`);
    }
    const { rows } = await this.pool.query<SummaryRow & { cursor_at: string }>(
      `SELECT ${SUMMARY_COLUMNS}, to_json(last_failure_at) #>> '{}' AS cursor_at
       FROM dead_letters ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY last_failure_at DESC, id DESC LIMIT ${bind(limit + 1)}`,
      values,
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return {
      items: page.map(toSummary),
      next_cursor:
        rows.length > limit && last !== undefined ? encodeCursor({ at: last.cursor_at, id: last.id }) : null,
    };
  }

  async get(id: string): Promise<DeadLetterDetail | undefined> {
    if (!UUID.test(id)) return undefined;
    const { rows } = await this.pool.query<
      SummaryRow & {
        error_stack: string | null;
        content: Buffer;
        properties: Record<string, unknown>;
        headers: Record<string, unknown>;
        replay_operation_id: string | number | null;
      }
    >(
      `SELECT ${SUMMARY_COLUMNS}, error_stack, content, properties, headers, replay_operation_id
       FROM dead_letters WHERE id = $1`,
      [id],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    return {
      ...toSummary(row),
      error_stack: row.error_stack,
      content: describeContent(row.content),
      properties: row.properties,
      headers: row.headers,
      replay_operation_id: row.replay_operation_id === null ? null : Number(row.replay_operation_id),
    };
  }

  /** Dead letters matching a filter. */
  async count(filter: DeadLetterFilter): Promise<number> {
    const values: unknown[] = [];
    const where = filterConditions(filter, binder(values));
    const { rows } = await this.pool.query<{ count: number }>(
      `SELECT count(*)::integer AS count FROM dead_letters ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}`,
      values,
    );
    return rows[0]?.count ?? 0;
  }

  /** Deletes one dead letter (whatever its state), recording who did; false when there is none. */
  async delete(id: string, actor: DlqActor): Promise<boolean> {
    if (!UUID.test(id)) return false;
    return inTransaction(this.pool, async (client) => {
      const { rows } = await client.query<{ id: string; event_id: string | null }>(
        'DELETE FROM dead_letters WHERE id = $1 RETURNING id, event_id',
        [id],
      );
      const row = rows[0];
      if (row !== undefined) {
        await insertOperation(client, {
          action: 'delete',
          actor,
          dryRun: false,
          selection: { ids: [id], event_id: row.event_id },
          matched: 1,
          affectedIds: [id],
        });
      }
      return row !== undefined;
    });
  }

  /**
   * Deletes every dead letter matching `filter`, in chunks of `chunkSize` (each its own transaction, so
   * a large purge never holds long locks); records one operation. Returns how many were deleted.
   */
  async purge(
    filter: DeadLetterFilter,
    actor: DlqActor,
    options: { chunkSize?: number; onProgress?: (deleted: number, total: number) => void } = {},
  ): Promise<number> {
    const total = await this.count(filter);
    const chunkSize = options.chunkSize ?? 5000;
    const operationId = await insertOperation(this.pool, {
      action: 'purge',
      actor,
      dryRun: false,
      selection: { filter: describeFilter(filter) },
      matched: total,
      affected: 0,
    });
    let deleted = 0;
    for (;;) {
      const values: unknown[] = [];
      const bind = binder(values);
      const where = filterConditions(filter, bind);
      const count = await inTransaction(this.pool, async (client) => {
        const result = await client.query(
          `DELETE FROM dead_letters WHERE id IN (
             SELECT id FROM dead_letters ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
             LIMIT ${bind(chunkSize)} FOR UPDATE SKIP LOCKED)`,
          values,
        );
        const deletedNow = result.rowCount ?? 0;
        await client.query('UPDATE dlq_operations SET affected = affected + $2 WHERE id = $1', [
          operationId,
          deletedNow,
        ]);
        return deletedNow;
      });
      if (count === 0) break;
      deleted += count;
      options.onProgress?.(deleted, Math.max(total, deleted));
    }
    return deleted;
  }
}
