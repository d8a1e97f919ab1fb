/**
 * The consumers a process runs, built by name from the configuration: `start` runs them beside the API,
 * `worker` runs a chosen set on its own. One place knows how each is made.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { buildTopology, consumedQueues, QUEUES, type Topology } from '../bus/topology.ts';
import { analyticsConsumer } from './analytics/analytics-consumer.ts';
import { auditConsumer } from './audit/audit-consumer.ts';
import type { Consumer } from './consumer.ts';
import type { ConsumerName } from './consumer-names.ts';
import { dlqConsumer } from './dlq/dlq-consumer.ts';
import { loggingConsumer } from './logging/logging-consumer.ts';
import { metricsConsumer } from './metrics/metrics-consumer.ts';

export interface BuiltConsumers {
  consumers: Consumer[];
  /** Releases what the consumers hold (the error log file). */
  close(): void;
}

/**
 * A partitioned queue has one consumer per partition (same name, so they share the de-duplication
 * records): each is a subscription of its own, applied in order, and the partitions run in parallel.
 */
export function buildConsumers(
  names: readonly ConsumerName[],
  /** DATA_DIR, ERROR_LOG_*, AUDIT_KEYLESS_RETENTION_DAYS, as configured (src/config.ts). */
  config: {
    dataDir: string;
    errorLogMaxBytes: number;
    errorLogMaxFiles: number;
    auditKeylessRetentionDays: number;
  },
  logger: Logger,
  topology: Topology = buildTopology(),
): BuiltConsumers {
  const closers: Array<() => void> = [];
  const factories: Record<ConsumerName, () => Consumer | Consumer[]> = {
    audit: () =>
      consumedQueues(topology, QUEUES.audit).map((queue) =>
        auditConsumer({ queue, keylessRetentionDays: config.auditKeylessRetentionDays }),
      ),
    analytics: () => analyticsConsumer(),
    metrics: () => metricsConsumer(),
    dlq: () => dlqConsumer(logger.child({ component: 'dead-letters' })),
    logging: () => {
      const logging = loggingConsumer({
        directory: join(config.dataDir, 'logs'),
        maxFileBytes: config.errorLogMaxBytes,
        maxFiles: config.errorLogMaxFiles,
        logger: logger.child({ component: 'logging-consumer' }),
      });
      closers.push(() => logging.close());
      return logging;
    },
  };
  const consumers = names.flatMap((name) => factories[name]());
  return {
    consumers,
    close() {
      for (const close of closers) close();
    },
  };
}
