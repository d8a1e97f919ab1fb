/** The consumers a process can run, by name: `CONSUMERS` and `worker --consumers` choose among them. */
export const CONSUMER_NAMES = ['audit', 'logging', 'analytics', 'metrics', 'dlq'] as const;
export type ConsumerName = (typeof CONSUMER_NAMES)[number];
