/**
 * The raw confirm-publish loop, written once: a plain amqplib ConfirmChannel publishes messages keeping
 * `window` unconfirmed at most (the service publisher's PUBLISH_WINDOW), waiting for `drain` when the
 * socket's buffer is full, until there is no next message or the deadline passed, then waits for every
 * confirm. It is the baseline the service's publisher is compared with (bench:publisher), the way queues
 * are filled (bench:consumers) and the publishing half of the raw broker ceiling.
 *
 * Rejects if the channel closes or the run is interrupted (Ctrl-C); nacks are counted, not thrown.
 */
import type { ConfirmChannel } from 'amqplib';
import { lowLevel, sendConfirmed } from '../../src/bus/confirm-send.ts';
import type { OutboundMessage } from '../../src/bus/outbound-message.ts';

/** What the loop publishes: the publisher's messages, or anything with the same routing and options. */
export type PublishedMessage = Pick<OutboundMessage, 'exchange' | 'routingKey' | 'body' | 'options'> &
  Partial<Pick<OutboundMessage, 'fields'>>;

import { interruptSignal } from './settings.ts';

export interface ConfirmPublishOptions {
  /** The i-th message (from 0), or undefined when there are no more. */
  message: (index: number) => PublishedMessage | undefined;
  /**
   * 'publish': amqplib's `publish()` with options, as any client does; 'prebuilt': the service
   * publisher's way (src/bus/confirm-send.ts: the message's pre-built `fields` through amqplib's lower
   * level). @default 'publish'
   */
  send?: 'publish' | 'prebuilt';
  /** Unconfirmed messages at most. @default 1000 (PUBLISH_WINDOW's default) */
  window?: number;
  /** performance.now() after which no message is published. @default none */
  deadline?: number;
  /**
   * Messages per second, paced: message n is published at start + n ÷ rate (a 1 ms timer between), so the
   * client works as a publisher fed by requests does, a few messages per wake-up instead of a full
   * window per socket write. @default none (as fast as the window allows)
   */
  rate?: number;
  /** Called as each message is published (e.g. to count what each queue should receive). */
  onPublish?: (index: number) => void;
}

export interface ConfirmPublishResult {
  published: number;
  confirmed: number;
  nacked: number;
  /** Messages the broker returned as unroutable (mandatory publishes), from the channel's 'return'. */
  returned: number;
  /** First publish → last confirm. */
  seconds: number;
}

export async function confirmPublish(
  channel: ConfirmChannel,
  options: ConfirmPublishOptions,
): Promise<ConfirmPublishResult> {
  const window = options.window ?? 1000;
  const deadline = options.deadline ?? Number.POSITIVE_INFINITY;
  const rate = options.rate;
  const sender = options.send === 'prebuilt' ? lowLevel(channel) : undefined;
  let published = 0;
  let confirmed = 0;
  let nacked = 0;
  let returned = 0;
  const onReturn = () => returned++;
  channel.on('return', onReturn);
  const started = performance.now();
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
      const finish = () => {
        if (inflight !== 0 || !(exhausted || performance.now() >= deadline || interruptSignal.aborted))
          return;
        interruptSignal.removeEventListener('abort', onAbort);
        channel.off('close', onClose);
        clearTimeout(timer);
        resolve();
      };
      const due = () =>
        rate === undefined
          ? Number.POSITIVE_INFINITY
          : Math.floor(((performance.now() - started) * rate) / 1000) + 1;
      const pump = () => {
        const upTo = due();
        while (
          inflight < window &&
          !waitingForDrain &&
          !exhausted &&
          published < upTo &&
          performance.now() < deadline
        ) {
          const index = published;
          const message = options.message(index);
          if (message === undefined) {
            exhausted = true;
            break;
          }
          published++;
          inflight++;
          options.onPublish?.(index);
          const onConfirm = (error: unknown) => {
            inflight--;
            if (error !== null && error !== undefined) nacked++;
            else confirmed++;
            pump();
            finish();
          };
          let writable: boolean;
          if (sender === undefined) {
            writable = channel.publish(
              message.exchange,
              message.routingKey,
              message.body,
              message.options,
              onConfirm,
            );
          } else {
            if (message.fields === undefined)
              throw new Error("send 'prebuilt' needs the publisher's messages");
            writable = sendConfirmed(sender, message as Pick<OutboundMessage, 'fields' | 'body'>, onConfirm);
          }
          if (!writable) {
            waitingForDrain = true;
            channel.once('drain', () => {
              waitingForDrain = false;
              pump();
            });
          }
        }
        if (rate !== undefined && timer === undefined && !exhausted && performance.now() < deadline) {
          timer = setTimeout(() => {
            timer = undefined;
            pump();
          }, 1);
        }
        finish();
      };
      pump();
    });
  } finally {
    channel.off('return', onReturn);
  }
  return {
    published,
    confirmed,
    nacked,
    returned,
    seconds: Math.round(performance.now() - started) / 1000,
  };
}
