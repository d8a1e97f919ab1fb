/**
 * The raw broker ceiling: what RabbitMQ alone carries for a message mix through the real topology, so an
 * end-to-end figure can be stated as a share of it. A plain amqplib ConfirmChannel publishes the mix's
 * messages (the very exchange, routing key, body, properties and headers the service's publisher sends:
 * `toOutboundMessage()` of spool records, persistent, into the same quorum queues) keeping `window`
 * unconfirmed at most, for `durationS` seconds; meanwhile a plain consumer per queue (prefetch as the
 * service's consumers, acknowledging every 100 messages with `multiple`, or after 2 ms without a new
 * one, as the consumer runtime acknowledges a batch) receives them and does nothing else.
 *
 * The rate is messages published ÷ the time from the first publish to the moment every queue has
 * received and acknowledged all the messages routed to it: one message = one event, whatever the
 * fan-out, as the end-to-end figure counts events.
 */
import type { Channel, ChannelModel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { connectToBroker } from '../../src/bus/broker-connection.ts';
import type { OutboundMessage } from '../../src/bus/outbound-message.ts';
import { buildTopology, queuesFor } from '../../src/bus/topology.ts';
import { confirmPublish } from './confirm-publish.ts';
import { CpuMeter, type CpuPerEvent } from './cpu-per-event.ts';

export interface RawCeilingOptions {
  /** A vhost of the benchmark's own. */
  url: string;
  /** The messages, published in order and cycled. */
  messages: readonly OutboundMessage[];
  /** Queues consumed (those the system under test has consumers for); the others only fill. */
  queues: readonly string[];
  /** Seconds of publishing. */
  durationS: number;
  /** Unconfirmed messages at most. @default 1000 (PUBLISH_WINDOW's default) */
  window?: number;
  /** Unacknowledged deliveries per consumer. @default 500 (CONSUMER_PREFETCH's default) */
  prefetch?: number;
  /** Seconds allowed for the consumers to catch up after publishing. @default 120 */
  drainTimeoutS?: number;
  /** pids whose CPU is measured (e.g. `{ rabbitmq }`). */
  pids?: Record<string, number | undefined>;
  /** Called about every second with messages published and the least received by a queue. */
  onProgress?: (published: number, leastReceived: number) => void;
}

export interface RawCeilingResult {
  published: number;
  confirmed: number;
  nacked: number;
  returned: number;
  publishSeconds: number;
  /** First publish → the last queue received and acknowledged everything routed to it. */
  seconds: number;
  messagesPerSec: number;
  /** Messages each consumed queue received (= routed to it). */
  received: Record<string, number>;
  window: number;
  prefetch: number;
  /** This process (the publisher and the bare consumers: `load generator`) and `pids`, per message. */
  cpu: CpuPerEvent;
}

export async function rawCeiling(options: RawCeilingOptions): Promise<RawCeilingResult> {
  const window = options.window ?? 1000;
  const prefetch = options.prefetch ?? 500;
  const drainTimeoutMs = (options.drainTimeoutS ?? 120) * 1000;
  const topology = buildTopology();
  const routes = options.messages.map((message) =>
    queuesFor(topology, message.exchange, message.routingKey).filter((queue) =>
      options.queues.includes(queue),
    ),
  );
  const connections: ChannelModel[] = [];
  try {
    const publishing = await connectToBroker(options.url, { name: 'telemetry-bus bench raw publisher' });
    connections.push(publishing);
    await applyTopology(publishing, topology);
    const consuming = await connectToBroker(options.url, { name: 'telemetry-bus bench raw consumer' });
    connections.push(consuming);
    for (const connection of connections) connection.on('error', () => {});

    const expected: Record<string, number> = Object.fromEntries(options.queues.map((queue) => [queue, 0]));
    const received: Record<string, number> = Object.fromEntries(options.queues.map((queue) => [queue, 0]));
    let publishingDone = false;
    let lastAckAt = 0;
    let settle: (() => void) | undefined;
    const allReceived = () =>
      publishingDone && options.queues.every((queue) => received[queue] === expected[queue]);
    const consumerChannels: Channel[] = [];
    for (const queue of options.queues) {
      const channel = await consuming.createChannel();
      consumerChannels.push(channel);
      await channel.prefetch(prefetch);
      let unacked: ConsumeMessage | undefined;
      let count = 0;
      let timer: NodeJS.Timeout | undefined;
      const flush = () => {
        if (timer !== undefined) clearTimeout(timer);
        timer = undefined;
        if (unacked === undefined) return;
        channel.ack(unacked, true);
        unacked = undefined;
        count = 0;
        lastAckAt = performance.now();
        if (allReceived()) settle?.();
      };
      await channel.consume(queue, (message) => {
        if (message === null) return;
        received[queue] = (received[queue] ?? 0) + 1;
        unacked = message;
        if (++count >= 100) flush();
        else timer ??= setTimeout(flush, 2);
      });
    }

    const channel: ConfirmChannel = await publishing.createConfirmChannel();
    const pids = options.pids ?? {};
    const meter = new CpuMeter({ processes: pids });
    meter.start();
    const started = performance.now();
    let published = 0;
    const progressTimer = setInterval(
      () => options.onProgress?.(published, Math.min(...options.queues.map((queue) => received[queue] ?? 0))),
      1000,
    );
    try {
      const outcome = await confirmPublish(channel, {
        message: (index) => options.messages[index % options.messages.length],
        window,
        deadline: started + options.durationS * 1000,
        onPublish: (index) => {
          published++;
          for (const queue of routes[index % options.messages.length] as string[]) {
            expected[queue] = (expected[queue] ?? 0) + 1;
          }
        },
      });
      const { confirmed, nacked, returned } = outcome;
      const publishSeconds = (performance.now() - started) / 1000;
      publishingDone = true;
      await new Promise<void>((resolve, reject) => {
        if (allReceived()) return resolve();
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `raw consumers did not receive everything within ${drainTimeoutMs / 1000} s: ${JSON.stringify({ expected, received })}`,
              ),
            ),
          drainTimeoutMs,
        );
        settle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      const seconds = (lastAckAt - started) / 1000;
      const cpu = meter.stop(published);
      return {
        published,
        confirmed,
        nacked,
        returned,
        publishSeconds: Math.round(publishSeconds * 1000) / 1000,
        seconds: Math.round(seconds * 1000) / 1000,
        messagesPerSec: Math.round(published / seconds),
        received,
        window,
        prefetch,
        cpu,
      };
    } finally {
      clearInterval(progressTimer);
      await channel.close().catch(() => {});
      for (const consumer of consumerChannels) await consumer.close().catch(() => {});
    }
  } finally {
    for (const connection of connections) await connection.close().catch(() => {});
  }
}
