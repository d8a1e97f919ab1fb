/**
 * Test support: counts every event of a fault-matrix scenario in every consumer's tables, against the
 * ground truth of what was sent, to say how many were lost and how many applied twice.
 *
 * - The audit trail holds every request's event with its correlation id: an answered request without a
 *   record is lost; two records of one request are a duplicate.
 * - Every other consumer records the event ids it applied (consumer_applied_events); an event routed to
 *   it (the topology's routing, as the ledger computes it) and missing there is lost.
 * - Duplicates are counted on the effects themselves, not on the de-duplication table (which cannot hold
 *   one twice): raw metrics rows per event id, and the analytics counters against the events they count.
 * - The loss ledger (telemetry_ledger) must agree: no consumer missing anything.
 */
import type pg from 'pg';
import { LedgerQuery } from '../../../src/metrics/ledger/ledger-query.ts';
import { type LedgerConsumer, routedTypes } from '../../../src/metrics/ledger/ledger-summary.ts';
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
  for (const consumer of CONSUMERS.filter((name) => name !== 'audit')) {
    const routed = routedTypes(consumer);
    const expected = [...events].filter(([, type]) => routed.has(type));
    const { rows } = await pool.query<{ event_id: string }>(
      'SELECT event_id FROM consumer_applied_events WHERE consumer = $1',
      [consumer],
    );
    const applied = new Set(rows.map((row) => row.event_id));
    const missing = expected.filter(([id]) => !applied.has(id));
    for (const [id] of missing) lostEvents.add(id);
    const effectDuplicates = await duplicateEffects(pool, consumer, expected);
    duplicates += effectDuplicates;
    counts.push({
      consumer,
      expected: expected.length,
      applied: applied.size,
      lost: missing.length,
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
