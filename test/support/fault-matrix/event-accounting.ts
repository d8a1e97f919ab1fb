/**
 * Test support: counts every event of a fault-matrix scenario in every consumer's tables, against the
 * ground truth of what was sent, to say how many were lost and how many applied twice.
 *
 * - The audit trail holds every request's event with its correlation id: an answered request without a
 *   record is lost; two records of one request are a duplicate.
 * - The metrics consumer keeps a raw row per event: an event routed to it (the topology's routing, as the
 *   ledger computes it) and missing there is lost; a second row is a duplicate.
 * - Analytics and logging keep no row per event (they de-duplicate by producer stream): what they
 *   applied is counted per event type in the ledger, in the same transaction as the effect, against the
 *   events of that type routed to them: fewer is loss, more is a double count. The analytics counters
 *   are held to the same numbers, so an effect applied twice shows even if its ledger row did not.
 * - The loss ledger (telemetry_ledger) must agree: no consumer missing anything.
 */
import type pg from 'pg';
import { LedgerQuery } from '../../../src/ledger/ledger-query.ts';
import { type LedgerConsumer, routedTypes } from '../../../src/ledger/ledger-summary.ts';
import { waitUntil } from '../wait-until.ts';

/** What was sent: the correlation ids of answered requests, or the events themselves by id. */
export type GroundTruth =
  | { kind: 'requests'; answered: ReadonlySet<string> }
  | { kind: 'events'; events: ReadonlyMap<string, string> };

export interface ConsumerCount {
  consumer: LedgerConsumer;
  expected: number;
  applied: number;
  lost: number;
  duplicates: number;
}

export interface Accounting {
  /** Events sent: answered requests, or distinct events published. */
  sent: number;
  /** Distinct events missing from at least one consumer. */
  lost: number;
  /** Effects applied more than once, over all consumers. */
  duplicates: number;
  consumers: ConsumerCount[];
  /** What the loss ledger says each consumer misses (null if unreadable). */
  ledgerMissing: Record<string, number> | null;
}

const CONSUMERS: readonly LedgerConsumer[] = ['audit', 'analytics', 'logging', 'metrics'];

/** Counts once. While a scenario recovers, "lost" means "not applied yet". */
export async function accountEvents(pool: pg.Pool, truth: GroundTruth): Promise<Accounting> {
  const { rows: audit } = await pool.query<{ correlation_id: string; event_id: string; event_type: string }>(
    `SELECT correlation_id, event_id, event_type FROM audit_records WHERE event_type <> 'dlq.replayed'`,
  );
  const lostEvents = new Set<string>();
  let duplicates = 0;
  // Every event that exists, by id: from the audit trail for requests (an unanswered request's event
  // may exist too, and must then be applied once like any other), or as published.
  const events = new Map<string, string>();
  let auditCount: ConsumerCount;
  if (truth.kind === 'requests') {
    const perRequest = new Map<string, number>();
    for (const row of audit) {
      events.set(row.event_id, row.event_type);
      perRequest.set(row.correlation_id, (perRequest.get(row.correlation_id) ?? 0) + 1);
    }
    let lost = 0;
    for (const id of truth.answered) {
      if (!perRequest.has(id)) {
        lost++;
        lostEvents.add(`request:${id}`);
      }
    }
    const twice = [...perRequest.values()].reduce((sum, n) => sum + n - 1, 0);
    auditCount = {
      consumer: 'audit',
      expected: truth.answered.size,
      applied: audit.length,
      lost,
      duplicates: twice,
    };
  } else {
    for (const [id, type] of truth.events) events.set(id, type);
    const recorded = new Set(audit.map((row) => row.event_id));
    const expected = [...truth.events].filter(([, type]) => routedTypes('audit').has(type));
    const missing = expected.filter(([id]) => !recorded.has(id));
    for (const [id] of missing) lostEvents.add(id);
    auditCount = {
      consumer: 'audit',
      expected: expected.length,
      applied: audit.length,
      lost: missing.length,
      duplicates: Math.max(0, audit.length - (expected.length - missing.length)),
    };
  }
  duplicates += auditCount.duplicates;

  const counts: ConsumerCount[] = [auditCount];
  const ledger = await ledgerApplied(pool);
  for (const consumer of CONSUMERS.filter((name) => name !== 'audit')) {
    const routed = routedTypes(consumer);
    const expected = [...events].filter(([, type]) => routed.has(type));
    let applied: number;
    let missing: number;
    let ledgerDuplicates = 0;
    if (consumer === 'metrics') {
      const { rows } = await pool.query<{ event_id: string }>('SELECT DISTINCT event_id FROM metrics_events');
      const ids = new Set(rows.map((row) => row.event_id));
      const lost = expected.filter(([id]) => !ids.has(id));
      for (const [id] of lost) lostEvents.add(id);
      applied = ids.size;
      missing = lost.length;
    } else {
      // Per type: the events of the truth against the ledger's applied count (types the truth does not
      // cover, such as api.request when counting requests, are not compared).
      const byType = new Map<string, number>();
      for (const [, type] of expected) byType.set(type, (byType.get(type) ?? 0) + 1);
      applied = 0;
      missing = 0;
      for (const [type, count] of byType) {
        const seen = ledger.get(`${consumer}\t${type}`) ?? 0;
        applied += Math.min(seen, count);
        missing += Math.max(0, count - seen);
        for (let n = 0; n < count - seen; n++) lostEvents.add(`${consumer}:${type}:${n}`);
        ledgerDuplicates += Math.max(0, seen - count);
      }
    }
    const effectDuplicates = Math.max(ledgerDuplicates, await duplicateEffects(pool, consumer, expected));
    duplicates += effectDuplicates;
    counts.push({
      consumer,
      expected: expected.length,
      applied,
      lost: missing,
      duplicates: effectDuplicates,
    });
  }

  return {
    sent: truth.kind === 'requests' ? truth.answered.size : truth.events.size,
    lost: lostEvents.size,
    duplicates,
    consumers: counts,
    ledgerMissing: await ledgerMissing(pool),
  };
}

/** Effects applied beyond one per event: raw metrics rows, and analytics counters above their events. */
async function duplicateEffects(
  pool: pg.Pool,
  consumer: LedgerConsumer,
  expected: ReadonlyArray<readonly [string, string]>,
): Promise<number> {
  if (consumer === 'metrics') {
    const { rows } = await pool.query<{ extra: string | null }>(
      'SELECT sum(n - 1) AS extra FROM (SELECT count(*) AS n FROM metrics_events GROUP BY event_id) c',
    );
    return Number(rows[0]?.extra ?? 0);
  }
  if (consumer === 'analytics') {
    const ofType = (test: (type: string) => boolean) => expected.filter(([, type]) => test(type)).length;
    const { rows } = await pool.query<{
      queries: string | null;
      filters: string | null;
      lifecycle: string | null;
    }>(
      `SELECT (SELECT sum(queries) FROM analytics_model_queries) AS queries,
              (SELECT sum(executions) FROM analytics_filter_executions) AS filters,
              (SELECT sum(events) FROM analytics_model_lifecycle) AS lifecycle`,
    );
    const row = rows[0];
    // Above the events applied so far is a double count; below is not yet applied (counted as lost).
    return (
      Math.max(0, Number(row?.queries ?? 0) - ofType((type) => type === 'model.queried')) +
      Math.max(0, Number(row?.filters ?? 0) - ofType((type) => type === 'filter.executed')) +
      Math.max(
        0,
        Number(row?.lifecycle ?? 0) -
          ofType((type) => ['model.registered', 'model.updated', 'model.deactivated'].includes(type)),
      )
    );
  }
  // The error log is a file, outside the transaction: its effect is the applied record itself.
  return 0;
}

/** Events each consumer applied, per type, by the ledger (key `consumer\ttype`). */
async function ledgerApplied(pool: pg.Pool): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ consumer: string; event_type: string; events: string }>(
    `SELECT consumer, event_type, sum(events) AS events FROM telemetry_ledger WHERE stage = 'applied'
      GROUP BY consumer, event_type`,
  );
  return new Map(rows.map((row) => [`${row.consumer}\t${row.event_type}`, Number(row.events)]));
}

async function ledgerMissing(pool: pg.Pool): Promise<Record<string, number> | null> {
  try {
    const now = Date.now();
    const window = await new LedgerQuery(pool).summary({
      from: new Date(now - 3 * 3600_000),
      to: new Date(now + 3600_000),
    });
    return Object.fromEntries(window.consumers.map((entry) => [entry.consumer, entry.missing]));
  } catch {
    return null;
  }
}

export interface SettleOptions {
  /** Give up after this long, in ms. */
  timeoutMs: number;
  /** Also wait for the ledger to show nothing missing. @default true */
  ledger?: boolean;
  /** Events that will never arrive, by design (dropped at the spool cap and counted). @default 0 */
  expectedLost?: number;
}

/**
 * Polls until every sent event is applied by every consumer it is routed to (and the ledger agrees),
 * then counts once more a second later, so that a late redelivery applied twice would show. Returns the
 * final count and when it settled (epoch ms); on time-out, the count as it stands (its `lost` says what
 * is missing).
 */
export async function waitForSettled(
  pool: pg.Pool,
  truth: GroundTruth,
  options: SettleOptions,
): Promise<{ accounting: Accounting; settledAt: number; timedOut: boolean }> {
  const settled = (accounting: Accounting) =>
    accounting.lost === (options.expectedLost ?? 0) &&
    (options.ledger === false ||
      (accounting.ledgerMissing !== null && Object.values(accounting.ledgerMissing).every((n) => n === 0)));
  let timedOut = false;
  await waitUntil(
    'every event applied',
    async () => settled(await accountEvents(pool, truth)),
    options.timeoutMs,
    {
      intervalMs: 250,
      ignoreErrors: true,
    },
  ).catch(() => {
    timedOut = true;
  });
  const settledAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return { accounting: await accountEvents(pool, truth), settledAt, timedOut };
}
