/**
 * The logging consumer: every `api.error` event in `logging.errors` becomes one structured JSON line
 * (pino), level `error` (50) for a 5xx and `warn` (40) for a 4xx, written to stdout and to
 * `<directory>/errors.log`, rotated by size.
 *
 * Once per event: the runtime records the event id as applied in its transaction, and the line is written
 * in `afterCommit`, so a redelivered or replayed duplicate (already recorded) writes nothing. The price is
 * at-most-once: a process killed between the commit and the write loses those lines (the same
 * events are in the audit trail). Writing in `apply` would be at-least-once instead: every batch retried
 * after a failed commit would log twice.
 *
 * Everything from the request is sanitised before pino sees it ({@link sanitizeLogText}): secrets
 * redacted, CR/LF and terminal escape sequences made inert text. pino's `redact` covers the known paths
 * on top, should a field carrying headers ever be added.
 */

import { join } from 'node:path';
import type { Writable } from 'node:stream';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { EventOf } from '../../bus/event-schemas.ts';
import type { PublisherLogger } from '../../bus/spool-publisher.ts';
import { QUEUES } from '../../bus/topology.ts';
import { loggerOptions } from '../../logger.ts';
import type { Consumer, Delivery } from '../consumer.ts';
import { PoisonMessageError } from '../poison-message-error.ts';
import { RotatingFile } from './rotating-file.ts';
import { REDACTED, sanitizeLogText, sanitizeStackTrace } from './sanitize-log-text.ts';

export interface LoggingConsumerOptions {
  /** Directory of the error log: `<directory>/errors.log` and its rotated copies. Normally `<DATA_DIR>/logs`. */
  directory: string;
  /** Size at which `errors.log` is rotated, in bytes. @default the RotatingFile's (ROTATING_FILE_DEFAULTS) */
  maxFileBytes?: number;
  /** Rotated files kept besides `errors.log` (`errors.log.1` newest … `errors.log.<maxFiles>`). @default the RotatingFile's (ROTATING_FILE_DEFAULTS) */
  maxFiles?: number;
  /** Also write each line to the process's stdout (`true`), to this stream, or nowhere else (`false`). @default true */
  stdout?: boolean | Writable;
  /** Where a failure to write the log file is reported (at most every 10 s). @default silent */
  logger?: PublisherLogger;
}

export interface LoggingCounters {
  /** Lines written (one per event applied). */
  logged: number;
  /** Lines the log file could not take (disk full, permissions): they went to stdout only. */
  fileWriteErrors: number;
  /** Rotations that failed (the line went to the active file anyway). */
  rotationErrors: number;
}

export interface LoggingConsumer extends Consumer {
  readonly counters: Readonly<LoggingCounters>;
  /** The log file being written. */
  readonly file: RotatingFile;
  /** Closes the log file; call after the runtime stopped. */
  close(): void;
}

/** The name of the active log file in `directory`. */
export const ERROR_LOG_FILE = 'errors.log';

/**
 * Paths pino censors in every line. The fields built below never hold these: they are the net under
 * the net, for a field added later that carries request headers or credentials.
 */
const REDACT_PATHS = [
  '["x-api-key"]',
  'x_api_key',
  'api_key',
  'authorization',
  'headers["x-api-key"]',
  'headers.authorization',
  'headers.cookie',
  '*.headers["x-api-key"]',
  '*.headers.authorization',
  'password',
  '*.password',
];

/**
 * The top-level keys redaction `paths` can censor (`a`, `a.b`, `["a-b"].c`); a path starting with a
 * wildcard (`*.password`) can only reach into a value that is an object.
 */
export function topLevelNames(paths: readonly string[]): Set<string> {
  const names = new Set<string>();
  for (const path of paths) {
    const quoted = /^\[\s*(["'])(.*?)\1\s*\]/.exec(path);
    const name = quoted !== null ? (quoted[2] as string) : (/^[^.[]*/.exec(path)?.[0] ?? path);
    if (name !== '*') names.add(name);
  }
  return names;
}

export type ApiErrorEvent = EventOf<'api.error'>;

/** One log line: its level, message and fields, every text from the request sanitised. */
export interface ErrorLogLine {
  level: 'error' | 'warn';
  message: string;
  fields: Record<string, string | number | null>;
}

/** Builds the line of an `api.error` event (pure: the tests and the consumer share it). */
export function errorLogLine(event: ApiErrorEvent): ErrorLogLine {
  const text = (value: string | null) => (value === null ? null : sanitizeLogText(value));
  const { metadata, error, data } = event;
  const serverError = metadata.response_code >= 500;
  const fields: Record<string, string | number | null> = {
    event_id: text(event.event_id),
    correlation_id: text(event.correlation_id),
    event_type: event.event_type,
    timestamp: text(event.timestamp),
    source: event.source,
    user_id: text(event.user_id),
    method: text(metadata.method),
    route: text(metadata.route),
    response_code: metadata.response_code,
    request_duration_ms: metadata.request_duration_ms,
    error_type: text(error.type),
    error_message: text(error.message),
    model_id: text(data.model_id),
    field: text(data.field),
    ip_address: text(metadata.ip_address),
    user_agent: text(metadata.user_agent),
  };
  if (serverError)
    fields.stack_trace = error.stack_trace === null ? null : sanitizeStackTrace(error.stack_trace);
  return {
    level: serverError ? 'error' : 'warn',
    message: `${fields.method} ${fields.route ?? '(no route)'} ${metadata.response_code} ${fields.error_type}`,
    fields,
  };
}

const silentLogger: PublisherLogger = { info() {}, warn() {}, error() {} };

export function loggingConsumer(options: LoggingConsumerOptions): LoggingConsumer {
  const reporter = options.logger ?? silentLogger;
  const counters: LoggingCounters = { logged: 0, fileWriteErrors: 0, rotationErrors: 0 };
  let lastReportAt = 0;
  /** A full disk fails every line: say so every 10 s, not a thousand times a second. */
  const report = (error: unknown, message: string) => {
    const now = Date.now();
    if (now - lastReportAt < 10_000) return;
    lastReportAt = now;
    reporter.error({ err: error instanceof Error ? error.message : String(error), ...counters }, message);
  };
  const file = new RotatingFile({
    path: join(options.directory, ERROR_LOG_FILE),
    maxFileBytes: options.maxFileBytes,
    maxFiles: options.maxFiles,
    onRotationError: (error) => {
      counters.rotationErrors++;
      report(error, `cannot rotate ${ERROR_LOG_FILE}; it grows past its limit until a rotation succeeds`);
    },
  });
  const stdoutOption = options.stdout ?? true;
  const stdout: Writable | undefined =
    stdoutOption === true ? process.stdout : stdoutOption === false ? undefined : stdoutOption;

  // One destination that writes each line to both sinks, so a failing file never costs the stdout copy
  // and a failure of either is seen here rather than thrown through pino into the runtime.
  const destination: DestinationStream = {
    write(line: string) {
      stdout?.write(line);
      try {
        file.write(line);
      } catch (error) {
        counters.fileWriteErrors++;
        report(error, `cannot write ${ERROR_LOG_FILE}; lines go to stdout only`);
      }
    },
  };
  const { redact, ...base } = loggerOptions('warn');
  const inherited = Array.isArray(redact) ? redact : (redact?.paths ?? []);
  const paths = [...new Set([...inherited, ...REDACT_PATHS])];
  const redacting: Logger = pino({ ...base, redact: { paths, censor: REDACTED } }, destination);
  // pino's redaction costs as much as the rest of a line; on fields it cannot change (see censorable) the
  // same line is written without it.
  const plain: Logger = pino(base, destination);
  const censored = topLevelNames(paths);
  const censorable = (fields: ErrorLogLine['fields']) => {
    for (const key in fields) {
      const value: unknown = fields[key];
      if (censored.has(key) || (typeof value === 'object' && value !== null)) return true;
    }
    return false;
  };

  return {
    name: 'logging',
    queue: QUEUES.logging,
    counters,
    file,
    writes(deliveries: Delivery[]) {
      // Nothing to store: the runtime's records (de-duplication, ledger) are the whole transaction. Only
      // check that the event is one this consumer can log, so a stray one is dead-lettered, not skipped.
      for (const delivery of deliveries) {
        if (delivery.event?.event_type !== 'api.error') {
          throw new PoisonMessageError(
            `the logging consumer takes api.error events only, got ${String(delivery.event?.event_type)}`,
          );
        }
      }
      return [];
    },
    afterCommit(deliveries: Delivery[]) {
      for (const delivery of deliveries) {
        // Never throw from here: the events are committed, and the runtime would take a throw for the
        // message's failure (its retry would find the event applied and log nothing).
        try {
          const line = errorLogLine(delivery.event as ApiErrorEvent);
          (censorable(line.fields) ? redacting : plain)[line.level](line.fields, line.message);
          counters.logged++;
        } catch (error) {
          reporter.error(
            { err: (error as Error).message, eventId: delivery.id },
            'could not log an api.error event',
          );
        }
      }
    },
    close() {
      file.close();
    },
  };
}
