/**
 * The raw broker ceiling: what RabbitMQ alone carries for a message mix through the real topology, so an
 * end-to-end figure can be stated as a share of it. The confirm loop (confirm-publish.ts) publishes the
 * mix's messages as the service's publisher sends them for `durationS` seconds; meanwhile a plain consumer
 * per queue (prefetch as the service's consumers, acknowledging every 100 messages with `multiple`, or
 * after 2 ms without a new one, as the consumer runtime acknowledges a batch) receives them and does
 * nothing else. The rate is messages published ÷ the time from the first publish to the moment every
 * queue has received and acknowledged all that was routed to it: one message = one event, whatever the
 * fan-out, as the end-to-end figure counts events.
 */
import { connectToBroker } from '../../src/bus/broker-connection.ts';
import type { OutboundMessage } from '../../src/bus/outbound-message.ts';
import { buildTopology, queuesFor } from '../../src/bus/topology.ts';
import { confirmPublish, withConfirmChannel } from './confirm-publish.ts';
import { CpuMeter } from './cpu-per-event.ts';
import { round } from './report.ts';
import { bounded } from './settings.ts';

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

export type RawCeilingResult = Awaited<ReturnType<typeof rawCeiling>>;

export async function rawCeiling(options: RawCeilingOptions) {
  const { url, messages, queues, window = 1000, prefetch = 500 } = options;
  const topology = buildTopology();
  const routes = messages.map((message) =>
    queuesFor(topology, message.exchange, message.routingKey).filter((queue) => queues.includes(queue)),
  );
  const expected: Record<string, number> = Object.fromEntries(queues.map((queue) => [queue, 0]));
  const received: Record<string, number> = Object.fromEntries(queues.map((queue) => [queue, 0]));
  let publishingDone = false;
  let lastAckAt = 0;
  let settle: () => void = () => {};
  const allReceived = new Promise<void>((resolve) => (settle = resolve));
  const consuming = await connectToBroker(url, { name: 'telemetry-bus bench raw consumer' });
  consuming.on('error', () => {});
  try {
    return await withConfirmChannel(url, topology, async (channel) => {
      for (const queue of queues) {
        const consumer = await consuming.createChannel();
        await consumer.prefetch(prefetch);
        let count = 0;
        let timer: NodeJS.Timeout | undefined;
        let last: Parameters<typeof consumer.ack>[0] | undefined;
        const ack = () => {
          clearTimeout(timer);
          timer = undefined;
          if (last !== undefined) consumer.ack(last, true);
          [last, count, lastAckAt] = [undefined, 0, performance.now()];
          if (publishingDone && queues.every((name) => received[name] === expected[name])) settle();
        };
        await consumer.consume(queue, (message) => {
          if (message === null) return;
          received[queue] = (received[queue] ?? 0) + 1;
          last = message;
          if (++count >= 100) ack();
          else timer ??= setTimeout(ack, 2);
        });
      }
      const meter = new CpuMeter({ processes: options.pids ?? {} });
      meter.start();
      const started = performance.now();
      let published = 0;
      const least = () => Math.min(...queues.map((queue) => received[queue] ?? 0));
      const progressTimer = setInterval(() => options.onProgress?.(published, least()), 1000);
      try {
        const { confirmed, nacked, returned } = await confirmPublish(channel, {
          message: (index) => messages[index % messages.length],
          window,
          deadline: started + options.durationS * 1000,
          onPublish: (index) => {
            published++;
            for (const queue of routes[index % messages.length] as string[]) {
              expected[queue] = (expected[queue] ?? 0) + 1;
            }
          },
        });
        const publishSeconds = (performance.now() - started) / 1000;
        publishingDone = true;
        if (queues.every((name) => received[name] === expected[name])) settle();
        await bounded(
          allReceived,
          options.drainTimeoutS ?? 120,
          'the raw consumers to receive everything',
        ).catch((error: unknown) => {
          throw new Error(`${String(error)}: ${JSON.stringify({ expected, received })}`);
        });
        const seconds = (lastAckAt - started) / 1000;
        return {
          published,
          confirmed,
          nacked,
          returned,
          publishSeconds: round(publishSeconds, 3),
          // First publish → the last queue received and acknowledged everything routed to it.
          seconds: round(seconds, 3),
          messagesPerSec: Math.round(published / seconds),
          // What each consumed queue received (= what was routed to it).
          received,
          window,
          prefetch,
          // This process (publisher and bare consumers: `load generator`) and `pids`, per message.
          cpu: meter.stop(published),
        };
      } finally {
        clearInterval(progressTimer);
      }
    });
  } finally {
    await consuming.close().catch(() => {});
  }
}
