/**
 * A consumed message as a consumer gets it (./consumer.ts's Delivery): its AMQP fields and properties,
 * its id, and its event parsed from JSON and validated against the schema of its type — or the reason it
 * is poison. An event routed to several of the process's consumers is parsed once (./parsed-events.ts);
 * a process with one consumer that validates keeps no such cache (nobody would read it).
 * A consumer with `validate: false` takes the raw message, identified by its own `idOf`, the message id,
 * or a hash of the bytes.
 */
import { createHash } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { validateEvent } from '../bus/event-validator.ts';
import { redactedMessage as describe } from '../redact-credentials.ts';
import type { Consumer, Delivery } from './consumer.ts';
import type { ParsedEvents } from './parsed-events.ts';
import { PoisonMessageError } from './poison-message-error.ts';

export function toDelivery(
  consumer: Pick<Consumer, 'validate' | 'idOf'>,
  message: ConsumeMessage,
  /** Events parsed for the process's other consumers; none when no other consumer would take them. */
  parsedEvents: ParsedEvents | undefined,
): Delivery | PoisonMessageError {
  const { properties, fields } = message;
  // One object per delivery, its event and id filled in below (a base object spread into a second one
  // with them made two per delivery, and this runs for every message of every consumer).
  const delivery: Delivery = {
    event: undefined,
    id: '',
    content: message.content,
    exchange: fields.exchange,
    routingKey: fields.routingKey,
    redelivered: fields.redelivered,
    properties: {
      contentType: properties.contentType as string | undefined,
      appId: properties.appId as string | undefined,
      messageId: properties.messageId as string | undefined,
      correlationId: properties.correlationId as string | undefined,
      type: properties.type as string | undefined,
      timestamp: properties.timestamp as number | undefined,
      headers: (properties.headers ?? {}) as Record<string, unknown>,
    },
  };
  if (consumer.validate === false) {
    try {
      const { event: _event, id: _id, ...raw } = delivery;
      delivery.id =
        consumer.idOf?.(raw) ??
        (typeof properties.messageId === 'string' && properties.messageId !== ''
          ? properties.messageId
          : `sha256:${createHash('sha256').update(message.content).digest('hex')}`);
      return delivery;
    } catch (error) {
      // A message the consumer cannot even identify would block its queue if redelivered forever.
      return new PoisonMessageError(`cannot identify the message: ${describe(error)}`, { cause: error });
    }
  }
  const messageId = delivery.properties.messageId;
  const known = parsedEvents?.get(messageId, message.content);
  if (known !== undefined) {
    delivery.event = known;
    delivery.id = known.event_id;
    return delivery;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(message.content.toString('utf8'));
  } catch (error) {
    return new PoisonMessageError(`the message is not JSON: ${(error as Error).message}`, { cause: error });
  }
  const validation = validateEvent(parsed);
  if (!validation.ok) return new PoisonMessageError(`invalid event: ${validation.reason}`);
  parsedEvents?.set(messageId, message.content, validation.event);
  delivery.event = validation.event;
  delivery.id = validation.event.event_id;
  return delivery;
}
