/**
 * Reading the audit trail: records filtered by model, event type, correlation id and time range, newest
 * first, in keyset pages. The order is (occurred_at, id) descending, which every filter's index serves, so
 * a page is an index range scan however deep, and records appended between pages never shift a page.
 * No web framework here: the TypeBox schemas validate `GET /audit` and type this module.
 */
import type pg from 'pg';
import { type Static, Type } from 'typebox';
import { CORRELATION_ID_PATTERN } from '../../bus/event-schemas.ts';
import { EVENT_TYPES } from '../../bus/event-types.ts';
import { isStorableDateTime, STORABLE_DATE_TIME_RULE } from '../../db/postgres-timestamp.ts';
import { ValidationError } from '../../errors.ts';
import { pageFields } from '../../page-fields.ts';
import { ModelId } from '../../registry/model-schemas.ts';
import { canonicalTimestampSql } from './audit-hash.ts';

export const AUDIT_LIMITS = { pageSizeDefault: 50, pageSizeMax: 500, cursorMaxLength: 256 } as const;

export const AuditQuery = Type.Object(
  {
    model_id: Type.Optional(ModelId),
    event_type: Type.Optional(Type.Enum(EVENT_TYPES, { description: 'Only events of this type' })),
    correlation_id: Type.Optional(
      Type.String({ pattern: CORRELATION_ID_PATTERN, description: 'Only events of this request' }),
    ),
    from: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'Only events that occurred at or after this ISO-8601 time (inclusive)',
      }),
    ),
    to: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'Only events that occurred before this ISO-8601 time (exclusive)',
      }),
    ),
    ...pageFields(AUDIT_LIMITS),
  },
  { additionalProperties: false },
);
export type AuditQueryInput = Static<typeof AuditQuery>;

const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()]);

export const AuditItem = Type.Object(
  {
    id: Type.Integer({ description: 'Position in the whole trail (grows as records are appended)' }),
    event_id: Type.String(),
    event_type: Type.String(),
    model_id: Nullable(Type.String()),
    correlation_id: Type.String(),
    user_id: Nullable(Type.String({ description: 'SHA-256 of the API key that made the request' })),
    sequence: Type.Union([Type.Integer(), Type.Null()], {
      description: "The model's version after the event",
    }),
    occurred_at: Type.String({ format: 'date-time', description: 'The event’s timestamp' }),
    recorded_at: Type.String({ format: 'date-time', description: 'When the audit consumer recorded it' }),
    chain_position: Type.Integer({ description: "Position in its model's hash chain" }),
    hash: Type.String({ description: 'Hex SHA-256 chaining this record to the one before it' }),
    envelope: Type.Object(
      {},
      { additionalProperties: true, description: 'The event exactly as recorded (see GET /schemas/events)' },
    ),
  },
  { additionalProperties: false },
);
export type AuditItem = Static<typeof AuditItem>;

export const AuditPage = Type.Object({
  items: Type.Array(AuditItem),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `cursor` for the next (older) page; null on the last page',
  }),
});
export type AuditPage = Static<typeof AuditPage>;

/** Where the next page starts: below this (occurred_at, id). */
interface CursorPayload {
  /** occurred_at in PostgreSQL's precision: `2025-01-15T10:30:00.123000Z`. */
  t: string;
  i: number;
}

const CURSOR_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function encodeCursor(payload: CursorPayload): string {
  return Buffer.from(JSON.stringify(payload)).toString('base64url');
}

function decodeCursor(cursor: string): CursorPayload {
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch (error) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API', error);
  }
  const { t, i } = (payload ?? {}) as Partial<CursorPayload>;
  if (
    typeof t !== 'string' ||
    !CURSOR_TIME.test(t) ||
    !isStorableDateTime(t) ||
    !Number.isSafeInteger(i) ||
    (i as number) < 1
  ) {
    throw new ValidationError('cursor', 'cursor is not a cursor returned by this API');
  }
  return { t, i: i as number };
}

/** A validated ISO-8601 date-time as an instant; the field is named when the date cannot exist. */
function instant(field: 'from' | 'to', value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!isStorableDateTime(value)) throw new ValidationError(field, `${field} ${STORABLE_DATE_TIME_RULE}`);
  const ms = Date.parse(value);
  return new Date(ms).toISOString();
}

interface ItemRow {
  id: string | number;
  event_id: string;
  event_type: string;
  model_id: string | null;
  correlation_id: string;
  user_id: string | null;
  sequence: string | number | null;
  occurred_at: Date;
  recorded_at: Date;
  occurred_key: string;
  chain_position: string | number;
  hash: Buffer;
  envelope: Record<string, unknown>;
}

/** The SQL of one page (`limit + 1` rows: the extra one only says whether there is a next page). */
export function buildAuditQuery(input: AuditQueryInput): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const bind = (value: unknown): string => {
    values.push(value);
    return `$${values.length}`;
  };
  const from = instant('from', input.from);
  const to = instant('to', input.to);
  if (from !== undefined && to !== undefined && Date.parse(to) <= Date.parse(from)) {
    throw new ValidationError('to', 'to must be later than from');
  }
  if (input.model_id !== undefined) where.push(`model_id = ${bind(input.model_id)}`);
  if (input.event_type !== undefined) where.push(`event_type = ${bind(input.event_type)}`);
  if (input.correlation_id !== undefined) where.push(`correlation_id = ${bind(input.correlation_id)}`);
  if (from !== undefined) where.push(`occurred_at >= ${bind(from)}::timestamptz`);
  if (to !== undefined) where.push(`occurred_at < ${bind(to)}::timestamptz`);
  if (input.cursor !== undefined) {
    const after = decodeCursor(input.cursor);
    // A row comparison: the (…, occurred_at, id) indexes serve it backwards.
    where.push(`(occurred_at, id) < (${bind(after.t)}::timestamptz, ${bind(after.i)}::bigint)`);
  }
  const limit = input.limit ?? AUDIT_LIMITS.pageSizeDefault;
  const text = `SELECT id, event_id, event_type, model_id, correlation_id, user_id, sequence, occurred_at,
      recorded_at, ${canonicalTimestampSql('occurred_at')} AS occurred_key, chain_position, hash, envelope
    FROM audit_records${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
    ORDER BY occurred_at DESC, id DESC LIMIT ${bind(limit + 1)}`;
  return { text, values };
}

/** One page of the audit trail, newest first. Throws a ValidationError naming the bad parameter. */
export async function queryAuditTrail(pool: pg.Pool, input: AuditQueryInput): Promise<AuditPage> {
  const limit = input.limit ?? AUDIT_LIMITS.pageSizeDefault;
  const { rows } = await pool.query<ItemRow>(buildAuditQuery(input));
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map((row) => ({
      id: Number(row.id),
      event_id: row.event_id,
      event_type: row.event_type,
      model_id: row.model_id,
      correlation_id: row.correlation_id,
      user_id: row.user_id,
      sequence: row.sequence === null ? null : Number(row.sequence),
      occurred_at: row.occurred_at.toISOString(),
      recorded_at: row.recorded_at.toISOString(),
      chain_position: Number(row.chain_position),
      hash: row.hash.toString('hex'),
      envelope: row.envelope,
    })),
    next_cursor:
      rows.length > limit && last !== undefined
        ? encodeCursor({ t: last.occurred_key, i: Number(last.id) })
        : null,
  };
}
