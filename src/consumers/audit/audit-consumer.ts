/**
 * The audit consumer: appends every event of `audit.trail` (model lifecycle, model reads, filters, API
 * errors) to the append-only table `audit_records`, with its full envelope, chained per model by hash
 * (the canonical form a hash covers is documented in ./audit-hash.ts; `telemetry-bus audit verify`
 * recomputes it).
 *
 * A batch costs two statements whatever its size (three when it opens chains not seen before), so that
 * the consumer keeps up with the API:
 * 1. lock the head of every chain the batch touches, in chain-key order, so that two consumers appending
 *    at once wait for each other per chain and cannot deadlock (creating missing heads first), and read
 *    which of the batch's events the trail holds already;
 * 2. hash the records in batch order in memory, then insert them all and move the heads in one statement
 *    (`jsonb_to_recordset` of the records' canonical documents: the bytes hashed are the bytes inserted).
 * The consumer de-duplicates in its own table (`audit_records.event_id` is unique), in the transaction
 * that appends, so the runtime records nothing in `consumer_applied_events` for it: an event recorded
 * already (a redelivery, a replay) is left out of the chain. An appender of the same event (same model,
 * same chain) holds its head until it commits; the second one then fails on the unique event_id and its
 * events are applied again one by one (see appendAuditRecords).
 * Everything a record takes from its event alone (the canonical document but for its place in the chain
 * and its recording time) is written once, while the statement that locks the heads runs.
 * Records of one model are appended in the order their events were consumed: the queue's order, which is
 * the order they were published in (see docs/guides/ordering.md).
 * Keyless client errors go to a chain of their own, which is pruned after a retention (see
 * ./keyless-errors.ts); one older than that retention is not appended (it may have been pruned already).
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
  type OpenDocument,
  openDocument,
} from './audit-hash.ts';
import { isKeylessClientError, KEYLESS_CHAIN_KEY, keylessRecordedSince } from './keyless-errors.ts';
import { RecordBatchWriter } from './record-batch-writer.ts';

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

/** Where a record goes, known before its document is written: its event id, chain and stored envelope. */
interface RecordKey {
  eventId: string;
  chainKey: string;
  envelope: Record<string, unknown>;
}

/** The chain of an event's record: its model's, '~global', or '~keyless' for a keyless client error. */
function chainOf(event: TelemetryEvent): string {
  return isKeylessClientError(event) ? KEYLESS_CHAIN_KEY : chainKeyOf(modelIdOf(event));
}

function recordKey(delivery: Delivery): RecordKey {
  const event = delivery.event;
  if (event === undefined) throw new TypeError('the audit consumer needs validated events');
  const envelope = storableEnvelope(delivery, event);
  const stored = envelope as unknown as TelemetryEvent;
  return { eventId: stored.event_id, chainKey: chainOf(stored), envelope };
}

/** The columns a record takes from its (stored) event. */
function eventFields(envelope: Record<string, unknown>): EventFields {
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

/** What a record takes from its event alone. */
interface PreparedRecord extends RecordKey {
  /** The canonical document but for chain_position and recorded_at: hashed, and inserted as it is. */
  open: OpenDocument;
}

function preparedRecord(key: RecordKey): PreparedRecord {
  return { ...key, open: openDocument(eventFields(key.envelope)) };
}

/** A keyless client error that occurred before `keylessSince`: not appended (see ./keyless-errors.ts). */
function tooOld(key: RecordKey, keylessSince: number | undefined): boolean {
  return (
    keylessSince !== undefined &&
    key.chainKey === KEYLESS_CHAIN_KEY &&
    Date.parse((key.envelope as unknown as TelemetryEvent).timestamp) < keylessSince
  );
}

interface ChainState {
  position: number;
  hash: Buffer;
}

/**
 * Locks the heads of `chainKeys` (creating missing ones), in chain-key order, so that consumers appending
 * at once wait for each other per chain and cannot deadlock; returns them and the transaction's time.
 * `existing` holds keys whose head was seen before: when every key is in it, the creating INSERT is left
 * out (heads are never deleted; a stale entry — a head whose creation was rolled back, another database —
 * only costs a second try).
 */
async function lockHeads(
  client: pg.PoolClient,
  chainKeys: string[],
  eventIds: string[],
  existing: Set<string>,
): Promise<{ heads: Map<string, ChainState>; now: Date; recorded: Set<string> }> {
  const lock = async (create: boolean) => {
    // The INSERT writes nothing for heads that exist (it waits only for another transaction creating the
    // same one); the SELECT, a statement of its own so that it sees heads created meanwhile, locks them all
    // without writing a new row version (DO UPDATE would, doubling the heads' churn).
    if (create) {
      await client.query({
        name: 'audit.create-heads',
        text: `INSERT INTO audit_chain_heads (chain_key)
               SELECT key FROM unnest($1::text[]) AS key ORDER BY key COLLATE "C"
               ON CONFLICT (chain_key) DO NOTHING`,
        values: [chainKeys],
      });
    }
    return client.query<{
      chain_key: string;
      last_position: string | number;
      last_hash: Buffer;
      now: Date;
      recorded: string[] | null;
    }>({
      name: 'audit.lock-heads',
      text: `SELECT chain_key, last_position, last_hash, now() AS now,
                    (SELECT array_agg(event_id) FROM audit_records WHERE event_id = ANY($2::uuid[])) AS recorded
               FROM audit_chain_heads
              WHERE chain_key = ANY($1::text[]) ORDER BY chain_key FOR UPDATE`,
      values: [chainKeys, eventIds],
    });
  };
  let { rows } = await lock(chainKeys.some((key) => !existing.has(key)));
  if (rows.length < chainKeys.length) ({ rows } = await lock(true));
  if (rows.length < chainKeys.length) throw new Error('audit chain heads missing after creating them');
  for (const row of rows) existing.add(row.chain_key);
  const heads = new Map(
    rows.map((row) => [row.chain_key, { position: Number(row.last_position), hash: row.last_hash }]),
  );
  const first = rows[0] as { now: Date; recorded: string[] | null };
  return { heads, now: first.now, recorded: new Set(first.recorded ?? []) };
}

/**
 * One statement inserts the records and moves the heads. The records come as one JSON array whose
 * objects are the records' canonical documents (the bytes their hash covers) with `n`, `prev_hash` and
 * `hash` added, sent as binary jsonb (./record-batch-writer.ts): node serialises nothing twice.
 */
const RECORDS_INSERT = `INSERT INTO audit_records (event_id, event_type, model_id, chain_key, chain_position,
                             correlation_id, user_id, sequence, occurred_at, recorded_at, envelope, prev_hash, hash)
  SELECT event_id, event_type, model_id, chain_key, chain_position, correlation_id, user_id,
         sequence, occurred_at, recorded_at, envelope, decode(prev_hash, 'hex'), decode(hash, 'hex')
    FROM jsonb_to_recordset($1::jsonb) AS r(
           n integer, chain_key text, event_id uuid, event_type text, model_id text, chain_position bigint,
           correlation_id text, user_id text, sequence bigint, occurred_at timestamptz,
           recorded_at timestamptz, envelope jsonb, prev_hash text, hash text)
   ORDER BY n`;

const INSERT_RECORDS = `
  WITH inserted AS (${RECORDS_INSERT} RETURNING id, chain_key, chain_position, hash)
  UPDATE audit_chain_heads h
     SET last_id = l.id, last_position = l.chain_position, last_hash = l.hash
    FROM (SELECT DISTINCT ON (chain_key) chain_key, id, chain_position, hash
            FROM inserted ORDER BY chain_key, chain_position DESC) l
   WHERE h.chain_key = l.chain_key`;

/**
 * Chains the records onto the heads (in batch order, skipping `recorded` events, second copies and keyless
 * client errors older than `keylessSince`) and inserts them; returns the deliveries inserted.
 */
async function insertRecords(
  client: pg.PoolClient,
  deliveries: Delivery[],
  records: PreparedRecord[],
  heads: Map<string, ChainState>,
  recordedAt: string,
  seen: Set<string>,
  keylessSince: number | undefined,
): Promise<Delivery[]> {
  const appended: Delivery[] = [];
  const batch = new RecordBatchWriter(recordedAt);
  for (let index = 0; index < records.length; index++) {
    const record = records[index] as PreparedRecord;
    if (seen.has(record.eventId) || tooOld(record, keylessSince)) continue;
    seen.add(record.eventId);
    const head = heads.get(record.chainKey) as ChainState;
    const position = head.position + 1;
    head.hash = batch.add(index, record.chainKey, record.open, position, head.hash);
    head.position = position;
    appended.push(deliveries[index] as Delivery);
  }
  if (appended.length > 0) {
    await client.query({ name: 'audit.insert', text: INSERT_RECORDS, values: [batch.finish()] });
  }
  return appended;
}

/**
 * Appends the deliveries' events to the audit trail, inside the caller's transaction, and returns those
 * it appended: an event already in the trail (a redelivery, a replay, the same event twice in the batch)
 * is skipped. The statement that locks the heads also reads which of the batch's events the trail holds
 * (250 probes of its unique `event_id` cost less than a savepoint's round trip and subtransaction).
 * Against a concurrent appender of the same event: both hold the heads of the event's chain in turn, so
 * the second waits for the first's commit — but its probe ran on a snapshot from before it waited, and
 * the insert then meets the unique `event_id`: the batch fails, and the runtime applies its deliveries
 * one transaction each, whose probes see the other's record.
 */
export async function appendAuditRecords(
  deliveries: Delivery[],
  client: pg.PoolClient,
  knownChains: Set<string> = new Set(),
  /** Receives the heads of the chains appended to, as this transaction leaves them. */
  headsAfter?: Map<string, ChainState>,
  /** Keyless client errors that occurred before this (ms since the epoch) are left out (./keyless-errors.ts). */
  keylessSince?: number,
): Promise<Delivery[]> {
  if (deliveries.length === 0) return [];
  const keys = deliveries.map(recordKey);
  const chainKeys = [...new Set(keys.map((key) => key.chainKey))];
  const locking = lockHeads(
    client,
    chainKeys,
    keys.map((key) => key.eventId),
    knownChains,
  );
  // Awaited below; this only keeps a rejection from going unhandled should writing the documents throw.
  locking.catch(() => {});
  // The documents are written while PostgreSQL locks the heads (node would wait for it otherwise).
  const records = keys.map(preparedRecord);
  const { heads, now, recorded } = await locking;
  const appended = await insertRecords(
    client,
    deliveries,
    records,
    heads,
    canonicalTimestamp(now),
    recorded,
    keylessSince,
  );
  if (headsAfter !== undefined) for (const [key, head] of heads) headsAfter.set(key, head);
  return appended;
}

/**
 * The fast path's statement: the records inserted (a record already there, or a place in its chain
 * taken, is skipped by ON CONFLICT and makes the count short), the heads moved from the values this
 * consumer cached (a head moved by anyone else does not match), and a check that fails the statement —
 * undoing it all, with a serialization failure the runtime retries — unless every record went in and
 * every head moved.
 */
const FAST_INSERT = `${RECORDS_INSERT}
  ON CONFLICT DO NOTHING
  RETURNING id, chain_key, chain_position, hash`;

const FAST_HEADS = `UPDATE audit_chain_heads h
     SET last_id = l.id, last_position = l.chain_position, last_hash = l.hash
    FROM (SELECT DISTINCT ON (chain_key) chain_key, id, chain_position, hash
            FROM records ORDER BY chain_key, chain_position DESC) l,
         unnest($1::text[], $2::bigint[], $3::bytea[]) AS e(chain_key, position, hash)
   WHERE h.chain_key = l.chain_key AND e.chain_key = l.chain_key
     AND h.last_position = e.position AND h.last_hash = e.hash
  RETURNING 1`;

/** At most this many chains' heads are cached; a chain evicted goes through the locking path once. */
const HEADS_CACHE_LIMIT = 100_000;

export interface AuditConsumerOptions {
  /** The queue consumed: a partition (`audit.trail.p2`) when `audit.trail` is partitioned. @default 'audit.trail' */
  queue?: string;
  /**
   * The clock of `recorded_at` on the fast path, and of the keyless chain's retention, in ms since the
   * epoch. @default Date.now
   */
  now?: () => number;
  /**
   * Days a keyless client error is kept as a record (AUDIT_KEYLESS_RETENTION_DAYS): one that occurred
   * longer ago is not appended, since it may have been pruned already. 0: kept for ever, none refused.
   * @default 0
   */
  keylessRetentionDays?: number;
}

/**
 * The audit consumer of `audit.trail` (or of one of its partitions). It de-duplicates in its own table
 * (`audit_records.event_id` is unique), so the runtime records nothing in `consumer_applied_events` for it.
 *
 * Two ways to append a batch:
 * - one statement, the batch's whole transaction (`writes`): when it knows every chain's head as its
 *   last commit left it (it is the queue's single active consumer, so normally nobody else moves them),
 *   it chains the records in memory and inserts them and moves the heads in one round trip, the heads
 *   compared with what it knew; anything unexpected (another consumer moved a head, an event already in
 *   the trail) fails that statement and the batch goes the other way;
 * - the locking path (`apply`, in a transaction the runtime opens): lock the heads, read which events
 *   are recorded, chain and insert (see appendAuditRecords) — for chains it does not know yet, the first
 *   batch after a start, and a batch whose one statement failed.
 */
export function auditConsumer(options: AuditConsumerOptions = {}): Consumer {
  const now = options.now ?? Date.now;
  const keylessRetentionDays = options.keylessRetentionDays ?? 0;
  // Chains whose head this consumer has seen: their creating INSERT is left out.
  const knownChains = new Set<string>();
  /** Each chain's head as this consumer's last commit left it (insertion order: oldest first). */
  const heads = new Map<string, ChainState>();
  /** The heads the attempt under way would leave, taken into `heads` once it committed. */
  let pending = new Map<string, ChainState>();
  return {
    name: 'audit',
    queue: options.queue ?? QUEUES.audit,
    deduplicates: true,
    async prepare(_pool, _deliveries, attempt) {
      pending = new Map();
      // A failed one statement: something moved that the cache did not see.
      if (attempt.afterConflict) heads.clear();
    },
    writes(deliveries) {
      const keys = deliveries.map(recordKey);
      const nowMs = now();
      const keylessSince = keylessRecordedSince(keylessRetentionDays, nowMs);
      // A keyless error too old to append: the locking path leaves it out.
      for (const key of keys) if (!heads.has(key.chainKey) || tooOld(key, keylessSince)) return undefined;
      const recordedAt = canonicalTimestamp(new Date(nowMs));
      const batch = new RecordBatchWriter(recordedAt);
      const moved = new Map<string, { before: ChainState; after: ChainState }>();
      const seen = new Set<string>();
      for (const [index, key] of keys.entries()) {
        // A second copy in the batch: the runtime passes each id once, but keep the chain sound anyway.
        if (seen.has(key.eventId)) return undefined;
        seen.add(key.eventId);
        const entry = moved.get(key.chainKey);
        const head = entry?.after ?? (heads.get(key.chainKey) as ChainState);
        const position = head.position + 1;
        const hash = batch.add(index, key.chainKey, preparedRecord(key).open, position, head.hash);
        moved.set(key.chainKey, { before: entry?.before ?? head, after: { position, hash } });
      }
      pending = new Map([...moved].map(([chain, { after }]) => [chain, after]));
      const chains = [...moved.keys()].sort();
      return [
        { name: 'records', text: FAST_INSERT, values: [batch.finish()] },
        {
          name: 'heads',
          text: FAST_HEADS,
          values: [
            chains,
            chains.map((chain) => moved.get(chain)?.before.position),
            chains.map((chain) => moved.get(chain)?.before.hash),
          ],
        },
        {
          name: 'audit_check',
          final: true,
          text: 'audit_append_check((SELECT count(*) FROM records), $1, (SELECT count(*) FROM heads), $2)',
          values: [keys.length, chains.length],
        },
      ];
    },
    apply(deliveries, client) {
      pending = new Map();
      const keylessSince = keylessRecordedSince(keylessRetentionDays, now());
      return appendAuditRecords(deliveries, client, knownChains, pending, keylessSince);
    },
    afterCommit() {
      for (const [chain, head] of pending) {
        heads.delete(chain);
        heads.set(chain, head);
        knownChains.add(chain);
      }
      pending = new Map();
      while (heads.size > HEADS_CACHE_LIMIT) heads.delete(heads.keys().next().value as string);
    },
  };
}
