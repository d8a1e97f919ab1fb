/** `telemetry-bus worker`: run consumers without the API, until a signal says stop. */
import closeWithGrace from 'close-with-grace';
import pino from 'pino';
import { type Config, parseConsumerList } from '../config.ts';
import { CONSUMER_NAMES, type ConsumerName } from '../consumers/consumer-names.ts';
import { createPool } from '../db/create-pool.ts';
import { loggerOptions } from '../logger.ts';
import { type MetricsServer, startMetricsServer } from '../prometheus/metrics-server.ts';
import { createPrometheusRegistry } from '../prometheus/prometheus-registry.ts';
import { CliError } from './cli-error.ts';
import { prepareDatabase } from './prepare-database.ts';
import { runConsumers } from './run-consumers.ts';

export async function worker(config: Config, options: { consumers?: string }): Promise<void> {
  let names: readonly ConsumerName[] = config.consumers;
  if (options.consumers !== undefined) {
    const parsed = parseConsumerList(options.consumers);
    if (parsed === undefined || parsed.length === 0) {
      throw new CliError(
        `--consumers must be all or a comma-separated list of ${CONSUMER_NAMES.join(', ')}`,
        {
          exitCode: 2,
        },
      );
    }
    names = parsed;
  }
  if (names.length === 0) throw new CliError('no consumers to run (CONSUMERS=none)', { exitCode: 2 });
  const logger = pino(loggerOptions(config.logLevel));
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));
  // A connection per consumer (one audit consumer per partition) and one for the pruner, so no consumer
  // waits for another's transaction.
  const consumerCount = names.length + (names.includes('audit') ? config.auditPartitions - 1 : 0);
  const pool = createPool({ databaseUrl: config.databaseUrl, max: Math.max(2, consumerCount + 1) }, (error) =>
    logger.warn({ err: error }, 'idle PostgreSQL client failed'),
  );
  const metrics = createPrometheusRegistry();
  const running = await runConsumers(config, pool, names, logger, metrics);
  let metricsServer: MetricsServer | undefined;
  closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'shutting down after an uncaught error');
    else logger.info({ signal }, 'shutting down');
    await running.stop(Math.floor(config.shutdownTimeoutMs / 2));
    await metricsServer?.close();
    await pool.end();
  });
  if (config.workerMetricsPort !== null) {
    metricsServer = await startMetricsServer({
      registry: metrics,
      host: config.host,
      port: config.workerMetricsPort,
      scrapeToken: config.metricsScrapeToken,
    });
    logger.info({ url: `${metricsServer.url}/metrics` }, 'worker metrics served');
  }
  logger.info({ consumers: names }, 'telemetry-bus worker consuming');
}
