/**
 * Benchmark fixture: the API exactly as `telemetry-bus start` builds it (src/cli/start.ts: prepare the
 * database, createServices, buildApp with a pino logger), configured from the environment alone, listening
 * on the port the environment says (0 = any free one). It creates an admin API key for the load generator
 * and announces itself with one JSON line on stdout:
 *
 *   {"fixture":"listening","port":43121,"key":"tb_…","telemetry":true,"pid":1234}
 *
 * When started with an IPC channel, it answers `{ type: 'loop-delay' }` with the event-loop delay histogram
 * since the previous such message (ms: mean, p50, p99, max; perf_hooks.monitorEventLoopDelay, 1 ms
 * resolution): how long ready work waited for the event loop, e.g. behind the publisher's work.
 *
 * Logs go to stderr (JSON, at LOG_LEVEL). It shuts down gracefully, as the service does (app.close(), then
 * services.close(), which lets the publisher send what the spool holds for up to SHUTDOWN_TIMEOUT_MS), on
 * SIGTERM or SIGINT, or when its stdin closes, so it never outlives a benchmark that died. Exit code 0 after
 * a clean shutdown.
 *
 *   node --import tsx bench/support/api-server.ts   (with DATABASE_URL, TELEMETRY_ENABLED, DATA_DIR, … set)
 */
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import pino from 'pino';
import { prepareDatabase } from '../../src/cli/prepare-database.ts';
import { loadConfig } from '../../src/config.ts';
import { buildApp } from '../../src/http/app.ts';
import { loggerOptions } from '../../src/logger.ts';
import { createServices } from '../../src/services.ts';

const config = loadConfig(process.env);
const logger = pino(loggerOptions(config.logLevel), pino.destination(2));
await prepareDatabase(config.databaseUrl, (message) => logger.info(message));
const services = createServices(config, {
  onPoolError: (error) => logger.warn({ err: error }, 'idle PostgreSQL client failed'),
  logger: logger.child({ component: 'publisher' }),
});
const app = await buildApp(services, {
  logger,
  rateLimitPerMinute: config.rateLimitPerMinute,
  trustProxy: config.trustProxy,
});

let closing = false;
function shutdown(reason: string): void {
  if (closing) return;
  closing = true;
  void (async () => {
    logger.info({ reason }, 'bench fixture shutting down');
    const timer = setTimeout(() => {
      logger.error({}, 'bench fixture: shutdown took too long');
      process.exit(1);
    }, config.shutdownTimeoutMs + 5000);
    timer.unref();
    let code = 0;
    try {
      await app.close();
      await services.close();
    } catch (error) {
      logger.error({ err: error }, 'bench fixture: shutdown failed');
      code = 1;
    }
    // stdin is still open (it is how a dead parent is noticed), so the process would not end by itself.
    process.exit(code);
  })();
}
process.once('SIGTERM', () => shutdown('SIGTERM'));
process.once('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
process.on('message', (message: { type?: string }) => {
  if (message?.type !== 'loop-delay') return;
  const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
  process.send?.({
    type: 'loop-delay',
    mean: ms(loopDelay.mean),
    p50: ms(loopDelay.percentile(50)),
    p99: ms(loopDelay.percentile(99)),
    max: ms(loopDelay.max),
  });
  loopDelay.reset();
});
// The IPC channel must not keep the process alive on its own once it shuts down.
process.channel?.unref();

const { key } = await services.apiKeys.create('bench load generator', 'admin');
await app.listen({ host: config.host, port: config.port });
const { port } = app.server.address() as AddressInfo;
process.stdout.write(
  `${JSON.stringify({ fixture: 'listening', port, key, telemetry: config.telemetryEnabled, pid: process.pid })}\n`,
);
