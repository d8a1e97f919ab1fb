/**
 * The tamper evidence of the audit trail, as pure functions: the consumer hashes each record with them
 * when it appends it, and `telemetry-bus audit verify` recomputes the same hash from the stored row.
 *
 * ## Canonical form (version 1)
 *
 *     hash = SHA-256( prev_hash ‖ UTF-8( canonicalJson(document) ) )
 *
 * - `prev_hash`: the 32-byte `hash` of the previous record of the same chain; 32 zero bytes
 *   ({@link GENESIS_HASH}) for the first record of a chain.
 * - A chain is one model's records (`chain_key` = `model_id`); records without a model_id (filters, some
 *   errors, `dlq.replayed`) share the chain {@link GLOBAL_CHAIN_KEY}, and client errors of requests
 *   without a valid key, whatever model they name, the chain `~keyless` (./keyless-errors.ts), whose
 *   oldest records are pruned after a retention. Records are numbered 1, 2, 3, … in their chain
 *   (`chain_position`); a pruned chain starts where its head says (`first_position`, `first_prev_hash`).
 * - `document`: a JSON object with exactly these members, taken from the stored columns:
 *   `chain_position` (number), `event_id`, `event_type`, `model_id` (string or null), `correlation_id`,
 *   `user_id` (string or null), `sequence` (number or null), `occurred_at`, `recorded_at` (strings, see
 *   below) and `envelope` (the stored event envelope, an object).
 * - Timestamps are ISO-8601 in UTC with exactly six fractional digits (PostgreSQL's precision), e.g.
 *   `2025-01-15T10:30:00.123000Z`: in SQL, `to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.
 * - `canonicalJson`: JSON without any whitespace; object members sorted by key in UTF-16 code unit order
 *   (JavaScript's default sort), each key once; arrays in their order; strings, numbers, booleans and null
 *   written exactly as ECMAScript's `JSON.stringify` writes them. For the values an envelope holds this is
 *   RFC 8785 (JCS). Members whose value is `undefined` are left out, as `JSON.stringify` does, so the
 *   canonical form of a value and of its JSON round trip (through `jsonb`) are the same.
 *
 * `chain_key` is not hashed: the consumer writes it, and a record moved to another chain breaks both
 * chains' positions and hashes.
 */
import { createHash } from 'node:crypto';

/** The chain of records that have no model_id. '~' cannot occur in a model_id, so no model takes it. */
export const GLOBAL_CHAIN_KEY = '~global';

/** The `prev_hash` of a chain's first record. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/** The fields of a record that its hash covers (see the canonical form above). */
export interface AuditRecordFields {
  chain_position: number;
  event_id: string;
  event_type: string;
  model_id: string | null;
  correlation_id: string;
  user_id: string | null;
  sequence: number | null;
  /** ISO-8601 UTC with six fractional digits. */
  occurred_at: string;
  /** ISO-8601 UTC with six fractional digits. */
  recorded_at: string;
  envelope: Record<string, unknown>;
}

/** The chain a record belongs to. */
export function chainKeyOf(modelId: string | null): string {
  return modelId ?? GLOBAL_CHAIN_KEY;
}

// Strings JSON.stringify writes as they are, between quotes: the common case, and much cheaper.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the characters JSON must escape are the point.
const NEEDS_ESCAPING = /["\\\u0000-\u001f\ud800-\udfff]/;

function jsonString(value: string): string {
  return NEEDS_ESCAPING.test(value) ? JSON.stringify(value) : `"${value}"`;
}

/** A JSON value written canonically: sorted keys, no whitespace (see the file's header). */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return jsonString(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON has no form for ${value}`);
      // Number's toString is the algorithm JSON.stringify uses (and -0 is written 0 by both).
      return String(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) {
        // As JSON.stringify: an undefined element is written as null.
        let text = '[';
        for (let index = 0; index < value.length; index++) {
          const item: unknown = value[index];
          text += `${index === 0 ? '' : ','}${item === undefined ? 'null' : canonicalJson(item)}`;
        }
        return `${text}]`;
      }
      const object = value as Record<string, unknown>;
      let text = '{';
      for (const key of Object.keys(object).sort()) {
        const member = object[key];
        if (member === undefined) continue;
        text += `${text.length === 1 ? '' : ','}${jsonString(key)}:${canonicalJson(member)}`;
      }
      return `${text}}`;
    }
    default:
      throw new TypeError(`canonical JSON has no form for a ${typeof value}`);
  }
}

/** The document a record's hash covers: exactly the hashed fields, whatever else `fields` carries. */
export function hashedDocument(fields: AuditRecordFields): AuditRecordFields {
  return {
    chain_position: fields.chain_position,
    event_id: fields.event_id,
    event_type: fields.event_type,
    model_id: fields.model_id,
    correlation_id: fields.correlation_id,
    user_id: fields.user_id,
    sequence: fields.sequence,
    occurred_at: fields.occurred_at,
    recorded_at: fields.recorded_at,
    envelope: fields.envelope,
  };
}

/**
 * A record's canonical document with its two per-transaction members left open: everything but
 * `chain_position` and `recorded_at`, written once per event (it can be, before its batch's transaction
 * knows where in the chain the record goes and when it is recorded). {@link documentText} completes it;
 * the result is exactly `canonicalJson(hashedDocument(fields))`.
 */
export interface OpenDocument {
  /** From the member after `chain_position` to the opening quote of `recorded_at`'s value. */
  readonly middle: string;
  /** From the closing quote of `recorded_at`'s value to the end. */
  readonly tail: string;
}

/** `,"key":value` in canonical form, or nothing for an undefined value (as canonicalJson leaves it out). */
function member(key: string, value: unknown): string {
  return value === undefined ? '' : `,"${key}":${canonicalJson(value)}`;
}

/**
 * The document of `fields` with `chain_position` and `recorded_at` open. The members are written in
 * the canonical (sorted) order by hand: chain_position, correlation_id, envelope, event_id, event_type,
 * model_id, occurred_at, recorded_at, sequence, user_id — the unit tests hold it to canonicalJson.
 */
export function openDocument(
  fields: Omit<AuditRecordFields, 'chain_position' | 'recorded_at'>,
): OpenDocument {
  return {
    middle:
      member('correlation_id', fields.correlation_id) +
      member('envelope', fields.envelope) +
      member('event_id', fields.event_id) +
      member('event_type', fields.event_type) +
      member('model_id', fields.model_id) +
      member('occurred_at', fields.occurred_at) +
      ',"recorded_at":"',
    tail: `"${member('sequence', fields.sequence)}${member('user_id', fields.user_id)}}`,
  };
}

/**
 * The canonical document of a record, in the pieces it is made of: its open document, its place in the
 * chain and its canonical `recorded_at` (which, as canonicalTimestamp writes it, needs no escaping).
 * documentText joins them; the audit consumer's batch writer encodes them straight into its buffer.
 */
export function documentPieces(open: OpenDocument, chainPosition: number, recordedAt: string): string[] {
  if (!Number.isSafeInteger(chainPosition)) throw new RangeError('chain_position must be an integer');
  return [`{"chain_position":${chainPosition}`, open.middle, recordedAt, open.tail];
}

/** The canonical document of a record (see {@link documentPieces}). */
export function documentText(open: OpenDocument, chainPosition: number, recordedAt: string): string {
  return documentPieces(open, chainPosition, recordedAt).join('');
}

/** SHA-256 over the previous record's hash and a canonical document (as {@link documentText} writes it). */
export function documentHash(prevHash: Buffer, document: string): Buffer {
  if (prevHash.length !== 32) throw new RangeError('prev_hash must be 32 bytes');
  return createHash('sha256').update(prevHash).update(document, 'utf8').digest();
}

/** SHA-256 over the previous record's hash and this record's canonical document. */
export function recordHash(prevHash: Buffer, fields: AuditRecordFields): Buffer {
  if (prevHash.length !== 32) throw new RangeError('prev_hash must be 32 bytes');
  return createHash('sha256')
    .update(prevHash)
    .update(canonicalJson(hashedDocument(fields)), 'utf8')
    .digest();
}

/** A JavaScript Date as a canonical timestamp (PostgreSQL keeps microseconds; a Date has milliseconds). */
export function canonicalTimestamp(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RangeError('invalid date');
  // toISOString always ends in Z.
  return `${date.toISOString().slice(0, -1)}000Z`;
}

/**
 * The canonical form of an event's `timestamp` (`2025-01-15T10:30:00.123Z`), as PostgreSQL stores it. A
 * leap second (`23:59:60`), which the schema's date-time format admits and JavaScript cannot parse,
 * becomes the next second, as PostgreSQL reads it.
 */
export function canonicalEventTimestamp(timestamp: string): string {
  let ms = Date.parse(timestamp);
  if (Number.isNaN(ms) && /T\d{2}:\d{2}:60/.test(timestamp)) {
    ms = Date.parse(timestamp.replace(/(T\d{2}:\d{2}:)60/, '$159')) + 1000;
  }
  if (Number.isNaN(ms)) throw new RangeError(`timestamp '${timestamp}' is not a date`);
  return canonicalTimestamp(new Date(ms));
}

/** SQL giving a timestamptz column's canonical form. */
export function canonicalTimestampSql(column: string): string {
  return `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
}
