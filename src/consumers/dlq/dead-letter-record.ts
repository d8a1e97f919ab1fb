/**
 * What the archive keeps of a dead letter, read out of whatever arrived on `dlq.dead_letters`.
 *
 * Two kinds arrive: the runtime's (ladder exhausted, or poison), which carry the failure history in
 * {@link FAILURE_HEADERS} and an `x-dead-letter-id`; and the broker's (a quorum queue's delivery limit),
 * which carry only RabbitMQ's `x-death`. Anything else (no headers, a binary or enormous body) is archived
 * too: this code must never throw on a message, because the archive's own failures have nowhere to go.
 */
import { createHash } from 'node:crypto';
import type { Delivery } from '../consumer.ts';
import { FAILURE_HEADERS } from '../failure-policy.ts';

/** Header a replay adds: the dead letter the message was replayed from. */
export const REPLAYED_FROM_HEADER = 'x-replayed-from';
/** Header a replay adds: who replayed it (`api-key:<key id>` or `cli:<user>@<host>`). */
export const REPLAYED_BY_HEADER = 'x-replayed-by';

/** Indexed text columns are cut to this many characters (B-tree entries must stay under ~2.7 kB). */
export const INDEXED_TEXT_MAX_LENGTH = 256;
/** Bodies up to this size are parsed for their event_id, event_type and model_id, in bytes. */
const PARSE_MAX_BYTES = 1024 * 1024;
/** Nesting kept when headers are stored as JSON; deeper values are stored as text. */
const JSON_MAX_DEPTH = 32;

/** Namespace of the UUID v5 ids derived for dead letters that carry no `x-dead-letter-id`. */
const DEAD_LETTER_NAMESPACE = Buffer.from('6b1f0e2a4c3d5e7f8a9b0c1d2e3f4a5b', 'hex');

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export type DeadLetterReason =
  | 'retries_exhausted'
  | 'poison'
  | 'delivery_limit'
  | 'rejected'
  | 'expired'
  | 'maxlen'
  | 'unknown';

/** One row of `dead_letters`, as the consumer inserts it. */
export interface DeadLetterRecord {
  id: string;
  eventId: string | null;
  eventType: string | null;
  modelId: string | null;
  correlationId: string | null;
  originalExchange: string | null;
  originalRoutingKey: string | null;
  originalQueue: string | null;
  reason: DeadLetterReason;
  attempts: number;
  errorType: string;
  errorMessage: string;
  errorStack: string | null;
  firstFailureAt: Date;
  lastFailureAt: Date;
  content: Buffer;
  /** JSON-safe AMQP properties other than headers. */
  properties: Record<string, unknown>;
  /** JSON-safe headers (see {@link toJsonValue}). */
  headers: Record<string, unknown>;
}

type RawMessage = Omit<Delivery, 'id' | 'event'>;

/** One entry of RabbitMQ's `x-death` header (newest first). */
interface DeathEntry {
  queue: string | undefined;
  reason: string | undefined;
  exchange: string | undefined;
  routingKey: string | undefined;
  count: number | undefined;
  /** Unix seconds. */
  time: number | undefined;
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** PostgreSQL text cannot hold NUL; indexed columns must stay short. */
function clean(value: string | undefined | null, maxLength?: number): string | null {
  if (value === undefined || value === null) return null;
  const safe = value.replaceAll('\u0000', '\uFFFD');
  return maxLength === undefined ? safe : safe.slice(0, maxLength);
}

/** A typed AMQP value as amqplib decodes it (`{ '!': 'timestamp', value }`), or the value itself. */
function untyped(value: unknown): unknown {
  if (value !== null && typeof value === 'object' && '!' in value && 'value' in value) {
    return (value as { value: unknown }).value;
  }
  return value;
}

function deathEntries(headers: Record<string, unknown>): DeathEntry[] {
  const deaths = headers['x-death'];
  if (!Array.isArray(deaths)) return [];
  return deaths
    .filter((entry): entry is Record<string, unknown> => entry !== null && typeof entry === 'object')
    .map((entry) => {
      const keys = entry['routing-keys'];
      const count = Number(untyped(entry.count));
      const time = Number(untyped(entry.time));
      return {
        queue: text(entry.queue),
        reason: text(entry.reason),
        exchange: text(entry.exchange),
        routingKey: Array.isArray(keys) ? text(keys[0]) : undefined,
        count: Number.isFinite(count) ? count : undefined,
        time: Number.isFinite(time) ? time : undefined,
      };
    });
}

/** A date PostgreSQL can store, or undefined. */
function dateOf(value: unknown): Date | undefined {
  const raw = untyped(value);
  const date =
    typeof raw === 'string'
      ? new Date(raw)
      : raw instanceof Date
        ? raw
        : typeof raw === 'number'
          ? new Date(raw)
          : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) return undefined;
  const year = date.getUTCFullYear();
  return year >= 1 && year <= 9999 ? date : undefined;
}

function uuidV5(name: string): string {
  const hash = createHash('sha1').update(DEAD_LETTER_NAMESPACE).update(name, 'utf8').digest();
  hash[6] = ((hash[6] as number) & 0x0f) | 0x50;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The archive id of a dead letter: its `x-dead-letter-id` when it is a UUID; otherwise a UUID v5 of what
 * identifies this dead-lettering — the message id, a hash of the body and the newest `x-death` entry
 * (queue, reason, count, time), or all headers when there is no `x-death`. The same copy redelivered
 * gets the same id (so it is archived once); the same event dead-lettered again later gets another.
 */
export function deadLetterIdOf(message: RawMessage): string {
  const headers = message.properties.headers ?? {};
  const given = text(headers[FAILURE_HEADERS.deadLetterId]);
  if (given !== undefined && UUID.test(given)) return given.toLowerCase();
  const contentHash = createHash('sha256').update(message.content).digest('hex');
  const death = deathEntries(headers)[0];
  const name =
    death === undefined
      ? JSON.stringify(['headers', message.properties.messageId ?? null, contentHash, toJsonValue(headers)])
      : JSON.stringify([
          'x-death',
          message.properties.messageId ?? null,
          contentHash,
          death.queue ?? null,
          death.reason ?? null,
          death.count ?? null,
          death.time ?? null,
        ]);
  return uuidV5(name);
}

interface EnvelopeFields {
  eventId?: string;
  eventType?: string;
  modelId?: string;
  correlationId?: string;
}

/** event_id, event_type, data.model_id and correlation_id of a JSON body, as far as they are strings. */
function envelopeFields(content: Buffer): EnvelopeFields {
  if (content.length === 0 || content.length > PARSE_MAX_BYTES) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(content.toString('utf8'));
  } catch {
    return {};
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
  const body = parsed as Record<string, unknown>;
  const data =
    body.data !== null && typeof body.data === 'object' ? (body.data as Record<string, unknown>) : {};
  const pick = (value: unknown) => (typeof value === 'string' && value !== '' ? value : undefined);
  return {
    eventId: pick(body.event_id),
    eventType: pick(body.event_type),
    modelId: pick(data.model_id),
    correlationId: pick(body.correlation_id),
  };
}

const BROKER_REASONS = new Set<DeadLetterReason>(['delivery_limit', 'rejected', 'expired', 'maxlen']);

/** The row to archive for a delivery whose de-duplication id is `delivery.id`. */
export function toDeadLetterRecord(delivery: Delivery, receivedAt: Date = new Date()): DeadLetterRecord {
  const headers = delivery.properties.headers ?? {};
  const envelope = envelopeFields(delivery.content);
  const death = deathEntries(headers)[0];
  const runtimeMade = text(headers[FAILURE_HEADERS.deadLetterId]) !== undefined;
  const errorType = text(headers[FAILURE_HEADERS.errorType]);
  const errorMessage = text(headers[FAILURE_HEADERS.errorMessage]);
  const errorStack = text(headers[FAILURE_HEADERS.errorStack]);
  const attemptsHeader = Number(untyped(headers[FAILURE_HEADERS.attempts]));
  const deliveryCount = Number(untyped(headers['x-delivery-count']));

  let reason: DeadLetterReason;
  let type: string;
  let message: string;
  if (runtimeMade || death === undefined) {
    reason =
      errorType === 'POISON_MESSAGE' ? 'poison' : errorType !== undefined ? 'retries_exhausted' : 'unknown';
    type = errorType ?? 'UNKNOWN';
    message = errorMessage ?? 'the message carries no failure headers';
  } else {
    // Made by RabbitMQ: the newest x-death entry says why; a handler error from earlier retries is kept.
    const brokerReason = death.reason ?? 'unknown';
    reason = BROKER_REASONS.has(brokerReason as DeadLetterReason)
      ? (brokerReason as DeadLetterReason)
      : 'unknown';
    type = brokerReason.toUpperCase();
    message = `RabbitMQ dead-lettered the message from ${death.queue ?? 'an unknown queue'} (${brokerReason}${
      death.count === undefined ? '' : `, ${death.count} time(s)`
    })${errorMessage === undefined ? '' : `; the last handler error was: ${errorMessage}`}`;
  }

  const deathTime = death?.time === undefined ? undefined : dateOf(death.time * 1000);
  const lastFailureAt =
    (runtimeMade || death === undefined ? dateOf(headers[FAILURE_HEADERS.lastFailureAt]) : deathTime) ??
    dateOf(headers[FAILURE_HEADERS.lastFailureAt]) ??
    receivedAt;
  const firstFailureAt = dateOf(headers[FAILURE_HEADERS.firstFailureAt]) ?? deathTime ?? lastFailureAt;
  const attempts =
    Number.isSafeInteger(attemptsHeader) && attemptsHeader >= 0
      ? attemptsHeader
      : Number.isSafeInteger(deliveryCount) && deliveryCount >= 0
        ? deliveryCount
        : 0;

  const { headers: _headers, ...otherProperties } = delivery.properties;
  return {
    id: delivery.id,
    eventId: clean(
      envelope.eventId ?? delivery.properties.messageId ?? text(headers['cloudEvents:id']),
      INDEXED_TEXT_MAX_LENGTH,
    ),
    eventType: clean(
      envelope.eventType ?? delivery.properties.type ?? text(headers['cloudEvents:type']),
      INDEXED_TEXT_MAX_LENGTH,
    ),
    modelId: clean(envelope.modelId ?? text(headers.model_id), INDEXED_TEXT_MAX_LENGTH),
    correlationId: clean(envelope.correlationId ?? delivery.properties.correlationId, 1024),
    originalExchange: clean(text(headers[FAILURE_HEADERS.originalExchange]) ?? death?.exchange, 1024),
    originalRoutingKey: clean(
      text(headers[FAILURE_HEADERS.originalRoutingKey]) ?? death?.routingKey ?? delivery.routingKey,
      1024,
    ),
    originalQueue: clean(
      text(headers[FAILURE_HEADERS.originalQueue]) ?? death?.queue ?? text(headers['x-first-death-queue']),
      INDEXED_TEXT_MAX_LENGTH,
    ),
    reason,
    attempts: Math.min(attempts, 2 ** 31 - 1),
    errorType: clean(type, INDEXED_TEXT_MAX_LENGTH) as string,
    errorMessage: clean(message) as string,
    errorStack: clean(errorStack),
    firstFailureAt,
    lastFailureAt,
    content: delivery.content,
    properties: toJsonValue(otherProperties) as Record<string, unknown>,
    headers: toJsonValue(headers) as Record<string, unknown>,
  };
}

/**
 * A header value as JSON PostgreSQL's jsonb accepts, reversibly: byte arrays become `{"$bytes": base64}`,
 * strings holding NUL (which jsonb refuses) `{"$utf8": base64}`; amqplib's typed values
 * (`{"!": "timestamp", "value": …}`) stay as they are, and amqplib encodes them back to the same type.
 */
export function toJsonValue(value: unknown, depth = 0): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') {
    return value.includes('\u0000') ? { $utf8: Buffer.from(value, 'utf8').toString('base64') } : value;
  }
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value;
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') };
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (depth >= JSON_MAX_DEPTH) return clean(String(value));
  if (Array.isArray(value)) return value.map((item) => toJsonValue(item, depth + 1));
  if (typeof value === 'object') {
    const result: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) result[key.replaceAll('\u0000', '\uFFFD')] = toJsonValue(item, depth + 1);
    }
    return result;
  }
  return clean(String(value));
}

/** The inverse of {@link toJsonValue}: header values as amqplib publishes them. */
export function fromJsonValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJsonValue);
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value);
    if (entries.length === 1) {
      const [key, item] = entries[0] as [string, unknown];
      if (key === '$bytes' && typeof item === 'string') return Buffer.from(item, 'base64');
      if (key === '$utf8' && typeof item === 'string') return Buffer.from(item, 'base64').toString('utf8');
    }
    return Object.fromEntries(entries.map(([key, item]) => [key, fromJsonValue(item)]));
  }
  return value;
}
