/**
 * Which AMQP client for the connection layer (issue 16): amqplib against rabbitmq-client, driven the way
 * the publisher drives a confirm channel. Method: bench/README.md ("bench:amqp-clients"); rabbitmq-client is
 * not a dependency: `npm install --no-save rabbitmq-client@5` first.
 */
import type { ConfirmChannel } from 'amqplib';
import { closeConnection, connectToBroker } from '../src/bus/broker-connection.ts';
import { type OutboundMessage, toOutboundMessage } from '../src/bus/outbound-message.ts';
import { Environments } from './support/broker.ts';
import { confirmPublish, type PublishedMessage } from './support/confirm-publish.ts';
import { buildEmitCalls, DEFAULT_MIX, mixSequence, recordBytes, recordOf } from './support/events.ts';
import { commandLine, flag, integer } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
} from './support/report.ts';
import { handleSignals, runMain } from './support/settings.ts';
import { median } from './support/stats.ts';

const cli = commandLine({
  script: 'bench:amqp-clients',
  summary:
    'amqplib against rabbitmq-client: the same confirm-window publishing, rounds alternating.\nrabbitmq-client is not a dependency: `npm install --no-save rabbitmq-client@5` first.',
  options: {
    messages: flag('messages', '20000', integer(1), 'messages per round and client'),
    window: flag('window', '1000', integer(1), 'unconfirmed messages in flight, at most'),
    rounds: flag('rounds', '3', integer(1), 'rounds, each client once per round'),
  },
});
let [MESSAGES, WINDOW, ROUNDS] = [0, 0, 0];
const QUEUE = 'bench.clients';

interface Client {
  name: string;
  /** Publishes MESSAGES with at most WINDOW unconfirmed; resolves once all are confirmed. */
  publish(url: string, messages: readonly OutboundMessage[]): Promise<void>;
}

/**
 * The bus's messages (properties and CloudEvents headers) sent to the bench queue, in each client's form,
 * built before the clock starts: what is timed is each client's encoding and sending.
 */
function toQueue(messages: readonly OutboundMessage[]): PublishedMessage[] {
  return messages.map((message) => ({
    exchange: '',
    routingKey: QUEUE,
    body: message.body,
    options: message.options,
    fields: { ...message.fields, exchange: '', routingKey: QUEUE },
  }));
}

function amqplibClient(send: 'publish' | 'prebuilt'): Client {
  return {
    name:
      send === 'publish'
        ? 'amqplib 2, publish() with options'
        : "amqplib 2, lower level with pre-built fields (the publisher's way)",
    async publish(url, messages) {
      const prepared = toQueue(messages);
      const connection = await connectToBroker(url, { name: 'bench amqplib' });
      try {
        const channel: ConfirmChannel = await connection.createConfirmChannel();
        await channel.assertQueue(QUEUE, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        const result = await confirmPublish(channel, {
          window: WINDOW,
          send,
          message: (index) => (index < MESSAGES ? prepared[index % prepared.length] : undefined),
        });
        if (result.nacked > 0) throw new Error(`${result.nacked} messages nacked`);
      } finally {
        await closeConnection(connection);
      }
    },
  };
}

/** A window of unconfirmed sends: waits while it is full, resolves once everything sent is confirmed. */
async function windowed(count: number, send: (index: number, done: (error?: unknown) => void) => void) {
  let inFlight = 0;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const done = (error?: unknown) => {
    if (error !== undefined && error !== null) failure ??= error;
    inFlight--;
    wake?.();
  };
  for (let index = 0; index < count; index++) {
    while (inFlight >= WINDOW) await new Promise<void>((resolve) => (wake = resolve));
    if (failure !== undefined) throw failure;
    inFlight++;
    send(index, done);
  }
  while (inFlight > 0) await new Promise<void>((resolve) => (wake = resolve));
  if (failure !== undefined) throw failure;
}

/** The package's name in a variable: tsc does not resolve it, so the repository type-checks without it. */
const RABBITMQ_CLIENT = 'rabbitmq-client';

/** The part of rabbitmq-client 5 measured here. */
interface RabbitmqClientModule {
  Connection: new (options: {
    url: string;
    connectionName: string;
  }) => {
    acquire(): Promise<{
      queueDeclare(options: {
        queue: string;
        durable: boolean;
        arguments: Record<string, unknown>;
      }): Promise<unknown>;
      confirmSelect(): Promise<void>;
      basicPublish(envelope: Record<string, unknown>, body: Buffer): Promise<void>;
      close(): Promise<void>;
    }>;
    close(): Promise<void>;
  };
}

const rabbitmqClient: Client = {
  name: 'rabbitmq-client 5 (acquired channel, confirmSelect)',
  async publish(url, messages) {
    const envelopes = messages.map(({ fields }) => ({
      routingKey: QUEUE,
      durable: true,
      mandatory: true,
      contentType: fields.contentType,
      headers: fields.headers,
      messageId: fields.messageId,
      correlationId: fields.correlationId,
      type: fields.type,
      timestamp: fields.timestamp,
      appId: fields.appId,
    }));
    const { Connection } = (await import(RABBITMQ_CLIENT)) as RabbitmqClientModule;
    const connection = new Connection({ url, connectionName: 'bench rabbitmq-client' });
    try {
      const channel = await connection.acquire();
      await channel.queueDeclare({ queue: QUEUE, durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await channel.confirmSelect();
      await windowed(MESSAGES, (index, done) => {
        channel
          .basicPublish(
            envelopes[index % envelopes.length] as Record<string, unknown>,
            (messages[index % messages.length] as OutboundMessage).body,
          )
          .then(() => done(), done);
      });
      await channel.close();
    } finally {
      await connection.close();
    }
  },
};

interface Measure {
  client: string;
  round: number;
  perSecond: number;
  cpuMicrosPerMessage: number;
}

async function main(): Promise<number> {
  const settings = cli.read();
  [MESSAGES, WINDOW, ROUNDS] = [settings.messages, settings.window, settings.rounds];
  handleSignals();
  const startedAt = new Date();
  const environments = new Environments();
  const { env } = await environments.create();
  try {
    const messages = buildEmitCalls(200, mixSequence(DEFAULT_MIX)).map((call) =>
      toOutboundMessage(recordBytes(recordOf(call))),
    );
    const clients = [amqplibClient('publish'), amqplibClient('prebuilt'), rabbitmqClient];
    const measures: Measure[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternating, and the other order every second round: neither client always runs on a warmer broker.
      for (const client of round % 2 === 1 ? clients : [...clients].reverse()) {
        const cpu = process.cpuUsage();
        const started = performance.now();
        await client.publish(env.RABBITMQ_URL, messages);
        const perSecond = MESSAGES / ((performance.now() - started) / 1000);
        const used = process.cpuUsage(cpu);
        measures.push({
          client: client.name,
          round,
          perSecond,
          cpuMicrosPerMessage: (used.user + used.system) / MESSAGES,
        });
        progress(`round ${round}: ${client.name} ${formatNumber(perSecond)} msg/s`);
      }
    }
    const rows = clients.map((client) => {
      const mine = measures.filter((measure) => measure.client === client.name);
      return [
        client.name,
        formatNumber(median(mine.map((measure) => measure.perSecond))),
        mine.map((measure) => formatNumber(measure.perSecond)).join(', '),
        median(mine.map((measure) => measure.cpuMicrosPerMessage)).toFixed(1),
      ];
    });
    await publishResults({
      name: 'amqp-clients',
      title: 'AMQP clients',
      startedAt,
      sections: [
        {
          title: `${MESSAGES} messages per round, window ${WINDOW}, ${ROUNDS} rounds alternating, one quorum queue`,
          columns: ['client', 'msg/s (median)', 'msg/s per round', 'client CPU µs/msg (median)'],
          rows,
        },
      ],
      verdicts: [],
      notes: { settings: [...cli.settingsBlock(settings), environmentText(environment())], checks: [] },
      command: invocation('bench:amqp-clients'),
      report: { benchmark: 'amqp-clients', settings, environment: environment(), measures },
    });
    return 0;
  } finally {
    await environments.removeAll();
  }
}

runMain('amqp-clients', cli.help(), main);
