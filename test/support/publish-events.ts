/**
 * Test support: publishes events exactly as the API's publisher does (a spool record turned into an
 * outbound message: same exchange, routing key, properties and headers), over a confirm channel, for the
 * tests that need the consumers fed without an API in front.
 */
import type { ConfirmChannel } from 'amqplib';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { eventRecord, toOutboundMessage } from '../../src/bus/outbound-message.ts';
import { TestProducer } from './test-producer.ts';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

/** The producer whose stream every call stamps, unless given another (or null: no stamp). */
const sameProducer = new TestProducer();

/**
 * Publishes `events` in order and resolves once the broker has confirmed them all. Each event is stamped
 * with its place in `producer`'s stream; an event published again keeps it, as a resend does.
 */
export async function publishEvents(
  channel: ConfirmChannel,
  events: readonly TelemetryEvent[],
  producer: TestProducer | null = sameProducer,
): Promise<void> {
  for (const event of events) {
    const record = eventRecord(event, TRACEPARENT, Date.parse(event.timestamp), producer?.stamp(event));
    const message = toOutboundMessage(Buffer.from(record));
    channel.publish(message.exchange, message.routingKey, message.body, message.options);
  }
  await channel.waitForConfirms();
}
