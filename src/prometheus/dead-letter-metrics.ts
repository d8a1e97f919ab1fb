/**
 * The dead-letter archive (`dead_letters` in PostgreSQL) as a gauge by state: what is still dead (an
 * operator's to-do list) and what was replayed. Counted when scraped, at most once per `cacheMs`, with a
 * time limit, so a scrape never piles queries onto a busy or unreachable database. The messages not yet
 * archived are the `dlq.dead_letters` queue depth (`telemetry_queue_messages_ready`).
 */
import { Gauge, type Registry } from 'prom-client';
import { withTimeout } from '../with-timeout.ts';

export const DEAD_LETTER_STATES = ['dead', 'replayed'] as const;
export type DeadLetterCountState = (typeof DEAD_LETTER_STATES)[number];

export interface DeadLetterMetricsOptions {
  /** Counts the archive's rows in a state. */
  count: (state: DeadLetterCountState) => Promise<number>;
  /** How long counts are reused, in ms. @default 10000 */
  cacheMs?: number;
  /** Time the counts may take before the scrape goes on without them, in ms. @default 2000 */
  timeoutMs?: number;
}

export function registerDeadLetterMetrics(registry: Registry, options: DeadLetterMetricsOptions): void {
  const cacheMs = options.cacheMs ?? 10_000;
  const timeoutMs = options.timeoutMs ?? 2000;
  let cached: { at: number; counts: Record<DeadLetterCountState, number> | undefined } | undefined;
  let pending: Promise<Record<DeadLetterCountState, number> | undefined> | undefined;

  const lookup = async (): Promise<Record<DeadLetterCountState, number> | undefined> => {
    try {
      const counts = Promise.all(DEAD_LETTER_STATES.map((state) => options.count(state)));
      const [dead = 0, replayed = 0] = await withTimeout(counts, timeoutMs);
      return { dead, replayed };
    } catch {
      return undefined;
    }
  };

  new Gauge({
    name: 'telemetry_dead_letters',
    help: 'Dead letters archived in PostgreSQL, by state (dead: awaiting replay or purge; replayed)',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      if (cached === undefined || Date.now() - cached.at >= cacheMs) {
        pending ??= lookup().finally(() => {
          pending = undefined;
        });
        const counts = await pending;
        cached = { at: Date.now(), counts };
      }
      this.reset();
      // PostgreSQL unreachable or slow: no sample rather than a made-up 0.
      const counts = cached.counts;
      if (counts !== undefined) for (const state of DEAD_LETTER_STATES) this.set({ state }, counts[state]);
    },
  });
}
