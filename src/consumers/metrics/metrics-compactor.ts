/**
 * Compaction of the metrics rollups: closed minutes added into their hour and day rows, behind a
 * watermark (migrations/1764460800000_metrics-compaction.sql), on a timer in the process that runs the
 * metrics consumer — like the pruner. Why: the consumer then upserts only minute rows, narrow and each
 * hot for one minute, instead of also the hour and day rows every batch of the day hits; the compactor
 * adds a minute to its hour and day once.
 *
 * One step is one transaction: lock the watermark row FOR UPDATE (waiting for the consumer batches that
 * hold it FOR SHARE, and holding the next ones back), read the minute rows from the watermark to the
 * step's end, fold them into hour and day rows in memory, upsert those with the consumer's statements,
 * move the watermark to the step's end. So at every commit, every minute before the watermark counts in
 * its hour and day and none after it does; a late event the consumer adds to the hour and day itself.
 * Several processes may compact: the second to get the lock finds the watermark moved and little left.
 */
import type pg from 'pg';
import type { PublisherLogger } from '../../bus/spool-publisher.ts';
import { LogLinearHistogram } from '../../metrics/log-linear-histogram.ts';
import { GRANULARITY_MS, type Granularity } from '../../metrics/metrics-granularity.ts';
import { PeriodicTask } from '../periodic-task.ts';
import {
  bucketStartOf,
  minuteOfHour,
  newMinuteRequests,
  newTotalsRow,
  type RollupRow,
  Rows,
  type TotalsRow,
} from './metrics-aggregation.ts';
import { lockWatermark, upsertRollups, upsertTotals } from './metrics-consumer.ts';

export interface MetricsCompactionOptions {
  /**
   * A minute is compacted once it ended this long ago, in ms. An event applied later than that after its
   * timestamp is still counted exactly (the consumer adds it to its hour and day), at some cost, and
   * makes GET /metrics read its day again. @default 300000 (5 min)
   */
  lagMs?: number;
  /** Time between two compactions, in ms; the first runs at start. @default 60000 (1 min) */
  intervalMs?: number;
  /**
   * Minutes of time compacted per transaction at most (empty time is skipped), so that catching up after a
   * long stop commits as it goes and holds the consumers back briefly each time. @default 60
   */
  stepMinutes?: number;
  logger?: PublisherLogger;
}

export const METRICS_COMPACTION_DEFAULTS = {
  lagMs: 300_000,
  intervalMs: 60_000,
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

interface MinuteRow {
  bucket_start: Date;
  event_type: string;
  method: string;
  route: string;
  vendor_id: string;
  capability_tier: string;
  status_class: number;
  error_type: string;
  requests: string;
  cache_hits: string;
  cache_misses: string;
  request_latency: string[];
  processing_latency: string[];
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

  constructor(pool: pg.Pool, options: MetricsCompactionOptions = {}) {
    this.#pool = pool;
    const { logger, ...rest } = options;
    this.#options = {
      ...METRICS_COMPACTION_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    };
    this.#schedule = new PeriodicTask(
      async () => {
        await this.compact();
      },
      this.#options.intervalMs,
      { logger, what: 'compacting the metrics' },
    );
  }

  /** Compacts now and then every `intervalMs`, until {@link stop}. A failed run is logged and retried next time. */
  start(): void {
    this.#schedule.start();
  }

  async stop(): Promise<void> {
    await this.#schedule.stop();
  }

  /** Compacts every minute that ended `lagMs` or more before `now`. */
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
    const client = await this.#pool.connect();
    let broken: unknown;
    try {
      await client.query('BEGIN');
      // Waits for the consumer batches holding it FOR SHARE; later statements see what they committed.
      const watermark = await lockWatermark(client, 'FOR UPDATE');
      if (watermark >= target) {
        await client.query('ROLLBACK');
        return { watermark };
      }
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
      const minutes = await client.query<MinuteRow>(
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
      await upsertRollups(client, foldRollups(minutes.rows));
      await upsertTotals(client, foldTotals(minuteTotals.rows));
      await client.query('UPDATE metrics_compaction SET watermark = $1', [new Date(end).toISOString()]);
      await client.query('COMMIT');
      return { watermark: end, minuteRows: minutes.rows.length };
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => {
        broken = rollbackError;
      });
      throw error;
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }
}

/** Minute rows into the hour and day rows they add to, sorted by key as the consumer sorts them. */
export function foldRollups(minutes: readonly MinuteRow[]): RollupRow[] {
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
