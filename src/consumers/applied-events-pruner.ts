/**
 * Retention of the runtime's de-duplication records (src/consumers/deduplication/): each consumer's
 * producer streams (`consumer_stream_marks` and their gaps) and the event ids it applied without a stream
 * (`consumer_applied_events`), which would otherwise grow without end.
 *
 * A record is needed only while a second copy of an event can still arrive. Copies come from a publisher
 * resending what the broker did not confirm, and from redeliveries and the retry ladder — all within
 * minutes — or from a dead-letter replay, at any time. So an id is deleted once it was recorded more than
 * `retentionDays` ago, and a stream once no event of it was applied for that long, unless the dead-letter
 * archive still holds a dead (replayable) copy of that event, or of an event of that producer: those
 * stay until the dead letter is replayed or deleted. A stream forgotten starts again at 0: a copy of its
 * events arriving after that would be applied again, as an id forgotten would.
 */
import type pg from 'pg';
import { PRODUCER_HEADERS } from '../bus/producer-sequence.ts';
import type { PublisherLogger } from '../bus/spool-publisher.ts';
import { deleteInChunks } from '../db/delete-in-chunks.ts';
import { PeriodicTask } from './periodic-task.ts';

export interface AppliedEventsRetentionOptions {
  /** Applied event ids are kept this many days after they were applied. @default {@link APPLIED_EVENTS_RETENTION_DEFAULTS} */
  retentionDays?: number;
  /** Time between two prunings, in ms; the first runs at start. @default {@link APPLIED_EVENTS_RETENTION_DEFAULTS} */
  intervalMs?: number;
  /** Rows deleted per statement. @default {@link APPLIED_EVENTS_RETENTION_DEFAULTS} */
  chunkRows?: number;
  logger?: PublisherLogger;
}

export const APPLIED_EVENTS_RETENTION_DEFAULTS = {
  /** Days a de-duplication record is kept unused (a dead copy in the archive keeps it longer). */
  retentionDays: 30,
  /** Time between two prunings, in milliseconds: 1 h. */
  intervalMs: 3_600_000,
  /** Rows deleted per statement. */
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

  /** Deletes the streams and ids past their retention as of `now`; returns how many rows of either. */
  async prune(now: Date = new Date()): Promise<number> {
    const cutoff = new Date(now.getTime() - this.#options.retentionDays * DAY_MS);
    // Few rows (one per consumer, producer and type): one statement, gaps with their stream.
    const streams = await this.#pool.query<{ n: string }>(
      `WITH gone AS (
         DELETE FROM consumer_stream_marks m
          WHERE updated_at < $1
            AND NOT EXISTS (SELECT 1 FROM dead_letters d
                             WHERE d.state = 'dead' AND d.headers->>'${PRODUCER_HEADERS.producer}' = m.producer::text)
         RETURNING consumer, producer, event_type),
       gaps AS (
         DELETE FROM consumer_stream_gaps g USING gone
          WHERE g.consumer = gone.consumer AND g.producer = gone.producer AND g.event_type = gone.event_type
         RETURNING 1)
       SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM gaps) AS n`,
      [cutoff.toISOString()],
    );
    const ids = await deleteInChunks(this.#pool, {
      table: 'consumer_applied_events',
      where: PRUNABLE,
      params: [cutoff.toISOString()],
      chunkRows: this.#options.chunkRows,
      stopped: () => this.#schedule.stopped,
    });
    return ids + Number(streams.rows[0]?.n ?? 0);
  }
}
