/** Starts the consumer runtime with the named consumers, as configured; used by `start` and `worker`. */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.ts';
import { AppliedEventsPruner } from '../consumers/applied-events-pruner.ts';
import { KeylessPruner } from '../consumers/audit/keyless-pruner.ts';
import { buildConsumers } from '../consumers/build-consumers.ts';
import type { ConsumerName } from '../consumers/consumer-names.ts';
import { ConsumerRuntime } from '../consumers/consumer-runtime.ts';
import { MetricsCompactor } from '../consumers/metrics/metrics-compactor.ts';
import { MetricsPruner } from '../consumers/metrics/metrics-pruner.ts';
import { topologyFromConfig } from '../topology-from-config.ts';

export interface RunningConsumers {
  runtime: ConsumerRuntime;
  /** Prunes the metrics tables on a timer; present when the metrics consumer runs here. */
  pruner: MetricsPruner | undefined;
  /** Prunes `consumer_applied_events` on a timer; present when a consumer that records there runs here. */
  appliedPruner: AppliedEventsPruner | undefined;
  /** Turns the audit trail's keyless client errors past their retention into counts; present when the audit consumer runs here. */
  keylessPruner: KeylessPruner | undefined;
  /** Adds closed minutes into the hour and day rollups on a timer; present when the metrics consumer runs here. */
  compactor: MetricsCompactor | undefined;
  /** Stops taking deliveries, finishes the batches in hand within `timeoutMs`, closes. */
  stop(timeoutMs: number): Promise<void>;
}

export async function runConsumers(
  config: Config,
  pool: pg.Pool,
  names: readonly ConsumerName[],
  logger: Logger,
  /** The process's Prometheus registry, for the runtime's `telemetry_consumer_*` metrics. */
  metrics?: Registry,
): Promise<RunningConsumers> {
  const topology = topologyFromConfig(config);
  const built = buildConsumers(names, config, logger, topology);
  const runtime = new ConsumerRuntime({
    urls: config.rabbitmqUrls,
    pool,
    topology,
    consumers: built.consumers,
    retryDelaysMs: config.retryDelaysMs,
    prefetch: config.consumerPrefetch,
    batchSize: config.consumerBatchSize,
    heartbeatSeconds: config.rabbitmqHeartbeatSeconds,
    logger: logger.child({ component: 'consumers' }),
    metrics,
  });
  // Not awaited: with RabbitMQ down the runtime keeps trying in the background, like the publisher.
  void runtime.start();
  // Retention is the business of whoever writes the metrics: several such processes prune the same
  // rows harmlessly (a delete of what another already deleted removes nothing).
  const pruner = names.includes('metrics')
    ? new MetricsPruner(pool, {
        rawRetentionDays: config.metricsRawRetentionDays,
        rollupRetentionDays: config.metricsRollupRetentionDays,
        intervalMs: config.metricsPruneIntervalMs,
        logger: logger.child({ component: 'metrics-pruner' }),
      })
    : undefined;
  pruner?.start();
  // Several audit workers (AUDIT_PARTITIONS) prune in turn: the keyless chain's head is locked meanwhile.
  const keylessPruner = names.includes('audit')
    ? new KeylessPruner(pool, {
        retentionDays: config.auditKeylessRetentionDays,
        logger: logger.child({ component: 'audit-keyless-pruner' }),
      })
    : undefined;
  keylessPruner?.start();
  // The audit trail de-duplicates in its own table.
  const appliedPruner = names.some((name) => name !== 'audit')
    ? new AppliedEventsPruner(pool, {
        retentionDays: config.appliedEventsRetentionDays,
        logger: logger.child({ component: 'applied-events-pruner' }),
      })
    : undefined;
  appliedPruner?.start();
  // Compaction too: several processes compacting take turns on the watermark's row lock.
  const compactor = names.includes('metrics')
    ? new MetricsCompactor(pool, { logger: logger.child({ component: 'metrics-compactor' }) })
    : undefined;
  compactor?.start();
  return {
    runtime,
    pruner,
    appliedPruner,
    keylessPruner,
    compactor,
    async stop(timeoutMs) {
      await pruner?.stop();
      await appliedPruner?.stop();
      await keylessPruner?.stop();
      await compactor?.stop();
      await runtime.stop(timeoutMs);
      built.close();
    },
  };
}
