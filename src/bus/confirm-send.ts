/**
 * Publishing a pre-built message on a confirm channel through amqplib's lower level: what
 * `ConfirmChannel.publish()` does, less its conversion of options into method fields and properties
 * (`Args.publish()`), which allocates per message and wraps the headers in `Object.create()`, so the
 * header-table encoder walks them through a prototype chain. The message's fields are built once by
 * ./outbound-message.ts in the form amqplib's encoder reads; amqplib still encodes the frames (no AMQP
 * framing is written here).
 *
 * `publish()` in amqplib 2.x is `sendMessage(fields, fields, content)` then `pushConfirmCallback(cb)`;
 * both are methods of its channel classes that its own `publish()` calls. They are checked once per
 * channel, so an amqplib that changed them fails loudly at connect, not silently per message.
 */
import type { ConfirmChannel } from 'amqplib';
import type { OutboundMessage, PublishFields } from './outbound-message.ts';

interface LowLevelConfirmChannel {
  sendMessage(fields: PublishFields, properties: PublishFields, content: Buffer): boolean;
  pushConfirmCallback(callback: (error: unknown) => void): void;
}

/** The channel's lower level; throws if this amqplib does not have it. */
export function lowLevel(channel: ConfirmChannel): LowLevelConfirmChannel {
  const candidate = channel as unknown as Partial<LowLevelConfirmChannel>;
  if (typeof candidate.sendMessage !== 'function' || typeof candidate.pushConfirmCallback !== 'function') {
    throw new Error(
      'amqplib ConfirmChannel has no sendMessage/pushConfirmCallback: check the amqplib version',
    );
  }
  return candidate as LowLevelConfirmChannel;
}

/**
 * Publishes `message` and calls `callback` with the broker's confirm (null) or nack (an error), as
 * `ConfirmChannel.publish()` would. Returns false when the socket's buffer is full (wait for 'drain').
 */
export function sendConfirmed(
  channel: LowLevelConfirmChannel,
  message: Pick<OutboundMessage, 'fields' | 'body'>,
  callback: (error: unknown) => void,
): boolean {
  const writable = channel.sendMessage(message.fields, message.fields, message.body);
  channel.pushConfirmCallback(callback);
  return writable;
}
