import type { LoggerOptions } from 'pino';
import type { LogLevel } from './config.ts';

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
