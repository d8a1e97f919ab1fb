import type { LoggerOptions } from 'pino';

/** pino's levels, as LOG_LEVEL takes them. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * pino options shared by every process. Keys, passwords and credentials in URLs are redacted wherever a
 * log line might carry them.
 */
export function loggerOptions(level: LogLevel): LoggerOptions {
  return {
    level,
    base: { service: 'telemetry-bus' },
    timestamp: () => `,"time":"${new Date().toISOString()}"`,
    redact: {
      paths: [
        'req.headers["x-api-key"]',
        'req.headers.authorization',
        'req.headers.cookie',
        'headers["x-api-key"]',
        'apiKey',
        'key',
        'password',
        'databaseUrl',
        'rabbitmqUrls',
        'rabbitmqManagementUrls',
        '*.password',
        '*.apiKey',
      ],
      censor: '[redacted]',
    },
  };
}
