/**
 * Retention of `consumer_applied_events`, the de-duplication record of the consumers that keep theirs
 * there (metrics, analytics, logging, the dead-letter archive): every event id each applied, one row per
 * consumer and event, which would otherwise grow without end.
 *
 * An id is needed only while a second copy of its event can still arrive. Copies come from a publisher
 * resending what the broker did not confirm, and from redeliveries and the retry ladder — all within
 * minutes — or from a dead-letter replay, at any time. So an id is deleted once it was recorded more than
 * `retentionDays` ago, unless the dead-letter archive still holds a dead (replayable) copy of that event:
 * those ids stay until the dead letter is replayed or deleted.
 */
import type pg from 'pg';
import type { PublisherLogger } from '../bus/spool-publisher.ts';
import { deleteInChunks } from '../db/delete-in-chunks.ts';
import { PeriodicTask } from './periodic-task.ts';

export interface AppliedEventsRetentionOptions {
  /** Applied event ids are kept this many days after they were applied. @default 30 */
  retentionDays?: number;
  /** Time between two prunings, in ms; the first runs at start. @default 3600000 (1 h) */
  intervalMs?: number;
  /** Rows deleted per statement. @default 10000 */
  chunkRows?: number;
  logger?: PublisherLogger;
}

export const APPLIED_EVENTS_RETENTION_DEFAULTS = {
  retentionDays: 30,
  intervalMs: 3_600_000,
  chunkRows: 10_000,
} as const;

const DAY_MS = 86_400_000;

/** Past the retention, and no dead copy of the event waiting in the archive to be replayed. */
const PRUNABLE = `applied_at < $1
  AND NOT EXISTS (SELECT 1 FROM dead_letters d
                  WHERE d.event_id = consumer_applied_events.event_id::text AND d.state = 'dead')`;

export class AppliedEventsPruner {
  readonly #pool: pg.Pool;
  readonly #options: Required<Omit<AppliedEventsRetentionOptions, 'logger'>>;
  readonly #schedule: PeriodicTask;

  constructor(pool: pg.Pool, options: AppliedEventsRetentionOptions = {}) {
    this.#pool = pool;
    const { logger, ...rest } = options;
    this.#options = {
      ...APPLIED_EVENTS_RETENTION_DEFAULTS,
      ...Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)),
    };
    this.#schedule = new PeriodicTask(
      async () => {
        const pruned = await this.prune();
        if (pruned > 0) logger?.info({ pruned }, 'pruned applied event ids past their retention');
      },
      this.#options.intervalMs,
      { logger, what: 'pruning the applied event ids' },
    );
  }

  /** Prunes now and then every `intervalMs`, until {@link stop}. A failed run is logged and retried next time. */
  start(): void {
    this.#schedule.start();
  }

  async stop(): Promise<void> {
    await this.#schedule.stop();
  }

  /** Deletes the ids past their retention as of `now`; returns how many. */
  prune(now: Date = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.#options.retentionDays * DAY_MS);
    return deleteInChunks(this.#pool, {
      table: 'consumer_applied_events',
      where: PRUNABLE,
      params: [cutoff.toISOString()],
      chunkRows: this.#options.chunkRows,
      stopped: () => this.#schedule.stopped,
    });
  }
}
