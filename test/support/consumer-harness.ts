/**
 * Test support for consumers: a migrated database and a RabbitMQ vhost of their own, the topology (with
 * a retry ladder short enough for tests) declared, a {@link ConsumerRuntime} running the consumers under
 * test, and a publisher that sends events exactly as the API's publisher does (same properties and
 * headers), so a consumer test exercises the real path from exchange to table.
 */
import { randomUUID } from 'node:crypto';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import pg from 'pg';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { eventRecord, toOutboundMessage } from '../../src/bus/outbound-message.ts';
import { buildTopology, type Topology } from '../../src/bus/topology.ts';
import type { Consumer } from '../../src/consumers/consumer.ts';
import { ConsumerRuntime, type ConsumerRuntimeOptions } from '../../src/consumers/consumer-runtime.ts';
import { createBusEnvironment, createTestDatabase, type Teardown } from '../helper.ts';
import { TestProducer } from './test-producer.ts';
import { waitUntil } from './wait-until.ts';

/** A ladder of 0.2 s, 0.4 s, 0.6 s: the real one (1 s, 5 s, 30 s) is tested once, on its own. */
export const TEST_RETRY_DELAYS_MS = [200, 400, 600] as const;

export interface ConsumerHarness {
  pool: pg.Pool;
  databaseUrl: string;
  /** AMQP URL of the harness's vhost. */
  url: string;
  topology: Topology;
  runtime: ConsumerRuntime;
  /** The producer {@link publish} stamps events as: for messages a test builds itself. */
  producer: TestProducer;
  /**
   * Publishes events as the API would (confirmed), stamped as one producer's: an event published again
   * keeps its number, as a resend does.
   */
  publish(events: TelemetryEvent[]): Promise<void>;
  /** Publishes raw bytes to an exchange (for poison messages). */
  publishRaw(
    exchange: string,
    routingKey: string,
    content: Buffer,
    headers?: Record<string, unknown>,
  ): Promise<void>;
  /** Waits until `check` resolves true (polling), or throws after `timeoutMs`. */
  waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs?: number): Promise<void>;
}

export interface HarnessOptions
  extends Partial<Omit<ConsumerRuntimeOptions, 'urls' | 'pool' | 'topology' | 'consumers'>> {
  /** Start the runtime at once. @default true */
  start?: boolean;
}

export async function consumerHarness(
  teardown: Teardown,
  consumers: (pool: pg.Pool) => Consumer[],
  options: HarnessOptions = {},
): Promise<ConsumerHarness> {
  const databaseUrl = await createTestDatabase(teardown);
  const bus = await createBusEnvironment();
  const url = bus.env.RABBITMQ_URL;
  const retryDelaysMs = options.retryDelaysMs ?? TEST_RETRY_DELAYS_MS;
  const topology = buildTopology({ retryDelaysMs });
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 5 });
  pool.on('error', () => {});
  const connection: ChannelModel = await amqp.connect(url);
  connection.on('error', () => {});
  await applyTopology(connection, topology);
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  const runtime = new ConsumerRuntime({
    ...options,
    urls: [url],
    pool,
    topology,
    consumers: consumers(pool),
    retryDelaysMs,
  });
  teardown.after(async () => {
    await runtime.stop(5000);
    await closeConnection(connection);
    await pool.end();
    await bus.remove();
  });
  if (options.start !== false) await runtime.start();

  const confirmAll = () => channel.waitForConfirms();
  const producer = new TestProducer();
  return {
    pool,
    databaseUrl,
    url,
    topology,
    runtime,
    producer,
    async publish(events) {
      for (const event of events) {
        const record = eventRecord(
          event,
          `00-${randomUUID().replaceAll('-', '')}-${randomUUID().replaceAll('-', '').slice(0, 16)}-01`,
          Date.parse(event.timestamp),
          producer.stamp(event),
        );
        const message = toOutboundMessage(Buffer.from(record));
        channel.publish(message.exchange, message.routingKey, message.body, message.options);
      }
      await confirmAll();
    },
    async publishRaw(exchange, routingKey, content, headers = {}) {
      channel.publish(exchange, routingKey, content, {
        persistent: true,
        messageId: randomUUID(),
        headers,
      });
      await confirmAll();
    },
    waitUntil: (what, check, timeoutMs = 20_000) => waitUntil(what, check, timeoutMs, { intervalMs: 50 }),
  };
}
