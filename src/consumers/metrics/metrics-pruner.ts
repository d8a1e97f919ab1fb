/**
 * Retention of the metrics tables: raw events older than the raw retention and rollup buckets that
 * ended before the rollup retention are deleted, on a timer in the process that runs the metrics
 * consumer. Deletes go in chunks, each its own short transaction, so pruning a backlog never holds locks
 * or a snapshot for long while the consumer writes.
 */
import type pg from 'pg';
import type { PublisherLogger } from '../../bus/spool-publisher.ts';
import { deleteInChunks } from '../../db/delete-in-chunks.ts';
import { GRANULARITIES, GRANULARITY_MS } from '../../metrics/metrics-granularity.ts';
import { PeriodicTask } from '../periodic-task.ts';

export interface MetricsRetentionOptions {
  /** Raw events (`metrics_events`) are kept this many days after their timestamp. @default 7 */
  rawRetentionDays?: number;
  /** Rollup buckets are kept this many days after they end. @default 400 */
  rollupRetentionDays?: number;
  /** Time between two prunings, in ms; the first runs at start. @default 3600000 (1 h) */
  intervalMs?: number;
  /** Rows deleted per statement. @default 10000 */
  chunkRows?: number;
  logger?: PublisherLogger;
}

export const METRICS_RETENTION_DEFAULTS = {
  rawRetentionDays: 7,
  rollupRetentionDays: 400,
  intervalMs: 3_600_000,
  chunkRows: 10_000,
} as const;

const DAY_MS = 86_400_000;

export interface PruneResult {
  rawEvents: number;
  rollups: number;
  totals: number;
}

export class MetricsPruner {
  readonly #pool: pg.Pool;
  readonly #options: Required<Omit<MetricsRetentionOptions, 'logger'>>;
  readonly #logger: PublisherLogger | undefined;
  readonly #schedule: PeriodicTask;

  constructor(pool: pg.Pool, options: MetricsRetentionOptions = {}) {
    this.#pool = pool;
    const { logger, ...rest } = options;
    this.#logger = logger;
    this.#options = {
      ...METRICS_RETENTION_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    };
    this.#schedule = new PeriodicTask(
      async () => {
        const result = await this.prune();
        if (result.rawEvents + result.rollups + result.totals > 0) {
          this.#logger?.info({ pruned: result }, 'pruned metrics past their retention');
        }
      },
      this.#options.intervalMs,
      { logger, what: 'pruning the metrics' },
    );
  }

  /** Prunes now and then every `intervalMs`, until {@link stop}. A failed run is logged and retried next time. */
  start(): void {
    this.#schedule.start();
  }

  async stop(): Promise<void> {
    await this.#schedule.stop();
  }

  /** Deletes what is past its retention, as of `now`. */
  async prune(now: Date = new Date()): Promise<PruneResult> {
    const rawCutoff = new Date(now.getTime() - this.#options.rawRetentionDays * DAY_MS);
    const rollupCutoff = new Date(now.getTime() - this.#options.rollupRetentionDays * DAY_MS);
    const result: PruneResult = {
      rawEvents: await this.#deleteInChunks('metrics_events', 'occurred_at < $1', [rawCutoff]),
      rollups: 0,
      totals: 0,
    };
    // A bucket goes once it has ended before the cutoff (a day row lives as long as its last minute).
    // One granularity at a time, so each delete is a range of the primary key.
    for (const granularity of GRANULARITIES) {
      const lastStart = new Date(rollupCutoff.getTime() - GRANULARITY_MS[granularity]);
      const where = 'granularity = $3 AND bucket_start <= $1';
      result.rollups += await this.#deleteInChunks('metrics_rollups', where, [lastStart, granularity]);
      result.totals += await this.#deleteInChunks('metrics_rollup_totals', where, [lastStart, granularity]);
    }
    // The revisions of days no longer kept: nothing can read those days any more.
    await this.#deleteInChunks('metrics_revisions', 'day <= $1', [
      new Date(rollupCutoff.getTime() - GRANULARITY_MS['1d']),
    ]);
    return result;
  }

  #deleteInChunks(table: string, where: string, [cutoff, ...rest]: [Date, ...string[]]): Promise<number> {
    return deleteInChunks(this.#pool, {
      table,
      where,
      params: [cutoff.toISOString(), ...rest],
      chunkRows: this.#options.chunkRows,
      stopped: () => this.#schedule.stopped,
    });
  }
}
