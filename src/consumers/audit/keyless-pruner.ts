/**
 * Retention of the audit trail's keyless client errors (./keyless-errors.ts): every `intervalMs`, the
 * records of the '~keyless' chain that occurred more than `retentionDays` (and a margin) ago become
 * counts per day, status and error code, whole prefixes of the chain at a time, by the migration's
 * `audit_prune_keyless` (migrations/1765152001700_audit-keyless-retention.sql): in one transaction it
 * counts them, moves the chain's start past them (recording the pruned head, so `audit verify` still
 * checks the rest), logs the pruning in `audit_prunes` and deletes them. Counts are exact: each record
 * is counted when it is deleted, and the consumer never appends a keyless error older than the retention
 * (a copy of one pruned already).
 */
import type pg from 'pg';
import type { PublisherLogger } from '../../bus/spool-publisher.ts';
import { PeriodicTask } from '../periodic-task.ts';
import { keylessPruneCutoff } from './keyless-errors.ts';

export interface KeylessRetentionOptions {
  /** Days a keyless client error is kept as a record (AUDIT_KEYLESS_RETENTION_DAYS); 0: for ever. */
  retentionDays: number;
  /** Time between two prunings, in ms; the first runs at start. @default 3600000 (1 h) */
  intervalMs?: number;
  /** Records pruned per transaction (the chain's head is locked meanwhile). @default 10000 */
  chunkRecords?: number;
  logger?: PublisherLogger;
}

export class KeylessPruner {
  readonly #pool: pg.Pool;
  readonly #retentionDays: number;
  readonly #chunkRecords: number;
  readonly #schedule: PeriodicTask;

  constructor(pool: pg.Pool, options: KeylessRetentionOptions) {
    this.#pool = pool;
    this.#retentionDays = options.retentionDays;
    this.#chunkRecords = options.chunkRecords ?? 10_000;
    const logger = options.logger;
    this.#schedule = new PeriodicTask(
      async () => {
        const pruned = await this.prune();
        if (pruned > 0)
          logger?.info({ pruned }, 'audit: keyless client errors past their retention kept as counts');
      },
      options.intervalMs ?? 3_600_000,
      { logger, what: 'pruning the keyless client errors of the audit trail' },
    );
  }

  /** Prunes now and then every `intervalMs`, until {@link stop}. A failed run is logged and retried next time. */
  start(): void {
    if (this.#retentionDays > 0) this.#schedule.start();
  }

  async stop(): Promise<void> {
    await this.#schedule.stop();
  }

  /** Prunes the keyless records past the retention as of `now`; returns how many. */
  async prune(now: Date = new Date()): Promise<number> {
    if (this.#retentionDays <= 0) return 0;
    const cutoff = keylessPruneCutoff(this.#retentionDays, now.getTime());
    let total = 0;
    for (;;) {
      const { rows } = await this.#pool.query<{ n: string }>('SELECT audit_prune_keyless($1, $2) AS n', [
        cutoff,
        this.#chunkRecords,
      ]);
      const pruned = Number(rows[0]?.n ?? 0);
      total += pruned;
      if (pruned < this.#chunkRecords || this.#schedule.stopped) return total;
    }
  }
}
