/**
 * Verifies the audit trail's hash chains: walks every chain in (chain_key, chain_position) order,
 * recomputing each record's hash, and stops at the first broken link.
 *
 * What each kind of tampering looks like:
 * - a record edited (any column, or its envelope): its hash no longer matches its fields → `hash`;
 * - an edited record whose hash was recomputed too: the next record's `prev_hash` no longer matches →
 *   `prev_hash` on the next record (or `head` when it was the last);
 * - a record deleted: a gap in the chain's positions → `missing` on the record after the gap (or `head`
 *   when it was the last: the chain's head still names it);
 * - a chain whose head is gone → `no_head`.
 *
 * It reads in keyset batches inside one REPEATABLE READ, READ ONLY transaction: memory stays flat however
 * long the trail, and a consumer appending meanwhile is neither blocked nor seen half-way.
 */
import type pg from 'pg';
import { inTransaction } from '../../db/transaction.ts';
import { type AuditRecordFields, canonicalTimestampSql, GLOBAL_CHAIN_KEY, recordHash } from './audit-hash.ts';

export type AuditBreakKind = 'hash' | 'prev_hash' | 'missing' | 'head' | 'no_head';

/** The first broken link found. */
export interface AuditBreak {
  kind: AuditBreakKind;
  /** The record at fault (for `head`: the record the head names as last), or null if none exists. */
  recordId: number | null;
  chainKey: string;
  /** The chain's model, or null for the chain of records without one. */
  modelId: string | null;
  /** The record's position in its chain, or null. */
  position: number | null;
  /** What differs, for a person to read. */
  detail: string;
}

export interface AuditVerification {
  ok: boolean;
  /** Records checked (all of them when ok). */
  records: number;
  /** Chains checked (all chains with records when ok). */
  chains: number;
  broken: AuditBreak | undefined;
}

export interface AuditVerifyOptions {
  /** Records read per query. @default 2000 */
  batchSize?: number;
  /** Called after each batch with the records checked so far. */
  onProgress?: (records: number) => void;
}

interface WalkRow {
  id: string | number;
  chain_key: string;
  chain_position: string | number;
  event_id: string;
  event_type: string;
  model_id: string | null;
  correlation_id: string;
  user_id: string | null;
  sequence: string | number | null;
  occurred_at: string;
  recorded_at: string;
  envelope: Record<string, unknown>;
  prev_hash: Buffer;
  hash: Buffer;
  has_head: boolean;
  first_position: string | number | null;
  first_prev_hash: Buffer | null;
  last_id: string | number | null;
  last_position: string | number | null;
  last_hash: Buffer | null;
}

const COLUMNS = `r.id, r.chain_key, r.chain_position, r.event_id, r.event_type, r.model_id, r.correlation_id,
  r.user_id, r.sequence, ${canonicalTimestampSql('r.occurred_at')} AS occurred_at,
  ${canonicalTimestampSql('r.recorded_at')} AS recorded_at, r.envelope, r.prev_hash, r.hash,
  h.chain_key IS NOT NULL AS has_head, h.first_position, h.first_prev_hash, h.last_id, h.last_position,
  h.last_hash`;

function walkQuery(after: boolean): string {
  const where = after ? 'WHERE (chain_key, chain_position) > ($2, $3)' : '';
  return `SELECT ${COLUMNS}
    FROM (SELECT * FROM audit_records ${where} ORDER BY chain_key, chain_position LIMIT $1) r
    LEFT JOIN audit_chain_heads h ON h.chain_key = r.chain_key
   ORDER BY r.chain_key, r.chain_position`;
}

const hex = (hash: Buffer | null): string => (hash === null ? 'none' : hash.toString('hex'));
const modelOf = (chainKey: string): string | null => (chainKey === GLOBAL_CHAIN_KEY ? null : chainKey);

function fieldsOf(row: WalkRow): AuditRecordFields {
  return {
    chain_position: Number(row.chain_position),
    event_id: row.event_id,
    event_type: row.event_type,
    model_id: row.model_id,
    correlation_id: row.correlation_id,
    user_id: row.user_id,
    sequence: row.sequence === null ? null : Number(row.sequence),
    occurred_at: row.occurred_at,
    recorded_at: row.recorded_at,
    envelope: row.envelope,
  };
}

/** Columns that disagree with the envelope: a hint at what an edit changed. */
function disagreements(row: WalkRow): string[] {
  const envelope = row.envelope as Record<string, unknown> & { data?: { model_id?: unknown } };
  const found: string[] = [];
  const compare = (column: string, stored: unknown, expected: unknown) => {
    if (stored !== expected) {
      found.push(`${column} is ${JSON.stringify(stored)} but the envelope says ${JSON.stringify(expected)}`);
    }
  };
  compare('event_id', row.event_id, envelope.event_id);
  compare('event_type', row.event_type, envelope.event_type);
  compare('correlation_id', row.correlation_id, envelope.correlation_id);
  compare('user_id', row.user_id, envelope.user_id ?? null);
  const modelId = envelope.data?.model_id;
  compare('model_id', row.model_id, typeof modelId === 'string' ? modelId : null);
  compare('sequence', row.sequence === null ? null : Number(row.sequence), envelope.sequence ?? null);
  return found;
}

interface Chain {
  key: string;
  expectedPosition: number;
  prevHash: Buffer;
  lastId: number | null;
  row: WalkRow;
}

/** The chain's end against its head: records deleted from the end leave the head naming them. */
function checkEnd(chain: Chain): AuditBreak | undefined {
  const { row } = chain;
  const headPosition = Number(row.last_position);
  const lastPosition = chain.expectedPosition - 1;
  if (headPosition !== lastPosition || !chain.prevHash.equals(row.last_hash as Buffer)) {
    const missing = headPosition > lastPosition;
    return {
      kind: 'head',
      recordId: missing ? Number(row.last_id) : chain.lastId,
      chainKey: chain.key,
      modelId: modelOf(chain.key),
      position: missing ? headPosition : lastPosition,
      detail: missing
        ? `the chain ends at position ${lastPosition}, but its head says ${headPosition} (record ${row.last_id}): the last record(s) were deleted`
        : `the chain's last record (position ${lastPosition}) has hash ${hex(chain.prevHash)}, but the head says position ${headPosition} with hash ${hex(row.last_hash)}`,
    };
  }
  return undefined;
}

/** Checks one record against its chain so far. */
function checkRecord(chain: Chain, row: WalkRow): AuditBreak | undefined {
  const position = Number(row.chain_position);
  const at = {
    recordId: Number(row.id),
    chainKey: chain.key,
    modelId: modelOf(chain.key),
    position,
  };
  if (position !== chain.expectedPosition) {
    const count = position - chain.expectedPosition;
    return {
      kind: 'missing',
      ...at,
      detail:
        count > 0
          ? `position ${chain.expectedPosition}${count > 1 ? `–${position - 1}` : ''} missing before this record: ${count} record(s) deleted`
          : `position ${position} where ${chain.expectedPosition} was expected`,
    };
  }
  if (!row.prev_hash.equals(chain.prevHash)) {
    return {
      kind: 'prev_hash',
      ...at,
      detail: `prev_hash is ${hex(row.prev_hash)}, but the ${position === 1 ? 'chain starts from' : 'previous record has hash'} ${hex(chain.prevHash)}: ${position === 1 ? 'the chain start' : 'the previous record'} was changed`,
    };
  }
  const computed = recordHash(row.prev_hash, fieldsOf(row));
  if (!computed.equals(row.hash)) {
    const hints = disagreements(row);
    return {
      kind: 'hash',
      ...at,
      detail: `stored hash ${hex(row.hash)}, computed ${hex(computed)}: the record was changed after it was written${hints.length > 0 ? ` (${hints.join('; ')})` : ''}`,
    };
  }
  return undefined;
}

/** Walks every chain; returns the counts and the first broken link, if any. */
export async function verifyAuditTrail(
  pool: pg.Pool,
  options: AuditVerifyOptions = {},
): Promise<AuditVerification> {
  const batchSize = options.batchSize ?? 2000;
  let records = 0;
  let chains = 0;
  const result = (broken?: AuditBreak): AuditVerification => ({ ok: !broken, records, chains, broken });
  // One snapshot, read only: what it ends with (COMMIT) changes nothing.
  return inTransaction(
    pool,
    async (client) => {
      let chain: Chain | undefined;
      let last: WalkRow | undefined;
      for (;;) {
        const { rows } = await client.query<WalkRow>(
          last === undefined
            ? { text: walkQuery(false), values: [batchSize] }
            : { text: walkQuery(true), values: [batchSize, last.chain_key, last.chain_position] },
        );
        for (const row of rows) {
          if (chain === undefined || row.chain_key !== chain.key) {
            const broken = chain === undefined ? undefined : checkEnd(chain);
            if (broken !== undefined) return result(broken);
            if (!row.has_head) {
              return result({
                kind: 'no_head',
                recordId: Number(row.id),
                chainKey: row.chain_key,
                modelId: modelOf(row.chain_key),
                position: Number(row.chain_position),
                detail: `the chain '${row.chain_key}' has records but no head: its head was deleted`,
              });
            }
            chains++;
            chain = {
              key: row.chain_key,
              expectedPosition: Number(row.first_position),
              prevHash: row.first_prev_hash as Buffer,
              lastId: null,
              row,
            };
          }
          const broken = checkRecord(chain, row);
          if (broken !== undefined) return result(broken);
          records++;
          chain.expectedPosition++;
          chain.prevHash = row.hash;
          chain.lastId = Number(row.id);
          chain.row = row;
        }
        options.onProgress?.(records);
        if (rows.length < batchSize) break;
        last = rows[rows.length - 1];
      }
      if (chain !== undefined) {
        const broken = checkEnd(chain);
        if (broken !== undefined) return result(broken);
      }
      // Chains that should hold records but hold none: every record of theirs was deleted.
      const { rows: empty } = await client.query<{
        chain_key: string;
        last_id: string | number;
        last_position: string | number;
        first_position: string | number;
      }>(
        `SELECT chain_key, last_id, last_position, first_position FROM audit_chain_heads h
        WHERE last_position >= first_position
          AND NOT EXISTS (SELECT 1 FROM audit_records r WHERE r.chain_key = h.chain_key)
        ORDER BY chain_key LIMIT 1`,
      );
      const emptied = empty[0];
      if (emptied !== undefined) {
        return result({
          kind: 'head',
          recordId: Number(emptied.last_id),
          chainKey: emptied.chain_key,
          modelId: modelOf(emptied.chain_key),
          position: Number(emptied.last_position),
          detail: `the chain has no records, but its head says positions ${emptied.first_position}–${emptied.last_position}: they were deleted`,
        });
      }
      return result();
    },
    { begin: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' },
  );
}

/** One line for a person: `record 42 (model openai/gpt-4, position 3): hash: …`. */
export function describeBreak(broken: AuditBreak): string {
  const where = broken.modelId === null ? `chain ${broken.chainKey}` : `model ${broken.modelId}`;
  const record = broken.recordId === null ? 'chain' : `record ${broken.recordId}`;
  const position = broken.position === null ? '' : `, position ${broken.position}`;
  return `${record} (${where}${position}): ${broken.kind}: ${broken.detail}`;
}
