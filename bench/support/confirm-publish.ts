/**
 * The raw confirm-publish loop, written once: a plain amqplib ConfirmChannel publishes messages keeping
 * `window` unconfirmed at most (the service publisher's PUBLISH_WINDOW), waiting for `drain` when the
 * socket's buffer is full, until there is no next message or the deadline passed, then waits for every
 * confirm. It is the baseline the service's publisher is compared with, the way queues are filled and the
 * publishing half of the raw broker ceiling. Rejects if the channel closes or the run is interrupted
 * (Ctrl-C); nacks are counted, not thrown.
 */
import type { ConfirmChannel } from 'amqplib';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { connectToBroker } from '../../src/bus/broker-connection.ts';
import { lowLevel, sendConfirmed } from '../../src/bus/confirm-send.ts';
import type { OutboundMessage } from '../../src/bus/outbound-message.ts';
import type { Topology } from '../../src/bus/topology.ts';
import { interruptSignal } from './settings.ts';

/** What the loop publishes: the publisher's messages, or anything with the same routing and options. */
export type PublishedMessage = Pick<OutboundMessage, 'exchange' | 'routingKey' | 'body' | 'options'> &
  Partial<Pick<OutboundMessage, 'fields'>>;

export interface ConfirmPublishOptions {
  /** The i-th message (from 0), or undefined when there are no more. */
  message: (index: number) => PublishedMessage | undefined;
  /** amqplib's `publish()` with options, or the publisher's way (confirm-send.ts). @default 'publish' */
  send?: 'publish' | 'prebuilt';
  /** Unconfirmed messages at most. @default 1000 (PUBLISH_WINDOW's default) */
  window?: number;
  /** performance.now() after which no message is published. @default none */
  deadline?: number;
  /** Messages per second, paced: message n at start + n ÷ rate (a 1 ms timer), as requests feed a publisher. */
  rate?: number;
  /** Called as each message is published (e.g. to count what each queue should receive). */
  onPublish?: (index: number) => void;
}

export async function confirmPublish(
  channel: ConfirmChannel,
  options: ConfirmPublishOptions,
): Promise<{ published: number; confirmed: number; nacked: number; returned: number; seconds: number }> {
  const { window = 1000, deadline = Number.POSITIVE_INFINITY, rate } = options;
  const sender = options.send === 'prebuilt' ? lowLevel(channel) : undefined;
  // returned: unroutable (mandatory) messages the broker sent back.
  const counts = { published: 0, confirmed: 0, nacked: 0, returned: 0 };
  const onReturn = () => counts.returned++;
  channel.on('return', onReturn);
  const started = performance.now();
  const open = () => performance.now() < deadline && !interruptSignal.aborted;
  try {
    await new Promise<void>((resolve, reject) => {
      let inflight = 0;
      let waitingForDrain = false;
      let exhausted = false;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => reject(interruptSignal.reason);
      const onClose = () => reject(new Error('the publishing channel closed during the run'));
      if (interruptSignal.aborted) return onAbort();
      interruptSignal.addEventListener('abort', onAbort, { once: true });
      channel.once('close', onClose);
      const onConfirm = (error: unknown) => {
        inflight--;
        if (error !== null && error !== undefined) counts.nacked++;
        else counts.confirmed++;
        pump();
      };
      const pump = () => {
        const due =
          rate === undefined ? Infinity : Math.floor(((performance.now() - started) * rate) / 1000) + 1;
        while (inflight < window && !waitingForDrain && !exhausted && counts.published < due && open()) {
          const index = counts.published;
          const message = options.message(index);
          if (message === undefined) {
            exhausted = true;
            break;
          }
          counts.published++;
          inflight++;
          options.onPublish?.(index);
          if (sender !== undefined && message.fields === undefined)
            throw new Error("send 'prebuilt' needs the publisher's messages");
          const writable =
            sender === undefined
              ? channel.publish(
                  message.exchange,
                  message.routingKey,
                  message.body,
                  message.options,
                  onConfirm,
                )
              : sendConfirmed(sender, message as Pick<OutboundMessage, 'fields' | 'body'>, onConfirm);
          if (!writable) {
            waitingForDrain = true;
            channel.once('drain', () => {
              waitingForDrain = false;
              pump();
            });
          }
        }
        if (rate !== undefined && timer === undefined && !exhausted && open()) {
          timer = setTimeout(() => {
            timer = undefined;
            pump();
          }, 1);
        }
        if (inflight !== 0 || (!exhausted && open())) return;
        interruptSignal.removeEventListener('abort', onAbort);
        channel.off('close', onClose);
        clearTimeout(timer);
        resolve();
      };
      pump();
    });
  } finally {
    channel.off('return', onReturn);
  }
  // seconds: first publish → last confirm.
  return { ...counts, seconds: Math.round(performance.now() - started) / 1000 };
}

/**
 * `action` on a confirm channel of a connection to `url` whose `topology` (if any) was declared first;
 * the connection is closed after it, whatever happened.
 */
export async function withConfirmChannel<T>(
  url: string,
  topology: Topology | undefined,
  action: (channel: ConfirmChannel) => Promise<T>,
): Promise<T> {
  const connection = await connectToBroker(url, { name: 'telemetry-bus bench publisher' });
  connection.on('error', () => {});
  try {
    if (topology !== undefined) await applyTopology(connection, topology);
    const channel = await connection.createConfirmChannel();
    const result = await action(channel);
    await channel.close().catch(() => {});
    return result;
  } finally {
    await connection.close().catch(() => {});
  }
}
