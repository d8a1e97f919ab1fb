/**
 * Which AMQP client for the connection layer (issue 16): amqplib against rabbitmq-client, driven the way
 * the publisher drives a confirm channel. Method: bench/README.md ("bench:amqp-clients"); rabbitmq-client is
 * not a dependency: without `npm install --no-save rabbitmq-client@5` only amqplib is measured.
 */
import type { OutboundMessage } from '../src/bus/outbound-message.ts';
import { Environments } from './support/broker.ts';
import { confirmPublish, withConfirmChannel } from './support/confirm-publish.ts';
import { buildEmitCalls, DEFAULT_MIX, messageOf, mixSequence } from './support/events.ts';
import { commandLine, flag, integer, type Settings } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  table,
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
const QUEUE = 'bench.clients';
const QUORUM = { durable: true, arguments: { 'x-queue-type': 'quorum' } };

/** A client publishes `messages` (cycled) with at most `window` unconfirmed; resolves once all are confirmed. */
type Client = [name: string, publish: (url: string, messages: readonly OutboundMessage[]) => Promise<void>];

function amqplib(
  send: 'publish' | 'prebuilt',
  { messages: count, window }: Settings<typeof cli.options>,
): Client {
  const name =
    send === 'publish'
      ? 'amqplib 2, publish() with options'
      : "amqplib 2, lower level with pre-built fields (the publisher's way)";
  return [
    name,
    (url, messages) => {
      // The bus's messages sent to the bench queue, built before the clock starts: what is timed is the sending.
      const routed = messages.map((message) => ({
        exchange: '',
        routingKey: QUEUE,
        body: message.body,
        options: message.options,
        fields: { ...message.fields, exchange: '', routingKey: QUEUE },
      }));
      return withConfirmChannel(url, undefined, async (channel) => {
        await channel.assertQueue(QUEUE, QUORUM);
        const message = (index: number) => (index < count ? routed[index % routed.length] : undefined);
        const { nacked } = await confirmPublish(channel, { window, send, message });
        if (nacked > 0) throw new Error(`${nacked} messages nacked`);
      });
    },
  ];
}

/** The part of rabbitmq-client 5 measured here. */
interface RabbitmqClient {
  Connection: new (options: {
    url: string;
    connectionName: string;
  }) => {
    acquire(): Promise<{
      queueDeclare(options: object): Promise<unknown>;
      confirmSelect(): Promise<void>;
      basicPublish(envelope: object, body: Buffer): Promise<void>;
      close(): Promise<void>;
    }>;
    close(): Promise<void>;
  };
}

function rabbitmqClient(
  { Connection }: RabbitmqClient,
  { messages: count, window }: Settings<typeof cli.options>,
): Client {
  return [
    'rabbitmq-client 5 (acquired channel, confirmSelect)',
    async (url, messages) => {
      const envelopes = messages.map(({ fields }) => {
        const { contentType, headers, messageId, correlationId, type, timestamp, appId } = fields;
        return {
          routingKey: QUEUE,
          durable: true,
          mandatory: true,
          contentType,
          headers,
          messageId,
          correlationId,
          type,
          timestamp,
          appId,
        };
      });
      const connection = new Connection({ url, connectionName: 'bench rabbitmq-client' });
      try {
        const channel = await connection.acquire();
        await channel.queueDeclare({ queue: QUEUE, ...QUORUM });
        await channel.confirmSelect();
        // A window of unconfirmed sends: wait while it is full, then until everything sent is confirmed.
        let [inFlight, failure, wake] = [0, undefined as unknown, () => {}];
        const confirmed = (error?: unknown) => {
          failure ??= error;
          inFlight--;
          wake();
        };
        const waitFor = (done: () => boolean) =>
          new Promise<void>((resolve) => (wake = () => done() && resolve()));
        for (let index = 0; index < count; index++) {
          if (inFlight >= window) await waitFor(() => inFlight < window);
          inFlight++;
          const envelope = envelopes[index % envelopes.length] as object;
          channel
            .basicPublish(envelope, (messages[index % messages.length] as OutboundMessage).body)
            .then(() => confirmed(), confirmed);
        }
        if (inFlight > 0) await waitFor(() => inFlight === 0);
        if (failure !== undefined) throw failure;
        await channel.close();
      } finally {
        await connection.close();
      }
    },
  ];
}

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  // The package's name in a variable: tsc does not resolve it, so the repository type-checks without it.
  const rabbitmqClientPackage = 'rabbitmq-client';
  const loaded = (await import(rabbitmqClientPackage).catch(() => undefined)) as RabbitmqClient | undefined;
  if (loaded === undefined) progress('rabbitmq-client is not installed: amqplib alone is measured');
  const clients = [amqplib('publish', settings), amqplib('prebuilt', settings)];
  if (loaded !== undefined) clients.push(rabbitmqClient(loaded, settings));
  const environments = new Environments();
  const { env } = await environments.create();
  try {
    const messages = buildEmitCalls(200, mixSequence(DEFAULT_MIX)).map(messageOf);
    const measures: Array<{ client: string; round: number; perSecond: number; cpuMicrosPerMessage: number }> =
      [];
    for (let round = 1; round <= settings.rounds; round++) {
      // Alternating, and the other order every second round: neither client always runs on a warmer broker.
      for (const [client, publish] of round % 2 === 1 ? clients : [...clients].reverse()) {
        const cpu = process.cpuUsage();
        const started = performance.now();
        await publish(env.RABBITMQ_URL, messages);
        const perSecond = settings.messages / ((performance.now() - started) / 1000);
        const used = process.cpuUsage(cpu);
        measures.push({
          client,
          round,
          perSecond,
          cpuMicrosPerMessage: (used.user + used.system) / settings.messages,
        });
        progress(`round ${round}: ${client} ${formatNumber(perSecond)} msg/s`);
      }
    }
    const of = (client: string) => measures.filter((measure) => measure.client === client);
    const title = `${settings.messages} messages per round, window ${settings.window}, ${settings.rounds} rounds alternating, one quorum queue`;
    await publishResults({
      name: 'amqp-clients',
      title: 'AMQP clients',
      startedAt,
      sections: [
        table(
          title,
          clients.map(([client]) => client),
          {
            client: (client) => client,
            'msg/s (median)': (client) =>
              formatNumber(median(of(client).map((measure) => measure.perSecond))),
            'msg/s per round': (client) =>
              of(client)
                .map((measure) => formatNumber(measure.perSecond))
                .join(', '),
            'client CPU µs/msg (median)': (client) =>
              median(of(client).map((measure) => measure.cpuMicrosPerMessage)).toFixed(1),
          },
        ),
      ],
      notes: {
        settings: [
          ...cli.settingsBlock(settings),
          ...(loaded === undefined
            ? ['rabbitmq-client not measured: `npm install --no-save rabbitmq-client@5` first']
            : []),
          environmentText(environment()),
        ],
        checks: [],
      },
      command: invocation('bench:amqp-clients'),
      report: { settings, environment: environment(), measures },
    });
    return 0;
  } finally {
    await environments.removeAll();
  }
}

runMain('amqp-clients', cli.help(), main);
