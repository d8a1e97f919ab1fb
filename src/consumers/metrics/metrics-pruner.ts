/**
 * Retention of the metrics tables, on a timer in the process that runs the metrics consumer: raw events
 * older than the raw retention, and rollup buckets that ended before the rollup retention, go.
 *
 * Raw events are partitioned by day (migrations/1765065600002_metrics-deltas.sql): a day whose events
 * are all past the retention is dropped whole, which costs nothing per row, and the partitions of the
 * coming days are made ahead. Only the few events outside every day partition (far older or ahead, in
 * metrics_events_other) and the rollup rows are deleted, in chunks, each its own short transaction, so
 * pruning a backlog never holds locks or a snapshot for long while the consumer writes.
 */
import pg from 'pg';
import type { PublisherLogger } from '../../bus/spool-publisher.ts';
import { deleteInChunks } from '../../db/delete-in-chunks.ts';
import { PeriodicTask } from '../periodic-task.ts';
import { GRANULARITIES, GRANULARITY_MS } from './metrics-granularity.ts';
import { METRICS_RETENTION_DEFAULTS } from './metrics-retention.ts';

export interface MetricsRetentionOptions {
  /**
   * Raw events (`metrics_events`) are kept this many days after their timestamp (at least: a day goes
   * whole once its last event is past it). @default {@link METRICS_PRUNER_DEFAULTS}
   */
  rawRetentionDays?: number;
  /** Rollup buckets are kept this many days after they end. @default {@link METRICS_PRUNER_DEFAULTS} */
  rollupRetentionDays?: number;
  /** Time between two prunings, in ms; the first runs at start. @default {@link METRICS_PRUNER_DEFAULTS} */
  intervalMs?: number;
  /** Rows deleted per statement. @default {@link METRICS_PRUNER_DEFAULTS} */
  chunkRows?: number;
  logger?: PublisherLogger;
}

/** The retention (./metrics-retention.ts), and how often and in what steps it is applied. */
export const METRICS_PRUNER_DEFAULTS = {
  ...METRICS_RETENTION_DEFAULTS,
  /** Time between two prunings, in milliseconds: 1 h. */
  intervalMs: 3_600_000,
  /** Rows deleted per statement. */
  chunkRows: 10_000,
} as const;

const DAY_MS = 86_400_000;

/** YYYY-MM-DD of a UTC date. */
const isoDay = (date: Date) => date.toISOString().slice(0, 10);

export interface PruneResult {
  /** Day partitions of raw events dropped. */
  rawDays: number;
  /** Raw events deleted one by one (those outside the day partitions). */
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
      ...METRICS_PRUNER_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    };
    this.#schedule = new PeriodicTask(
      async () => {
        const result = await this.prune();
        if (result.rawDays + result.rawEvents + result.rollups + result.totals > 0) {
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
      rawDays: await this.#dropRawDays(now, rawCutoff),
      rawEvents: await this.#deleteInChunks('metrics_events_other', 'occurred_at < $1', [rawCutoff]),
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

  /**
   * Makes the partitions of today and the next two days (UTC) if missing, and drops those whose day
   * ended before `cutoff`; returns how many it dropped.
   */
  async #dropRawDays(now: Date, cutoff: Date): Promise<number> {
    const today = new Date(now.getTime() - (now.getTime() % DAY_MS));
    await this.#pool.query('SELECT metrics_events_partitions($1::date, $2::date)', [
      isoDay(today),
      isoDay(new Date(today.getTime() + 2 * DAY_MS)),
    ]);
    const { rows } = await this.#pool.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'metrics_events'::regclass AND c.relname ~ '^metrics_events_[0-9]{8}$'
        ORDER BY c.relname`,
    );
    let dropped = 0;
    for (const { name } of rows) {
      const day = Date.UTC(
        Number(name.slice(-8, -4)),
        Number(name.slice(-4, -2)) - 1,
        Number(name.slice(-2)),
      );
      if (day + DAY_MS > cutoff.getTime() || this.#schedule.stopped) continue;
      await this.#pool.query(`DROP TABLE ${pg.escapeIdentifier(name)}`);
      dropped++;
    }
    return dropped;
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
