/**
 * How long the metrics are kept, in days: the pruner (src/consumers/metrics/metrics-pruner.ts) deletes
 * what is older and `GET /metrics` reaches no further back. Both sides read it here, so neither imports
 * the other.
 */
export const METRICS_RETENTION_DEFAULTS = {
  /**
   * Raw events (`metrics_events`) are kept this many days after their timestamp (at least: a day goes
   * whole once its last event is past it).
   */
  rawRetentionDays: 7,
  /** Rollup buckets are kept this many days after they end. */
  rollupRetentionDays: 400,
} as const;
