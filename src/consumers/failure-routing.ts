/**
 * Where a failed message goes, and getting it there: up the retry ladder or to the dead-letter queue, as
 * ./failure-policy.ts decides, published on the runtime's confirm channel with the original's body and
 * properties and the failure history in headers. It resolves once the broker confirmed the copy, so the
 * caller acknowledges the original only then: nothing is lost in between.
 */
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, ConsumeMessage } from 'amqplib';
import { EXCHANGES } from '../bus/topology.ts';
import { redactedMessage as describe } from '../redact-credentials.ts';
import { AbandonBatch } from './abandon-batch.ts';
import { decideFailure, FAILURE_HEADERS, type FailureDecision } from './failure-policy.ts';

/**
 * Publishes the failed `message` of `queue` where the policy sends it and returns the decision. Throws
 * {@link AbandonBatch} when there is no channel or the broker refuses the copy (the batch is redelivered).
 */
export async function routeFailure(
  confirm: ConfirmChannel | undefined,
  queue: string,
  message: ConsumeMessage,
  error: unknown,
  options: { poison: boolean; retryDelaysMs: readonly number[] },
): Promise<FailureDecision> {
  const decision = decideFailure(
    {
      queue,
      exchange: message.fields.exchange,
      routingKey: message.fields.routingKey,
      headers: (message.properties.headers ?? {}) as Record<string, unknown>,
    },
    error,
    { ...options, now: new Date(), deadLetterId: randomUUID() },
  );
  const exchange = decision.action === 'retry' ? decision.exchange : EXCHANGES.deadLetters;
  const routingKey =
    decision.action === 'retry'
      ? decision.routingKey
      : String(decision.headers[FAILURE_HEADERS.originalRoutingKey] ?? message.fields.routingKey);
  if (confirm === undefined) throw new AbandonBatch('no publishing channel');
  const { properties } = message;
  try {
    await new Promise<void>((resolve, reject) => {
      confirm.publish(
        exchange,
        routingKey,
        message.content,
        {
          persistent: true,
          contentType: properties.contentType,
          messageId: properties.messageId,
          correlationId: properties.correlationId,
          type: properties.type,
          timestamp: properties.timestamp,
          appId: properties.appId,
          headers: decision.headers,
        },
        (publishError) => (publishError ? reject(publishError) : resolve()),
      );
    });
  } catch (publishError) {
    throw new AbandonBatch(`could not ${decision.action} a message: ${describe(publishError)}`);
  }
  return decision;
}
