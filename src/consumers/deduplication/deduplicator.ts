/**
 * The runtime's de-duplication for a consumer whose effects have no unique event id of their own: which
 * deliveries of a batch are new, decided and recorded in the batch's transaction.
 *
 * - A delivery with a producer stamp (src/bus/producer-sequence.ts) by its stream (./stream-marks.ts):
 *   the highs are cached here, so the common batch — new numbers above the high — reads nothing, and one
 *   statement at the end moves the highs (compare-and-set against the cached values: a consumer that
 *   took over the queue meanwhile makes it fail with a serialization error, and the runtime retries the
 *   batch with fresh values) and records the gaps. Copies at or below a high (retries, replays, resends)
 *   cost a look at the gaps, which are locked and edited in the same transaction.
 * - A delivery without a stamp by its event id, in `consumer_applied_events` (a row per event).
 * - A self-test event is also recorded there, where the self-test looks for it.
 */
import type pg from 'pg';
import { stampOf } from '../../bus/producer-sequence.ts';
import { type BatchWrite, batchStatement } from '../../db/batch-statement.ts';
import type { Delivery } from '../consumer.ts';
import { advance, claimGaps, classify, type Gap, type GapEdits, type StreamCopy } from './stream-marks.ts';

/** A high moved by another consumer of the queue while this one applied a batch: retry the batch. */
export class StaleStreamError extends Error {
  /** SQLSTATE serialization_failure: the runtime retries such a batch in place. */
  readonly code = '40001';
}

/** What {@link Deduplicator.select} decided, for {@link Deduplicator.record} and the cache. */
export interface Selection {
  /** The deliveries to apply, in batch order. */
  fresh: Delivery[];
  /** Per stream touched: the high as read, and the new one. */
  highs: Map<string, { before: number; after: number }>;
  /** Gaps jumped over, and edits of the gaps claimed. */
  edits: GapEdits;
}

const isEmpty = (selection: Selection) =>
  selection.highs.size === 0 &&
  selection.edits.added.length === 0 &&
  selection.edits.removed.length === 0 &&
  selection.edits.shortened.length === 0;

/** At most this many streams' highs are cached; a stream evicted is read again when it comes back. */
const CACHE_LIMIT = 10_000;

/**
 * Adds `item` to `key`'s list, in place: a batch's copies gather under a handful of streams, and copying
 * the list at each one (as spreading it into a new array does) made the decision quadratic in the batch.
 */
function appendTo<T>(lists: Map<string, T[]>, key: string, item: T): void {
  const list = lists.get(key);
  if (list === undefined) lists.set(key, [item]);
  else list.push(item);
}

const SEPARATOR = '\t';
const streamKey = (producer: string, eventType: string) => `${producer}${SEPARATOR}${eventType}`;
const splitKey = (key: string) => key.split(SEPARATOR) as [string, string];

export class Deduplicator {
  readonly #consumer: string;
  /** High per stream as last committed by this consumer (insertion order: oldest first, for eviction). */
  readonly #highs = new Map<string, number>();

  constructor(consumer: string) {
    this.#consumer = consumer;
  }

  /** Which of `deliveries` are new, in `client`'s transaction (gaps claimed are locked until it ends). */
  async select(client: pg.ClientBase, deliveries: readonly Delivery[]): Promise<Selection> {
    const stamped: Array<{ delivery: Delivery; copy: StreamCopy }> = [];
    const unstamped: Delivery[] = [];
    const ids = new Set<string>();
    for (const delivery of deliveries) {
      // An event twice in the batch counts once, whichever way it is identified.
      if (ids.has(delivery.id)) continue;
      ids.add(delivery.id);
      const stamp = stampOf(delivery.properties.headers);
      const eventType = delivery.event?.event_type;
      if (stamp === undefined || eventType === undefined) unstamped.push(delivery);
      else
        stamped.push({
          delivery,
          copy: { stream: streamKey(stamp.producer, eventType), sequence: stamp.sequence },
        });
    }
    const fresh = new Set<Delivery>();
    const highs = new Map<string, { before: number; after: number }>();
    const edits: GapEdits = { shortened: [], removed: [], added: [] };
    if (stamped.length > 0) {
      const known = await this.#highsOf(client, [...new Set(stamped.map((item) => item.copy.stream))]);
      const verdicts = classify(
        stamped.map((item) => item.copy),
        known,
      );
      const above = new Map<string, number[]>();
      const below = new Map<string, Array<{ delivery: Delivery; sequence: number }>>();
      stamped.forEach((item, index) => {
        const verdict = verdicts[index];
        if (verdict === 'new') {
          fresh.add(item.delivery);
          appendTo(above, item.copy.stream, item.copy.sequence);
        } else if (verdict === 'below') {
          appendTo(below, item.copy.stream, { delivery: item.delivery, sequence: item.copy.sequence });
        }
      });
      if (below.size > 0) {
        const gaps = await this.#lockGaps(client, below);
        for (const [stream, copies] of below) {
          const claimed = claimGaps(
            stream,
            copies.map((copy) => copy.sequence),
            gaps.get(stream) ?? [],
            edits,
          );
          for (const copy of copies) if (claimed.has(copy.sequence)) fresh.add(copy.delivery);
        }
      }
      for (const [stream, numbers] of above) {
        const before = known.get(stream) ?? 0;
        const moved = advance(before, numbers);
        highs.set(stream, { before, after: moved.high });
        for (const gap of moved.gaps) edits.added.push({ stream, ...gap });
      }
    }
    if (unstamped.length > 0) {
      const recorded = await recordApplied(client, this.#consumer, unstamped);
      for (const delivery of unstamped) if (recorded.has(delivery.id)) fresh.add(delivery);
    }
    // Self-test events carrying a stamp are also recorded by id, where the self-test watches for them.
    const byId = new Set(unstamped);
    const selfTests = [...fresh].filter(
      (delivery) => delivery.event?.source === 'selftest' && !byId.has(delivery),
    );
    if (selfTests.length > 0) await recordApplied(client, this.#consumer, selfTests);
    return { fresh: deliveries.filter((delivery) => fresh.has(delivery)), highs, edits };
  }

  /**
   * The writes that record the selection's highs and gaps, for the batch's one statement
   * (src/db/batch-statement.ts), ending in a check that fails the statement, undoing it all, when
   * another consumer moved a stream meanwhile (a compare-and-set on the highs read).
   */
  recordWrites(selection: Selection): BatchWrite[] {
    const { highs, edits } = selection;
    const moved = [...highs].filter(([, high]) => high.before > 0).sort(([a], [b]) => (a < b ? -1 : 1));
    const created = [...highs].filter(([, high]) => high.before === 0).sort(([a], [b]) => (a < b ? -1 : 1));
    const producers = (streams: readonly string[]) => streams.map((stream) => splitKey(stream)[0]);
    const types = (streams: readonly string[]) => streams.map((stream) => splitKey(stream)[1]);
    const movedKeys = moved.map(([stream]) => stream);
    const createdKeys = created.map(([stream]) => stream);
    const shortenedKeys = edits.shortened.map((gap) => gap.stream);
    const removedKeys = edits.removed.map((gap) => gap.stream);
    const addedKeys = edits.added.map((gap) => gap.stream);
    const consumer = this.#consumer;
    return [
      {
        name: 'moved',
        text: `UPDATE consumer_stream_marks m SET high = e.after, updated_at = now()
                   FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::bigint[]) AS e(producer, event_type, before, after)
                  WHERE m.consumer = $1 AND m.producer = e.producer AND m.event_type = e.event_type
                    AND m.high = e.before
                 RETURNING 1`,
        values: [
          consumer,
          producers(movedKeys),
          types(movedKeys),
          moved.map(([, high]) => high.before),
          moved.map(([, high]) => high.after),
        ],
      },
      {
        name: 'created',
        text: `INSERT INTO consumer_stream_marks (consumer, producer, event_type, high, updated_at)
                 SELECT $1, producer, event_type, high, now()
                   FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS c(producer, event_type, high)
                 ON CONFLICT DO NOTHING
                 RETURNING 1`,
        values: [consumer, producers(createdKeys), types(createdKeys), created.map(([, high]) => high.after)],
      },
      {
        name: 'shortened',
        text: `UPDATE consumer_stream_gaps g SET last_sequence = s.last
                   FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::bigint[]) AS s(producer, event_type, first, last)
                  WHERE g.consumer = $1 AND g.producer = s.producer AND g.event_type = s.event_type
                    AND g.first_sequence = s.first`,
        values: [
          consumer,
          producers(shortenedKeys),
          types(shortenedKeys),
          edits.shortened.map((gap) => gap.first),
          edits.shortened.map((gap) => gap.last),
        ],
      },
      {
        name: 'removed',
        text: `DELETE FROM consumer_stream_gaps g
                  USING unnest($2::uuid[], $3::text[], $4::bigint[]) AS r(producer, event_type, first)
                  WHERE g.consumer = $1 AND g.producer = r.producer AND g.event_type = r.event_type
                    AND g.first_sequence = r.first`,
        values: [consumer, producers(removedKeys), types(removedKeys), edits.removed.map((gap) => gap.first)],
      },
      {
        name: 'added',
        text: `INSERT INTO consumer_stream_gaps (consumer, producer, event_type, first_sequence, last_sequence)
                 SELECT $1, producer, event_type, first, last
                   FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::bigint[]) AS a(producer, event_type, first, last)`,
        values: [
          consumer,
          producers(addedKeys),
          types(addedKeys),
          edits.added.map((gap) => gap.first),
          edits.added.map((gap) => gap.last),
        ],
      },
      {
        name: 'streams_check',
        final: true,
        text: 'consumer_stream_check((SELECT count(*) FROM moved), $1, (SELECT count(*) FROM created), $2)',
        values: [moved.length, created.length],
      },
    ];
  }

  /** Records the selection's highs and gaps as a statement of their own, in the caller's transaction. */
  async record(client: pg.ClientBase, selection: Selection): Promise<void> {
    if (isEmpty(selection)) return;
    const statement = batchStatement('dedup.record', this.recordWrites(selection));
    try {
      await client.query(statement);
    } catch (error) {
      throw (error as { code?: unknown }).code === '40001'
        ? new StaleStreamError(`consumer ${this.#consumer}: a stream's high moved under this batch`, {
            cause: error,
          })
        : error;
    }
  }

  /**
   * The selection of `deliveries` when it needs nothing read: every delivery stamped, its stream's high
   * cached and its number above it, no self-test event (those are recorded by id). Undefined otherwise:
   * then {@link select}, in a transaction.
   */
  decide(deliveries: readonly Delivery[]): Selection | undefined {
    const copies: StreamCopy[] = [];
    const highs = new Map<string, { before: number; after: number }>();
    for (const delivery of deliveries) {
      const stamp = stampOf(delivery.properties.headers);
      const eventType = delivery.event?.event_type;
      if (stamp === undefined || eventType === undefined || delivery.event?.source === 'selftest')
        return undefined;
      const stream = streamKey(stamp.producer, eventType);
      const high = this.#highs.get(stream);
      if (high === undefined) return undefined;
      copies.push({ stream, sequence: stamp.sequence });
      if (!highs.has(stream)) highs.set(stream, { before: high, after: high });
    }
    const known = new Map([...highs].map(([stream, high]) => [stream, high.before]));
    const verdicts = classify(copies, known);
    const fresh: Delivery[] = [];
    const above = new Map<string, number[]>();
    for (const [index, verdict] of verdicts.entries()) {
      if (verdict === 'below') return undefined;
      if (verdict === 'repeat') continue;
      const copy = copies[index] as StreamCopy;
      fresh.push(deliveries[index] as Delivery);
      appendTo(above, copy.stream, copy.sequence);
    }
    const edits: GapEdits = { shortened: [], removed: [], added: [] };
    for (const [stream, numbers] of above) {
      const before = known.get(stream) as number;
      const moved = advance(before, numbers);
      highs.set(stream, { before, after: moved.high });
      for (const gap of moved.gaps) edits.added.push({ stream, ...gap });
    }
    for (const [stream, high] of highs) if (high.after === high.before) highs.delete(stream);
    return { fresh, highs, edits };
  }

  /** After the transaction committed: the cache takes the new highs. */
  committed(selection: Selection): void {
    for (const [stream, high] of selection.highs) {
      this.#highs.delete(stream);
      this.#highs.set(stream, high.after);
    }
    while (this.#highs.size > CACHE_LIMIT) this.#highs.delete(this.#highs.keys().next().value as string);
  }

  /** After a transaction that failed (or whose commit is in doubt): read the highs again. */
  forget(): void {
    this.#highs.clear();
  }

  /** The highs of `streams`: cached, or read (0 for a stream without a row). */
  async #highsOf(client: pg.ClientBase, streams: string[]): Promise<Map<string, number>> {
    const highs = new Map<string, number>();
    const missing: string[] = [];
    for (const stream of streams) {
      const high = this.#highs.get(stream);
      if (high === undefined) missing.push(stream);
      else highs.set(stream, high);
    }
    if (missing.length > 0) {
      const { rows } = await client.query<{ producer: string; event_type: string; high: string }>({
        name: 'dedup.highs',
        text: `SELECT m.producer, m.event_type, m.high
                 FROM unnest($2::uuid[], $3::text[]) AS s(producer, event_type)
                 JOIN consumer_stream_marks m
                   ON m.consumer = $1 AND m.producer = s.producer AND m.event_type = s.event_type`,
        values: [
          this.#consumer,
          missing.map((stream) => splitKey(stream)[0]),
          missing.map((stream) => splitKey(stream)[1]),
        ],
      });
      for (const stream of missing) highs.set(stream, 0);
      for (const row of rows) highs.set(streamKey(row.producer, row.event_type), Number(row.high));
    }
    return highs;
  }

  /** The gaps holding any of `below`'s numbers, locked until the transaction ends. */
  async #lockGaps(
    client: pg.ClientBase,
    below: Map<string, Array<{ sequence: number }>>,
  ): Promise<Map<string, Gap[]>> {
    const producers: string[] = [];
    const types: string[] = [];
    const numbers: number[] = [];
    for (const [stream, copies] of below) {
      const [producer, type] = splitKey(stream);
      for (const copy of copies) {
        producers.push(producer);
        types.push(type);
        numbers.push(copy.sequence);
      }
    }
    const { rows } = await client.query<{
      producer: string;
      event_type: string;
      first: string;
      last: string;
    }>({
      name: 'dedup.lock-gaps',
      text: `SELECT g.producer, g.event_type, g.first_sequence AS first, g.last_sequence AS last
               FROM consumer_stream_gaps g
              WHERE g.consumer = $1
                AND EXISTS (SELECT 1 FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS c(producer, event_type, n)
                             WHERE c.producer = g.producer AND c.event_type = g.event_type
                               AND c.n BETWEEN g.first_sequence AND g.last_sequence)
              ORDER BY g.producer, g.event_type, g.first_sequence
              FOR UPDATE OF g`,
      values: [this.#consumer, producers, types, numbers],
    });
    const gaps = new Map<string, Gap[]>();
    for (const row of rows) {
      const stream = streamKey(row.producer, row.event_type);
      appendTo(gaps, stream, { first: Number(row.first), last: Number(row.last) });
    }
    return gaps;
  }
}

/** Records `deliveries` as applied by `consumer` by event id; returns the ids that were not recorded before. */
export async function recordApplied(
  client: pg.ClientBase,
  consumer: string,
  deliveries: readonly Delivery[],
): Promise<Set<string>> {
  const { rows } = await client.query<{ event_id: string }>({
    name: 'dedup.applied',
    text: `INSERT INTO consumer_applied_events (consumer, event_id)
           SELECT $1, id FROM unnest($2::uuid[]) AS id
           ON CONFLICT DO NOTHING RETURNING event_id`,
    values: [consumer, deliveries.map((delivery) => delivery.id)],
  });
  return new Set(rows.map((row) => row.event_id));
}
