/**
 * What a consumer is: a queue, and a function that applies a batch of messages inside a PostgreSQL
 * transaction the runtime opens, de-duplicates and commits. Everything else — connections, batching,
 * validation, retries, dead-lettering, pausing while PostgreSQL is away — is the runtime's.
 */
import type pg from 'pg';
import type { TelemetryEvent } from '../bus/event-schemas.ts';
import type { BatchWrite } from '../db/batch-statement.ts';

/** A delivery as a consumer sees it. */
export interface Delivery {
  /** The validated event; undefined only for consumers that take raw messages (`validate: false`). */
  event: TelemetryEvent | undefined;
  /** The id the runtime de-duplicates on: the event_id (or, for raw messages, the consumer's `idOf`). */
  id: string;
  content: Buffer;
  exchange: string;
  routingKey: string;
  redelivered: boolean;
  properties: {
    contentType?: string | undefined;
    appId?: string | undefined;
    messageId: string | undefined;
    correlationId: string | undefined;
    type: string | undefined;
    timestamp: number | undefined;
    headers: Record<string, unknown>;
  };
}

export interface Consumer {
  /** Short name, recorded with every event id it applied: `audit`, `analytics`, `logging`, `metrics`, `dlq`. */
  name: string;
  queue: string;
  /**
   * Validate each message against the event schemas (a message that fails is poison: dead-lettered at
   * once). Off only for the dead-letter archive, whose messages are whatever failed. @default true
   */
  validate?: boolean;
  /** The de-duplication id of a raw message (with `validate: false`). */
  idOf?: (delivery: Omit<Delivery, 'id' | 'event'>) => string;
  /**
   * The consumer de-duplicates by event id in its own effect table (a unique event id written in the same
   * transaction as the effect): the runtime then records nothing in `consumer_applied_events` for it
   * (self-test events aside, which have no effect), hands `apply` every delivery of the batch (each id
   * once), and `apply` returns those it applied; the others count as duplicates. @default false
   */
  deduplicates?: boolean;
  /**
   * Applies the deliveries not applied before (with `deduplicates`: not known to the runtime as applied),
   * in queue order, in the runtime's transaction (`client`). With `deduplicates` it returns the deliveries
   * it applied. Throw to fail the batch; the runtime then finds the failing message(s) and retries only
   * those.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: the consumers that do not de-duplicate return nothing.
  apply?(deliveries: Delivery[], client: pg.PoolClient): Promise<void | Delivery[]>;
  /**
   * The batch's effects as writes (always the same list, whatever the batch), which the runtime sends
   * with its own — the de-duplication records and the ledger — as one statement
   * (src/db/batch-statement.ts): the batch's transaction in one round trip. Throw to fail the batch, as
   * from `apply`. For a consumer that does not de-duplicate, in place of `apply`: its effects on the new
   * deliveries. For one that does (`deduplicates`), beside `apply`: the effects of every delivery given,
   * with checks that fail the statement (SQLSTATE 40001) unless all of them were new; or undefined when
   * it cannot do this batch so, and the runtime then uses `apply`, in a transaction.
   */
  writes?(deliveries: Delivery[]): BatchWrite[] | undefined;
  /**
   * With `writes`: awaited before each attempt at a batch, outside its statement, to read what `writes`
   * needs and caches. `afterConflict`: the previous attempt failed on a serialization failure (one of
   * the batch's checks found something read before had moved), so what was cached may be stale.
   */
  prepare?(
    pool: pg.Pool,
    deliveries: readonly Delivery[],
    attempt: { afterConflict: boolean },
  ): Promise<void>;
  /**
   * Called after the transaction committed, with the deliveries that had an effect (side effects that
   * must not run twice, e.g. log lines; what the consumer caches of what it wrote).
   */
  afterCommit?(deliveries: Delivery[]): void;
}
