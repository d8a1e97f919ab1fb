/**
 * The dead-letter archive: every message that reaches `dlq.dead_letters` becomes a row of `dead_letters`
 * (one multi-row insert per batch, in the runtime's transaction) and, once committed, one error-level log
 * line with its error and stack trace.
 *
 * It takes raw messages (`validate: false`): a dead letter is by definition something that failed, maybe
 * not even JSON. Its apply must not fail because of a message — a failure here would send the dead letter
 * up the ladder of a queue `retry.requeue` does not route back to — so every value is made storable first
 * (see dead-letter-record.ts); only PostgreSQL being away stops it, and the runtime waits that out.
 */
import type pg from 'pg';
import { QUEUES } from '../../bus/topology.ts';
import type { Consumer, Delivery } from '../consumer.ts';
import { type DeadLetterRecord, deadLetterIdOf, toDeadLetterRecord } from './dead-letter-record.ts';

/** The part of a pino logger the archive uses. */
export interface DeadLetterLogger {
  error(object: object, message: string): void;
}

const INSERT = `
  INSERT INTO dead_letters (
    id, event_id, event_type, model_id, correlation_id, original_exchange, original_routing_key,
    original_queue, reason, attempts, error_type, error_message, error_stack, first_failure_at,
    last_failure_at, received_at, content, properties, headers
  )
  SELECT * FROM unnest(
    $1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::text[], $10::integer[], $11::text[], $12::text[], $13::text[], $14::timestamptz[],
    $15::timestamptz[], $16::timestamptz[], $17::bytea[], $18::jsonb[], $19::jsonb[]
  )
  ON CONFLICT (id) DO NOTHING
  RETURNING id`;

export function dlqConsumer(logger: DeadLetterLogger): Consumer {
  // What apply built, for afterCommit's log lines (the same Delivery objects are passed to both).
  const archived = new WeakMap<Delivery, DeadLetterRecord>();
  return {
    name: 'dlq',
    queue: QUEUES.deadLetters,
    validate: false,
    idOf: deadLetterIdOf,
    // The archive's own key refuses a second copy: a raw message need not carry a valid event id, so
    // nothing of it goes to the runtime's per-event records.
    deduplicates: true,
    async apply(deliveries: Delivery[], client: pg.PoolClient) {
      const receivedAt = new Date();
      const records = deliveries.map((delivery) => {
        const record = toDeadLetterRecord(delivery, receivedAt);
        archived.set(delivery, record);
        return record;
      });
      const column = <T>(pick: (record: DeadLetterRecord) => T): T[] => records.map(pick);
      const { rows } = await client.query<{ id: string }>(INSERT, [
        column((r) => r.id),
        column((r) => r.eventId),
        column((r) => r.eventType),
        column((r) => r.modelId),
        column((r) => r.correlationId),
        column((r) => r.originalExchange),
        column((r) => r.originalRoutingKey),
        column((r) => r.originalQueue),
        column((r) => r.reason),
        column((r) => r.attempts),
        column((r) => r.errorType),
        column((r) => r.errorMessage),
        column((r) => r.errorStack),
        column((r) => r.firstFailureAt.toISOString()),
        column((r) => r.lastFailureAt.toISOString()),
        column(() => receivedAt.toISOString()),
        column((r) => r.content),
        column((r) => JSON.stringify(r.properties)),
        column((r) => JSON.stringify(r.headers)),
      ]);
      const inserted = new Set(rows.map((row) => row.id));
      return deliveries.filter((delivery) => inserted.has(delivery.id));
    },
    afterCommit(deliveries: Delivery[]) {
      for (const delivery of deliveries) {
        const record = archived.get(delivery);
        if (record === undefined) continue;
        logger.error(
          {
            deadLetter: {
              id: record.id,
              eventId: record.eventId,
              eventType: record.eventType,
              modelId: record.modelId,
              correlationId: record.correlationId,
              originalQueue: record.originalQueue,
              reason: record.reason,
              attempts: record.attempts,
              contentBytes: record.content.length,
            },
            err: { type: record.errorType, message: record.errorMessage, stack: record.errorStack },
          },
          `dead letter archived: ${record.errorType} in ${record.originalQueue ?? 'an unknown queue'}`,
        );
      }
    },
  };
}
