/**
 * Test support: dead letters archived as the dlq consumer archives them, from messages shaped like the
 * runtime's (failure headers, the original exchange and queue), without running the retry ladder.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import type { Delivery } from '../../src/consumers/consumer.ts';
import { dlqConsumer } from '../../src/consumers/dlq/dlq-consumer.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';

export interface DeadLetterOptions {
  /** @default 'TypeError' */
  errorType?: string;
  /** @default 'cannot read properties of undefined' */
  errorMessage?: string;
  /** More headers, e.g. a stack trace or `x-death`. */
  headers?: Record<string, unknown>;
}

/** Archives one dead letter of `audit.trail` per event, the last failed most recently (a second apart). */
export async function archiveDeadLetters(
  pool: pg.Pool,
  events: TelemetryEvent[],
  options: DeadLetterOptions = {},
): Promise<Delivery[]> {
  const deliveries = events.map((event, index): Delivery => {
    const id = randomUUID();
    const failedAt = new Date(Date.now() - (events.length - index) * 1000).toISOString();
    const modelId = (event.data as { model_id?: unknown }).model_id;
    return {
      id,
      event: undefined,
      content: Buffer.from(JSON.stringify(event)),
      exchange: EXCHANGES.deadLetters,
      routingKey: event.event_type,
      redelivered: false,
      properties: {
        messageId: event.event_id,
        correlationId: event.correlation_id,
        type: event.event_type,
        timestamp: 1_736_937_000,
        headers: {
          'cloudEvents:type': event.event_type,
          ...(typeof modelId === 'string' ? { model_id: modelId } : {}),
          [FAILURE_HEADERS.attempts]: 4,
          [FAILURE_HEADERS.firstFailureAt]: failedAt,
          [FAILURE_HEADERS.lastFailureAt]: failedAt,
          [FAILURE_HEADERS.errorType]: options.errorType ?? 'TypeError',
          [FAILURE_HEADERS.errorMessage]: options.errorMessage ?? 'cannot read properties of undefined',
          [FAILURE_HEADERS.originalExchange]: EXCHANGES.models,
          [FAILURE_HEADERS.originalRoutingKey]: event.event_type,
          [FAILURE_HEADERS.originalQueue]: QUEUES.audit,
          [FAILURE_HEADERS.deadLetterId]: id,
          ...options.headers,
        },
      },
    };
  });
  const client = await pool.connect();
  try {
    await dlqConsumer({ error() {} }).apply?.(deliveries, client);
  } finally {
    client.release();
  }
  return deliveries;
}
