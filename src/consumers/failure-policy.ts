/**
 * What happens to a message that failed: pure logic, tested without a broker or timers.
 *
 * | failures so far | poison? | next                                              |
 * | --------------- | ------- | ------------------------------------------------- |
 * | any             | yes     | dead-letter at once                               |
 * | 0               | no      | retry after delays[0] (1 s by default)            |
 * | 1               | no      | retry after delays[1] (5 s)                       |
 * | 2               | no      | retry after delays[2] (30 s)                      |
 * | 3 (= delays)    | no      | dead-letter: the ladder is exhausted              |
 *
 * The failure history travels in the message's headers, so any worker can pick up where another left.
 */
import { retryName } from '../bus/topology.ts';

/** Header names of the failure history, shared by the runtime, the DLQ archive and replay. */
export const FAILURE_HEADERS = {
  attempts: 'x-attempts',
  firstFailureAt: 'x-first-failure-at',
  lastFailureAt: 'x-last-failure-at',
  errorType: 'x-error-type',
  errorMessage: 'x-error-message',
  errorStack: 'x-error-stack',
  originalExchange: 'x-original-exchange',
  originalRoutingKey: 'x-original-routing-key',
  originalQueue: 'x-original-queue',
  deadLetterId: 'x-dead-letter-id',
} as const;

/** Error messages are cut to this many characters in headers. */
export const ERROR_MESSAGE_MAX_LENGTH = 1024;
/** Stack traces are cut to this many characters in headers (AMQP header tables must stay small). */
export const ERROR_STACK_MAX_LENGTH = 8192;

export interface FailedMessage {
  queue: string;
  exchange: string;
  routingKey: string;
  headers: Record<string, unknown>;
}

export type FailureDecision =
  | {
      action: 'retry';
      exchange: string;
      routingKey: string;
      delayMs: number;
      headers: Record<string, unknown>;
    }
  | { action: 'dead-letter'; headers: Record<string, unknown> };

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** Failures recorded so far (0 for a first delivery). */
export function failuresSoFar(headers: Record<string, unknown>): number {
  const value = Number(headers[FAILURE_HEADERS.attempts] ?? 0);
  return Number.isInteger(value) && value >= 0 ? value : 0;
}

export function describeError(error: unknown): { type: string; message: string; stack: string } {
  const failure = error instanceof Error ? error : new Error(String(error));
  const code = (failure as { code?: unknown }).code;
  return {
    type: typeof code === 'string' && code !== '' ? code : failure.name,
    message: failure.message.slice(0, ERROR_MESSAGE_MAX_LENGTH),
    stack: (failure.stack ?? `${failure.name}: ${failure.message}`).slice(0, ERROR_STACK_MAX_LENGTH),
  };
}

export function decideFailure(
  message: FailedMessage,
  error: unknown,
  options: { poison: boolean; retryDelaysMs: readonly number[]; now: Date; deadLetterId: string },
): FailureDecision {
  const previous = failuresSoFar(message.headers);
  const described = describeError(error);
  const nowIso = options.now.toISOString();
  const headers: Record<string, unknown> = {
    ...message.headers,
    [FAILURE_HEADERS.attempts]: previous + 1,
    [FAILURE_HEADERS.firstFailureAt]: text(message.headers[FAILURE_HEADERS.firstFailureAt]) ?? nowIso,
    [FAILURE_HEADERS.lastFailureAt]: nowIso,
    [FAILURE_HEADERS.errorType]: described.type,
    [FAILURE_HEADERS.errorMessage]: described.message,
    [FAILURE_HEADERS.errorStack]: described.stack,
    // A retried message comes back through retry.requeue: the original route is the first one seen.
    [FAILURE_HEADERS.originalExchange]:
      text(message.headers[FAILURE_HEADERS.originalExchange]) ?? message.exchange,
    [FAILURE_HEADERS.originalRoutingKey]:
      text(message.headers[FAILURE_HEADERS.originalRoutingKey]) ?? message.routingKey,
    [FAILURE_HEADERS.originalQueue]: message.queue,
  };
  const delayMs = options.retryDelaysMs[previous];
  if (!options.poison && delayMs !== undefined) {
    return { action: 'retry', exchange: retryName(delayMs), routingKey: message.queue, delayMs, headers };
  }
  headers[FAILURE_HEADERS.deadLetterId] = options.deadLetterId;
  return { action: 'dead-letter', headers };
}
