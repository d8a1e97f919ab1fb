/** `telemetry-bus start`: prepare the database, then serve the API until a signal says stop. */
import closeWithGrace from 'close-with-grace';
import pino from 'pino';
import type { Config } from '../config.ts';
import { serverLimitsOf } from '../config.ts';
import { buildApp } from '../http/app.ts';
import { loggerOptions } from '../logger.ts';
import { createServices } from '../services.ts';
import { prepareDatabase } from './prepare-database.ts';
import { runConsumers } from './run-consumers.ts';

function printBootstrapKey(key: string, baseUrl: string): void {
  // Written once to the terminal, deliberately not through the logger: keys never enter the logs.
  process.stdout.write(
    [
      '',
      '  No API keys existed, so an admin key was created. It is shown only this once:',
      '',
      `    ${key}`,
      '',
      '  Try it:',
      `    curl -s -H 'x-api-key: ${key}' ${baseUrl}/models`,
      '',
      '  More keys: npx telemetry-bus keys create --role writer --name ci',
      '',
      '',
    ].join('\n'),
  );
}

export async function start(config: Config): Promise<void> {
  const logger = pino(loggerOptions(config.logLevel));
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));
  const services = createServices(config, {
    onPoolError: (error) => logger.warn({ err: error }, 'idle PostgreSQL client failed'),
    logger: logger.child({ component: 'publisher' }),
  });
  const app = await buildApp(services, {
    logger: logger,
    rateLimitPerMinute: config.rateLimitPerMinute,
    rateLimitKeylessPerMinute: config.rateLimitKeylessPerMinute,
    trustProxy: config.trustProxy,
    eventIpAddress: config.eventIpAddress,
    eventIpHashKey: config.eventIpHashKey,
    metricsScrapeToken: config.metricsScrapeToken,
    metricsRollupRetentionDays: config.metricsRollupRetentionDays,
    serverLimits: serverLimitsOf(config),
  });

  const consumers =
    config.consumers.length === 0
      ? undefined
      : await runConsumers(config, services.pool, config.consumers, logger, services.metrics);

  closeWithGrace({ delay: config.shutdownTimeoutMs, logger }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'shutting down after an uncaught error');
    else logger.info({ signal }, 'shutting down');
    // Stop accepting, let in-flight requests finish (their events are spooled), stop consuming, then
    // publish what the spool holds and release the database.
    await app.close();
    await consumers?.stop(Math.floor(config.shutdownTimeoutMs / 4));
    await services.close();
  });

  const bootstrap = config.bootstrapAdminKey ? await services.apiKeys.bootstrapAdmin() : undefined;
  const address = await app.listen({ host: config.host, port: config.port });
  const baseUrl = address.replace('0.0.0.0', '127.0.0.1').replace('[::]', '[::1]');
  logger.info({ url: baseUrl }, 'telemetry-bus API listening');
  if (bootstrap !== undefined) printBootstrapKey(bootstrap.key, baseUrl);
}
