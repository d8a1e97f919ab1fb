/**
 * The consumers a process runs, built by name from the configuration: `start` runs them beside the API,
 * `worker` runs a chosen set on its own. One place knows how each is made.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config, ConsumerName } from '../config.ts';
import { analyticsConsumer } from './analytics/analytics-consumer.ts';
import { auditConsumer } from './audit/audit-consumer.ts';
import type { Consumer } from './consumer.ts';
import { dlqConsumer } from './dlq/dlq-consumer.ts';
import { loggingConsumer } from './logging/logging-consumer.ts';
import { metricsConsumer } from './metrics/metrics-consumer.ts';

export interface BuiltConsumers {
  consumers: Consumer[];
  /** Releases what the consumers hold (the error log file). */
  close(): void;
}

export function buildConsumers(
  names: readonly ConsumerName[],
  config: Pick<Config, 'dataDir' | 'errorLogMaxBytes' | 'errorLogMaxFiles'>,
  logger: Logger,
): BuiltConsumers {
  const closers: Array<() => void> = [];
  const factories: Record<ConsumerName, () => Consumer> = {
    audit: () => auditConsumer(),
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
  const consumers = names.map((name) => factories[name]());
  return {
    consumers,
    close() {
      for (const close of closers) close();
    },
  };
}
