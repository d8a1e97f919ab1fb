/**
 * The composition root of the domain: a pool and the services built on it, created from the
 * configuration. The CLI and the tests both build the system through here.
 */
import type pg from 'pg';
import type { Registry } from 'prom-client';
import { ApiKeyStore } from './auth/api-key-store.ts';
import { EventBus } from './bus/event-bus.ts';
import { LedgerCounts } from './bus/ledger-counts.ts';
import { QueueInspector } from './bus/queue-inspector.ts';
import type { PublisherLogger } from './bus/spool-publisher.ts';
import { cacheBudget } from './cache-budget.ts';
import type { Config } from './config.ts';
import { DlqService } from './consumers/dlq/dlq-service.ts';
import { createPool } from './db/create-pool.ts';
import { LedgerWriter } from './ledger/ledger-writer.ts';
import { registerBusMetrics } from './prometheus/bus-metrics.ts';
import { registerDeadLetterMetrics } from './prometheus/dead-letter-metrics.ts';
import { EventLoopHealth, registerEventLoopMetrics } from './prometheus/event-loop-health.ts';
import { createPrometheusRegistry } from './prometheus/prometheus-registry.ts';
import { registerQueueMetrics } from './prometheus/queue-metrics.ts';
import { ModelRegistry } from './registry/model-registry.ts';
import { ModelRepository } from './registry/model-repository.ts';
import { topologyFromConfig } from './topology-from-config.ts';

export interface Services {
  pool: pg.Pool;
  registry: ModelRegistry;
  apiKeys: ApiKeyStore;
  /** The telemetry bus; absent when TELEMETRY_ENABLED is off. */
  bus: EventBus | undefined;
  /** Depths of the topology's queues, for GET /health; absent with the bus. */
  queues: QueueInspector | undefined;
  /** The dead-letter archive behind /dlq: list, replay, delete. */
  dlq: DlqService;
  /** Prometheus metrics of this process. */
  metrics: Registry;
  /** Bytes GET /metrics's cache of closed periods may hold: its share of CACHE_MAX_BYTES. */
  metricsCacheMaxBytes: number;
  /** Event-loop delay and utilisation of the request thread and the publisher thread. */
  eventLoop: EventLoopHealth;
  /** Sends what the spool holds for up to half of `shutdownTimeoutMs`, then releases everything. */
  close(): Promise<void>;
}

export interface ServicesOptions {
  onPoolError?: (error: Error) => void;
  logger?: PublisherLogger;
}

export function createServices(config: Config, options: ServicesOptions = {}): Services {
  const pool = createPool({ databaseUrl: config.databaseUrl, max: config.dbPoolMax }, options.onPoolError);
  const topology = topologyFromConfig(config);
  const ledger = config.telemetryEnabled
    ? new LedgerWriter({
        pool,
        counts: new LedgerCounts(),
        intervalMs: config.ledgerFlushIntervalMs,
        onError: (error) =>
          options.logger?.warn(
            { err: String(error) },
            'loss ledger not written; its counts are kept for the next try',
          ),
      })
    : undefined;
  const bus = config.telemetryEnabled
    ? EventBus.open({
        dataDir: config.dataDir,
        rabbitmqUrls: config.rabbitmqUrls,
        topology,
        spoolMaxBytes: config.spoolMaxBytes,
        spoolSegmentBytes: config.spoolSegmentBytes,
        spoolFsyncIntervalMs: config.spoolFsyncIntervalMs,
        publishWindow: config.publishWindow,
        publishConfirmTimeoutMs: config.publishConfirmTimeoutMs,
        heartbeatSeconds: config.rabbitmqHeartbeatSeconds,
        logger: options.logger,
        ledger: ledger?.counts,
      })
    : undefined;
  ledger?.start();
  const queues =
    bus === undefined
      ? undefined
      : new QueueInspector({
          amqpUrls: config.rabbitmqUrls,
          managementUrls: config.rabbitmqManagementUrls,
          queues: topology.queues.map((queue) => queue.name),
        });
  const dlq = new DlqService({
    pool,
    amqpUrls: config.rabbitmqUrls,
    heartbeatSeconds: config.rabbitmqHeartbeatSeconds,
    topology,
    // Replays are recorded in the audit trail through the spool, like every other event of the API.
    emit: bus === undefined ? undefined : (event, traceparent, at) => bus.emit(event, traceparent, at),
  });
  const metrics = createPrometheusRegistry();
  const caches = cacheBudget(config.cacheMaxBytes);
  const eventLoop = new EventLoopHealth(
    bus === undefined ? {} : { publisherThread: () => bus.publisherEventLoopUtilization() },
  );
  registerEventLoopMetrics(metrics, eventLoop);
  if (bus !== undefined) registerBusMetrics(metrics, bus);
  if (queues !== undefined) registerQueueMetrics(metrics, queues);
  registerDeadLetterMetrics(metrics, { count: (state) => dlq.count({ state }) });
  return {
    pool,
    metrics,
    eventLoop,
    registry: new ModelRegistry(new ModelRepository(pool), {
      ttlMs: config.cacheTtlMs,
      modelsMaxBytes: caches.models,
      filtersMaxBytes: caches.filters,
    }),
    apiKeys: new ApiKeyStore(pool, { cacheTtlMs: config.apiKeyCacheTtlMs, cacheMaxBytes: caches.apiKeys }),
    metricsCacheMaxBytes: caches.metrics,
    bus,
    queues,
    dlq,
    async close() {
      eventLoop.stop();
      await queues?.close();
      // Half the shutdown budget: the HTTP drain before this takes the rest; what is left waits on disk.
      await bus?.close(Math.floor(config.shutdownTimeoutMs / 2));
      // After the bus: the confirms of its last sends are counted too.
      await ledger?.close();
      await pool.end();
    },
  };
}
