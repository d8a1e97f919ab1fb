/**
 * The request mix's events as the publisher sends them (`toOutboundMessage()` of spool records): distinct
 * messages of the mix's event types in the mix's proportions (e2e-mix.ts), for the raw broker loops
 * that are compared with the service (the raw ceiling, the raw confirm-publish loop).
 */
import { randomUUID } from 'node:crypto';
import { type OutboundMessage, toOutboundMessage } from '../../src/bus/outbound-message.ts';
import { childTraceparent } from '../../src/bus/trace-context.ts';
import { exampleEvent } from '../../test/support/event-examples.ts';
import { BLOCK_EVENT_TYPES } from './e2e-mix.ts';
import { apiEvent, recordBytes, recordOf } from './events.ts';

export function mixMessages(count: number): OutboundMessage[] {
  const now = Date.now();
  const messages: OutboundMessage[] = [];
  for (let i = 0; i < count; i++) {
    const type = BLOCK_EVENT_TYPES[i % BLOCK_EVENT_TYPES.length] as (typeof BLOCK_EVENT_TYPES)[number];
    const event =
      type === 'model.queried' || type === 'filter.executed' || type === 'api.error'
        ? apiEvent(type, i, now)
        : exampleEvent(type, {
            event_id: randomUUID(),
            correlation_id: randomUUID(),
            timestamp: new Date(now).toISOString(),
          });
    const record = recordOf({ event, traceparent: childTraceparent(undefined), timestampMs: now });
    messages.push(toOutboundMessage(recordBytes(record)));
  }
  return messages;
}
