/**
 * The audit consumer: appends every event of `audit.trail` (model lifecycle, model reads, filters, API
 * errors) to the append-only table `audit_records`, with its full envelope, chained per model by hash
 * (the canonical form a hash covers is documented in ./audit-hash.ts; `telemetry-bus audit verify`
 * recomputes it).
 *
 * A batch costs four statements whatever its size, so that the consumer keeps up with the API:
 * 1. skip events already recorded (the runtime's de-duplication normally catches them; this guards the
 *    chain if its table was pruned);
 * 2. lock the head of every chain the batch touches (creating missing ones) in chain-key order, so two
 *    consumers appending at once wait for each other per chain and cannot deadlock (two statements);
 * 3. hash the records in batch order in memory, then insert them all and move the heads in one statement
 *    (`jsonb_to_recordset`).
 * Records of one model are appended in the order their events were consumed: the queue's order, which is
 * the order they were published in (see docs/guides/ordering.md).
 */
import type pg from 'pg';
import type { TelemetryEvent } from '../../bus/event-schemas.ts';
import { QUEUES } from '../../bus/topology.ts';
import type { Consumer, Delivery } from '../consumer.ts';
import {
  type AuditRecordFields,
  canonicalEventTimestamp,
  canonicalTimestamp,
  chainKeyOf,
  recordHash,
} from './audit-hash.ts';

/** The fields of a record that come from its event alone. */
type EventFields = Omit<AuditRecordFields, 'chain_position' | 'recorded_at'>;

/** The model an event is about: `data.model_id` of model events and of errors that name one. */
function modelIdOf(event: TelemetryEvent): string | null {
  const modelId = (event.data as { model_id?: unknown }).model_id;
  return typeof modelId === 'string' ? modelId : null;
}

// PostgreSQL text and jsonb cannot hold U+0000 or an unpaired surrogate, both of which valid JSON can
// spell (`\u0000`, `\ud800`), e.g. in an unknown body field named in an api.error. Such characters become
// U+FFFD in the stored (and hashed) envelope: the record is kept, not dead-lettered for its spelling.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is the character PostgreSQL refuses.
const UNSTORABLE_CHARACTER = /\u0000|[\ud800-\udfff]/;

function storableString(value: string): string {
  return UNSTORABLE_CHARACTER.test(value)
    ? value.replaceAll('\u0000', '\ufffd').replace(LONE_SURROGATE, '\ufffd')
    : value;
}

function storableValue(value: unknown): unknown {
  if (typeof value === 'string') return storableString(value);
  if (Array.isArray(value)) return value.map(storableValue);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(
      Object.entries(value).map(([key, member]) => [storableString(key), storableValue(member)]),
    );
  }
  return value;
}

/** The envelope as it can be stored. Only a message with a `\u` escape can need changing: it is rare. */
function storableEnvelope(delivery: Delivery, event: TelemetryEvent): Record<string, unknown> {
  if (!delivery.content.includes('\\u')) return event as unknown as Record<string, unknown>;
  return storableValue(event) as Record<string, unknown>;
}

/** The columns a record takes from its event. */
function eventFields(delivery: Delivery): EventFields {
  const event = delivery.event;
  if (event === undefined) throw new TypeError('the audit consumer needs validated events');
  const envelope = storableEnvelope(delivery, event);
  const stored = envelope as unknown as TelemetryEvent;
  const sequence = (stored as { sequence?: unknown }).sequence;
  return {
    event_id: stored.event_id,
    event_type: stored.event_type,
    model_id: modelIdOf(stored),
    correlation_id: stored.correlation_id,
    user_id: stored.user_id,
    sequence: typeof sequence === 'number' ? sequence : null,
    occurred_at: canonicalEventTimestamp(stored.timestamp),
    envelope,
  };
}

interface ChainState {
  position: number;
  hash: Buffer;
}

/** Locks (creating if missing) the heads of `chainKeys`; returns them and the transaction's time. */
async function lockHeads(
  client: pg.PoolClient,
  chainKeys: string[],
): Promise<{ heads: Map<string, ChainState>; now: Date }> {
  // Both statements go in chain-key order, so consumers appending at once cannot deadlock. The INSERT
  // writes nothing for heads that exist (it waits only for another transaction creating the same one);
  // the SELECT, a statement of its own so that it sees heads created meanwhile, locks them all without
  // writing a new row version (DO UPDATE would, doubling the heads' churn).
  await client.query(
    `INSERT INTO audit_chain_heads (chain_key)
     SELECT key FROM unnest($1::text[]) AS key ORDER BY key COLLATE "C"
     ON CONFLICT (chain_key) DO NOTHING`,
    [chainKeys],
  );
  const { rows } = await client.query<{
    chain_key: string;
    last_position: string | number;
    last_hash: Buffer;
    now: Date;
  }>(
    `SELECT chain_key, last_position, last_hash, now() AS now FROM audit_chain_heads
      WHERE chain_key = ANY($1::text[]) ORDER BY chain_key FOR UPDATE`,
    [chainKeys],
  );
  const heads = new Map(
    rows.map((row) => [row.chain_key, { position: Number(row.last_position), hash: row.last_hash }]),
  );
  return { heads, now: (rows[0] as { now: Date }).now };
}

const INSERT_RECORDS = `
  WITH inserted AS (
    INSERT INTO audit_records (event_id, event_type, model_id, chain_position, correlation_id, user_id,
                               sequence, occurred_at, recorded_at, envelope, prev_hash, hash)
    SELECT event_id, event_type, model_id, chain_position, correlation_id, user_id,
           sequence, occurred_at, recorded_at, envelope, decode(prev_hash, 'hex'), decode(hash, 'hex')
      FROM jsonb_to_recordset($1::jsonb) AS r(
             n integer, event_id text, event_type text, model_id text, chain_position bigint,
             correlation_id text, user_id text, sequence bigint, occurred_at timestamptz,
             recorded_at timestamptz, envelope jsonb, prev_hash text, hash text)
     ORDER BY n
    RETURNING id, chain_key, chain_position, hash
  )
  UPDATE audit_chain_heads h
     SET last_id = l.id, last_position = l.chain_position, last_hash = l.hash
    FROM (SELECT DISTINCT ON (chain_key) chain_key, id, chain_position, hash
            FROM inserted ORDER BY chain_key, chain_position DESC) l
   WHERE h.chain_key = l.chain_key`;

/** Appends a batch of events to the audit trail, inside the runtime's transaction. */
export async function appendAuditRecords(deliveries: Delivery[], client: pg.PoolClient): Promise<void> {
  const candidates = deliveries.map(eventFields);
  const { rows: known } = await client.query<{ event_id: string }>(
    'SELECT event_id FROM audit_records WHERE event_id = ANY($1::text[])',
    [candidates.map((fields) => fields.event_id)],
  );
  const recorded = new Set(known.map((row) => row.event_id));
  const fresh = candidates.filter((fields) => !recorded.has(fields.event_id));
  if (fresh.length === 0) return;

  const chainKeys = [...new Set(fresh.map((fields) => chainKeyOf(fields.model_id)))];
  const { heads, now } = await lockHeads(client, chainKeys);
  const recordedAt = canonicalTimestamp(now);
  const rows = fresh.map((fields, index) => {
    const head = heads.get(chainKeyOf(fields.model_id)) as ChainState;
    const record: AuditRecordFields = {
      ...fields,
      chain_position: head.position + 1,
      recorded_at: recordedAt,
    };
    const hash = recordHash(head.hash, record);
    const row = { ...record, n: index, prev_hash: head.hash.toString('hex'), hash: hash.toString('hex') };
    head.position = record.chain_position;
    head.hash = hash;
    return row;
  });
  await client.query(INSERT_RECORDS, [JSON.stringify(rows)]);
}

export interface AuditConsumerOptions {
  /** The queue consumed: a partition (`audit.trail.p2`) when `audit.trail` is partitioned. @default 'audit.trail' */
  queue?: string;
}

/** The audit consumer of `audit.trail` (or of one of its partitions). */
export function auditConsumer(options: AuditConsumerOptions = {}): Consumer {
  return {
    name: 'audit',
    queue: options.queue ?? QUEUES.audit,
    apply: appendAuditRecords,
  };
}
