/**
 * One batch applied to PostgreSQL exactly once: the consumer's effects, the records that de-duplicate them
 * (./deduplication/) and the batch's count in the loss ledger, committed together — or none of them.
 *
 * Three ways, by what the consumer offers (./consumer.ts):
 * - `writes`, de-duplicated by the runtime: one statement (src/db/batch-statement.ts) holding the effects,
 *   the de-duplication records and the ledger rows; when the deduplicator can decide the batch from what it
 *   cached, that statement is the whole transaction (one round trip, no BEGIN or COMMIT).
 * - `writes`, de-duplicated by the consumer in its own table (`deduplicates`): the batch, each id once, as
 *   one statement whose checks fail it unless every delivery was new.
 * - otherwise: a transaction in which the consumer's `apply` runs between the runtime's reads and records.
 *
 * Self-test events are recorded as applied (and counted in the ledger) with no effect. A failure throws,
 * as PostgreSQL reported it: the caller tells an outage, a conflict and a faulty message apart.
 */
import type pg from 'pg';
import { batchStatement } from '../db/batch-statement.ts';
import { inTransaction, withClient } from '../db/transaction.ts';
import { appliedRows } from '../ledger/applied-rows.ts';
import { addLedgerRows, ledgerWrite } from '../ledger/ledger-store.ts';
import type { Consumer, Delivery } from './consumer.ts';
import { type Deduplicator, recordApplied, type Selection } from './deduplication/deduplicator.ts';

/** What a batch is applied for, and who hears how it went. */
export interface BatchTarget {
  pool: pg.Pool;
  consumer: Consumer;
  /** Which deliveries are new, for a consumer that does not de-duplicate in its own table. */
  deduplicator: Deduplicator;
  /** The batch's first statement is on its way to PostgreSQL (the caller may prepare the next batch). */
  statementSent(): void;
  /**
   * Committed: `applied` were new (self-test events included), `duplicates` deliveries were skipped, and
   * `effective` had an effect (what `afterCommit` gets).
   */
  committed(applied: readonly Delivery[], duplicates: number, effective: Delivery[]): void;
}

/**
 * Applies `deliveries` in one transaction. `afterConflict`: the previous attempt of the same batch hit a
 * deadlock or serialization failure (a consumer that prepared from a cache reads again).
 */
export async function applyBatch(
  target: BatchTarget,
  deliveries: Delivery[],
  afterConflict: boolean,
): Promise<void> {
  const { consumer } = target;
  if (!consumer.deduplicates && consumer.writes !== undefined) {
    return applyInOneStatement(target, deliveries, afterConflict);
  }
  if (
    consumer.deduplicates &&
    consumer.writes !== undefined &&
    (await applyAllInOneStatement(target, deliveries, afterConflict))
  ) {
    return;
  }
  return applyInTransaction(target, deliveries);
}

/** What a transaction applied: new (`todo`), with an effect, and what the deduplicator records once committed. */
interface Applied {
  todo: Delivery[];
  effective: Delivery[];
  selection?: Selection | undefined;
}

async function applyInTransaction(target: BatchTarget, deliveries: Delivery[]): Promise<void> {
  const { consumer, deduplicator } = target;
  let result: Applied;
  try {
    result = await inTransaction(
      target.pool,
      async (client) => {
        const { todo, effective, selection } = consumer.deduplicates
          ? await applyDeduplicating(consumer, deliveries, client)
          : await applyRecorded(target, deliveries, client);
        if (todo.length > 0) {
          await addLedgerRows(
            client,
            appliedRows(
              consumer.name,
              todo.map((delivery) => delivery.event),
            ),
          );
        }
        return { todo, effective, selection };
      },
      { onBeginSent: () => target.statementSent() },
    );
  } catch (error) {
    // Whether the commit happened or not, what the deduplicator cached may be stale: it reads again.
    deduplicator.forget();
    throw error;
  }
  const { todo, effective, selection } = result;
  if (selection !== undefined) deduplicator.committed(selection);
  target.committed(todo, deliveries.length - todo.length, effective);
}

/**
 * A consumer with `writes`: the batch's effects, its de-duplication records and its ledger rows as one
 * statement. When the deduplicator can decide the batch from what it cached (the common case: every
 * delivery stamped, above its stream's high), that statement is the whole transaction. Otherwise (copies
 * below a high, streams or events to look up) the reads and the statement run in a transaction of their own.
 */
async function applyInOneStatement(
  target: BatchTarget,
  deliveries: Delivery[],
  afterConflict: boolean,
): Promise<void> {
  const { consumer, deduplicator } = target;
  await consumer.prepare?.(target.pool, deliveries, { afterConflict });
  const decided = deduplicator.decide(deliveries);
  /** The selection's statement: effects, de-duplication records and ledger rows. */
  const apply = async (client: pg.PoolClient, selection: Selection, transaction: boolean) => {
    const todo = selection.fresh;
    const effective = todo.filter((delivery) => delivery.event?.source !== 'selftest');
    if (todo.length > 0 || transaction) {
      const writes = consumer.writes?.(effective) ?? [];
      const ledger = ledgerWrite(
        appliedRows(
          consumer.name,
          todo.map((delivery) => delivery.event),
        ),
      );
      const done = client.query(
        batchStatement(`batch.${consumer.name}`, [
          ...writes,
          ...deduplicator.recordWrites(selection),
          ledger,
        ]),
      );
      target.statementSent();
      await done;
    }
    return { selection, todo, effective };
  };
  let applied: Applied & { selection: Selection };
  try {
    applied =
      decided === undefined
        ? await inTransaction(
            target.pool,
            async (client) => apply(client, await deduplicator.select(client, deliveries), true),
            { onBeginSent: () => target.statementSent() },
          )
        : await withClient(target.pool, (client) => apply(client, decided, false));
  } catch (error) {
    // Whether the commit happened or not, what the deduplicator cached may be stale: it reads again.
    deduplicator.forget();
    throw error;
  }
  deduplicator.committed(applied.selection);
  target.committed(applied.todo, deliveries.length - applied.todo.length, applied.effective);
}

/**
 * A consumer that de-duplicates itself and has `writes`: the batch (each id once) as one statement, if
 * the consumer can write it so, with checks that fail it unless every delivery was new. Returns false
 * when the consumer cannot (or the batch holds self-test events, recorded by id): then the caller
 * applies it in a transaction.
 */
async function applyAllInOneStatement(
  target: BatchTarget,
  deliveries: Delivery[],
  afterConflict: boolean,
): Promise<boolean> {
  const { consumer } = target;
  const ids = new Set<string>();
  const unique: Delivery[] = [];
  for (const delivery of deliveries) {
    if (delivery.event?.source === 'selftest') return false;
    if (ids.has(delivery.id)) continue;
    ids.add(delivery.id);
    unique.push(delivery);
  }
  await consumer.prepare?.(target.pool, unique, { afterConflict });
  const writes = consumer.writes?.(unique);
  if (writes === undefined) return false;
  const ledger = ledgerWrite(
    appliedRows(
      consumer.name,
      unique.map((delivery) => delivery.event),
    ),
  );
  await withClient(target.pool, async (client) => {
    const done = client.query(batchStatement(`batch.${consumer.name}`, [...writes, ledger]));
    target.statementSent();
    await done;
  });
  target.committed(unique, deliveries.length - unique.length, unique);
  return true;
}

/**
 * The runtime de-duplicates (./deduplication/deduplicator.ts: by producer stream, or by event id), and
 * the consumer applies those that were new. Returns what was applied (`todo`, self-test events
 * included), what had an effect, and what the deduplicator records once committed.
 */
async function applyRecorded(
  target: BatchTarget,
  deliveries: Delivery[],
  client: pg.PoolClient,
): Promise<{ todo: Delivery[]; effective: Delivery[]; selection: Selection }> {
  const selection = await target.deduplicator.select(client, deliveries);
  const todo = selection.fresh;
  const effective = todo.filter((delivery) => delivery.event?.source !== 'selftest');
  if (effective.length > 0) await target.consumer.apply?.(effective, client);
  await target.deduplicator.record(client, selection);
  return { todo, effective, selection };
}

/**
 * The consumer de-duplicates in its own table (`deduplicates`): it gets each id of the batch once and
 * says which it applied. Self-test events, which have no effect to de-duplicate by, are still recorded in
 * `consumer_applied_events` (where the self-test looks for them).
 */
async function applyDeduplicating(
  consumer: Consumer,
  deliveries: Delivery[],
  client: pg.PoolClient,
): Promise<{ todo: Delivery[]; effective: Delivery[]; selection?: undefined }> {
  const ids = new Set<string>();
  const selfTest: Delivery[] = [];
  const candidates: Delivery[] = [];
  for (const delivery of deliveries) {
    if (ids.has(delivery.id)) continue;
    ids.add(delivery.id);
    (delivery.event?.source === 'selftest' ? selfTest : candidates).push(delivery);
  }
  let todo: Delivery[] = [];
  if (selfTest.length > 0) {
    const fresh = await recordApplied(client, consumer.name, selfTest);
    todo = selfTest.filter((delivery) => fresh.has(delivery.id));
  }
  let effective: Delivery[] = [];
  if (candidates.length > 0) {
    const applied = await consumer.apply?.(candidates, client);
    if (!Array.isArray(applied)) {
      throw new TypeError(`consumer ${consumer.name} de-duplicates but did not say what it applied`);
    }
    effective = applied;
  }
  return { todo: todo.length === 0 ? effective : [...todo, ...effective], effective };
}
