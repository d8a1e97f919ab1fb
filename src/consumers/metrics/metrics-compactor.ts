/**
 * Compaction of the metrics rollups, on a timer in the process that runs the metrics consumer — like the
 * pruner. Two moves, so that the consumer only appends:
 *
 * - every `deltaIntervalMs`, the rollup deltas the consumer appended (migrations/1765065600002) into their
 *   minute rows: each key's histograms merged once per run, not once per batch. Under the watermark row
 *   locked FOR SHARE, as the consumers' statements lock it: with them, not with the step below;
 * - every `intervalMs`, closed minutes into their hour and day rows, behind the watermark
 *   (migrations/1764460800000_metrics-compaction.sql): one step is one transaction that locks the
 *   watermark FOR UPDATE (waiting for the consumer statements that hold it FOR SHARE, and holding the
 *   next ones back), moves the deltas in, reads the minute rows from the watermark to the step's end,
 *   folds them into hour and day rows in memory, upserts those, and moves the watermark to the step's end.
 *
 * So at every commit, every minute before the watermark counts in its hour and day and none after it
 * does, and every delta left is for a minute at or after it; a late event the consumer adds to its
 * minute, hour and day itself. Several processes may compact: they take turns on the watermark's lock,
 * and a delta is moved by the one whose DELETE takes it.
 */
import type pg from 'pg';
import type { PublisherLogger } from '../../bus/spool-publisher.ts';
import { batchStatement } from '../../db/batch-statement.ts';
import { inTransaction } from '../../db/transaction.ts';
import { LogLinearHistogram } from '../../log-linear-histogram.ts';
import { PeriodicTask } from '../periodic-task.ts';
import {
  bucketStartOf,
  minuteOfHour,
  newMinuteRequests,
  newTotalsRow,
  type RollupRow,
  Rows,
  type StoredRollupRow,
  type TotalsRow,
} from './metrics-aggregation.ts';
import { lockWatermark, rollupsWrite, totalsWrite } from './metrics-consumer.ts';
import { GRANULARITY_MS, type Granularity } from './metrics-granularity.ts';

export interface MetricsCompactionOptions {
  /**
   * A minute is compacted once it ended this long ago, in ms. An event applied later than that after its
   * timestamp is still counted exactly (the consumer adds it to its hour and day), at some cost, and
   * makes GET /metrics read its day again. @default {@link METRICS_COMPACTION_DEFAULTS}
   */
  lagMs?: number;
  /** Time between two compactions of closed minutes, in ms; the first runs at start. @default {@link METRICS_COMPACTION_DEFAULTS} */
  intervalMs?: number;
  /**
   * Time between two moves of the rollup deltas into their minute rows, in ms. GET /metrics reads the
   * deltas not moved yet: the longer this, the more it reads. @default {@link METRICS_COMPACTION_DEFAULTS}
   */
  deltaIntervalMs?: number;
  /**
   * Minutes of time compacted per transaction at most (empty time is skipped), so that catching up after a
   * long stop commits as it goes and holds the consumers back briefly each time. @default {@link METRICS_COMPACTION_DEFAULTS}
   */
  stepMinutes?: number;
  logger?: PublisherLogger;
}

export const METRICS_COMPACTION_DEFAULTS = {
  /** A minute is compacted once it ended this long ago, in milliseconds: 5 min. */
  lagMs: 300_000,
  /** Time between two compactions of closed minutes, in milliseconds: 1 min. */
  intervalMs: 60_000,
  /** Time between two moves of the rollup deltas into their minute rows, in milliseconds. */
  deltaIntervalMs: 1000,
  /** Minutes of time compacted per transaction, at most. */
  stepMinutes: 60,
} as const;

const MINUTE_MS = GRANULARITY_MS['1m'];
const COARSER: readonly Granularity[] = ['1h', '1d'];

export interface CompactionResult {
  /** The watermark after the run. */
  watermark: Date;
  /** Minute rollup rows added into hours and days. */
  minuteRows: number;
  /** Transactions committed. */
  steps: number;
}

interface MinuteTotalsRow {
  bucket_start: Date;
  requests: string;
  errors: string;
  request_latency: string[];
  processing_latency: string[];
}

export class MetricsCompactor {
  readonly #pool: pg.Pool;
  readonly #options: Required<Omit<MetricsCompactionOptions, 'logger'>>;
  readonly #schedule: PeriodicTask;
  /** When the last compaction of closed minutes ran (ms; 0: never). */
  #compactedAt = 0;

  constructor(pool: pg.Pool, options: MetricsCompactionOptions = {}) {
    this.#pool = pool;
    const { logger, ...rest } = options;
    this.#options = {
      ...METRICS_COMPACTION_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    };
    this.#schedule = new PeriodicTask(
      async () => {
        if (Date.now() - this.#compactedAt >= this.#options.intervalMs) {
          this.#compactedAt = Date.now();
          await this.compact();
        } else {
          await this.moveDeltas();
        }
      },
      this.#options.deltaIntervalMs,
      { logger, what: 'compacting the metrics' },
    );
  }

  /** Moves the deltas now and then every `deltaIntervalMs`, compacts closed minutes every `intervalMs`, until {@link stop}. A failed run is logged and retried next time. */
  start(): void {
    this.#schedule.start();
  }

  async stop(): Promise<void> {
    await this.#schedule.stop();
  }

  /** Moves every delta into its minute rows; returns how many deltas it moved. */
  async moveDeltas(): Promise<number> {
    return inTransaction(this.#pool, async (client) => {
      // With the consumers' statements (FOR SHARE too), not with a compaction step (FOR UPDATE).
      await client.query({
        name: 'metrics.watermark.share',
        text: 'SELECT 1 FROM metrics_compaction FOR SHARE',
      });
      return moveDeltas(client);
    });
  }

  /** Moves the deltas in, then compacts every minute that ended `lagMs` or more before `now`. */
  async compact(now: Date = new Date()): Promise<CompactionResult> {
    const target = bucketStartOf(now.getTime() - this.#options.lagMs, '1m');
    const result: CompactionResult = { watermark: new Date(0), minuteRows: 0, steps: 0 };
    for (;;) {
      const step = await this.#step(target);
      result.watermark = new Date(step.watermark);
      if (step.minuteRows === undefined) return result;
      result.minuteRows += step.minuteRows;
      result.steps++;
      if (step.watermark >= target || this.#schedule.stopped) return result;
    }
  }

  /** One transaction: from the watermark to at most `stepMinutes` after the first minute with rows. */
  async #step(target: number): Promise<{ watermark: number; minuteRows?: number }> {
    return inTransaction(this.#pool, async (client) => {
      // Waits for the consumer batches holding it FOR SHARE; later statements see what they committed.
      const watermark = await lockWatermark(client);
      // Whatever the consumers appended, into its minutes first: the minutes read below are then whole.
      await moveDeltas(client);
      if (watermark >= target) return { watermark };
      const first = await client.query<{ first: Date | null }>(
        `SELECT min(bucket_start) AS first FROM metrics_rollup_totals
         WHERE granularity = '1m' AND bucket_start >= $1 AND bucket_start < $2`,
        [new Date(watermark).toISOString(), new Date(target).toISOString()],
      );
      const firstMinute = first.rows[0]?.first?.getTime();
      const end =
        firstMinute === undefined
          ? target
          : Math.min(target, firstMinute + this.#options.stepMinutes * MINUTE_MS);
      const range = [new Date(watermark).toISOString(), new Date(end).toISOString()];
      const minutes = await client.query<StoredRollupRow>(
        `SELECT bucket_start, event_type, method, route, vendor_id, capability_tier, status_class, error_type,
                requests, cache_hits, cache_misses, request_latency, processing_latency
         FROM metrics_rollups
         WHERE granularity = '1m' AND bucket_start >= $1 AND bucket_start < $2`,
        range,
      );
      const minuteTotals = await client.query<MinuteTotalsRow>(
        `SELECT bucket_start, requests, errors, request_latency, processing_latency
         FROM metrics_rollup_totals
         WHERE granularity = '1m' AND bucket_start >= $1 AND bucket_start < $2`,
        range,
      );
      await client.query(
        batchStatement('metrics.compact', [
          rollupsWrite(foldRollups(minutes.rows)),
          totalsWrite(foldTotals(minuteTotals.rows)),
        ]),
      );
      await client.query('UPDATE metrics_compaction SET watermark = $1', [new Date(end).toISOString()]);
      return { watermark: end, minuteRows: minutes.rows.length };
    });
  }
}

/**
 * Deletes every delta (those committed: one appended meanwhile waits for the next run) and adds them to
 * their minute rows, in the caller's transaction; returns how many it moved.
 */
async function moveDeltas(client: pg.ClientBase): Promise<number> {
  const { rows } = await client.query<StoredRollupRow>({
    name: 'metrics.deltas.take',
    text: `DELETE FROM metrics_rollup_deltas
           RETURNING bucket_start, event_type, method, route, vendor_id, capability_tier, status_class,
                     error_type, requests, cache_hits, cache_misses, request_latency, processing_latency`,
  });
  if (rows.length === 0) return 0;
  const { rollups, totals } = foldDeltas(rows);
  await client.query(batchStatement('metrics.deltas.move', [rollupsWrite(rollups), totalsWrite(totals)]));
  return rows.length;
}

/** Deltas into the minute rows (by key) and minute totals they add to, sorted by key. */
export function foldDeltas(deltas: readonly StoredRollupRow[]): {
  rollups: RollupRow[];
  totals: TotalsRow[];
} {
  const rollups = new Rows<RollupRow>();
  const totals = new Rows<TotalsRow>();
  for (const delta of deltas) {
    const start = delta.bucket_start.getTime();
    const requestLatency = LogLinearHistogram.fromPacked(delta.request_latency);
    const processingLatency = LogLinearHistogram.fromPacked(delta.processing_latency);
    const row = rollups.get(
      [
        '1m',
        start,
        delta.event_type,
        delta.method,
        delta.route,
        delta.vendor_id,
        delta.capability_tier,
        delta.status_class,
        delta.error_type,
      ],
      () => ({
        granularity: '1m' as const,
        bucketStart: new Date(start).toISOString(),
        eventType: delta.event_type,
        method: delta.method,
        route: delta.route,
        vendorId: delta.vendor_id,
        capabilityTier: delta.capability_tier,
        statusClass: delta.status_class,
        errorType: delta.error_type,
        requests: 0,
        cacheHits: 0,
        cacheMisses: 0,
        requestLatency: new LogLinearHistogram(),
        processingLatency: new LogLinearHistogram(),
        minuteRequests: null,
      }),
    );
    const requests = Number(delta.requests);
    row.requests += requests;
    row.cacheHits += Number(delta.cache_hits);
    row.cacheMisses += Number(delta.cache_misses);
    row.requestLatency.merge(requestLatency);
    row.processingLatency.merge(processingLatency);
    const total = totals.get(['1m', start], () => newTotalsRow('1m', start));
    total.requests += requests;
    if (delta.status_class >= 4) total.errors += requests;
    total.requestLatency.merge(requestLatency);
    total.processingLatency.merge(processingLatency);
  }
  return { rollups: rollups.sorted(), totals: totals.sorted() };
}

/** Minute rows into the hour and day rows they add to, sorted by key as the consumer sorts them. */
export function foldRollups(minutes: readonly StoredRollupRow[]): RollupRow[] {
  const rows = new Rows<RollupRow>();
  for (const minute of minutes) {
    const requestLatency = LogLinearHistogram.fromPacked(minute.request_latency);
    const processingLatency = LogLinearHistogram.fromPacked(minute.processing_latency);
    for (const granularity of COARSER) {
      const start = bucketStartOf(minute.bucket_start.getTime(), granularity);
      const row = rows.get(
        [
          granularity,
          start,
          minute.event_type,
          minute.method,
          minute.route,
          minute.vendor_id,
          minute.capability_tier,
          minute.status_class,
          minute.error_type,
        ],
        () => ({
          granularity,
          bucketStart: new Date(start).toISOString(),
          eventType: minute.event_type,
          method: minute.method,
          route: minute.route,
          vendorId: minute.vendor_id,
          capabilityTier: minute.capability_tier,
          statusClass: minute.status_class,
          errorType: minute.error_type,
          requests: 0,
          cacheHits: 0,
          cacheMisses: 0,
          requestLatency: new LogLinearHistogram(),
          processingLatency: new LogLinearHistogram(),
          minuteRequests: newMinuteRequests(granularity),
        }),
      );
      addMinute(row, minute.bucket_start, Number(minute.requests));
      row.requests += Number(minute.requests);
      row.cacheHits += Number(minute.cache_hits);
      row.cacheMisses += Number(minute.cache_misses);
      row.requestLatency.merge(requestLatency);
      row.processingLatency.merge(processingLatency);
    }
  }
  return rows.sorted();
}

export function foldTotals(minutes: readonly MinuteTotalsRow[]): TotalsRow[] {
  const rows = new Rows<TotalsRow>();
  for (const minute of minutes) {
    const requestLatency = LogLinearHistogram.fromPacked(minute.request_latency);
    const processingLatency = LogLinearHistogram.fromPacked(minute.processing_latency);
    for (const granularity of COARSER) {
      const start = bucketStartOf(minute.bucket_start.getTime(), granularity);
      const row = rows.get([granularity, start], () => newTotalsRow(granularity, start));
      addMinute(row, minute.bucket_start, Number(minute.requests));
      row.requests += Number(minute.requests);
      row.errors += Number(minute.errors);
      row.requestLatency.merge(requestLatency);
      row.processingLatency.merge(processingLatency);
    }
  }
  return rows.sorted();
}

/** Counts a minute's requests in an hour row's minutes. */
function addMinute(row: { minuteRequests: number[] | null }, minute: Date, requests: number): void {
  if (row.minuteRequests === null) return;
  const at = minuteOfHour(minute.getTime());
  row.minuteRequests[at] = (row.minuteRequests[at] as number) + requests;
}
