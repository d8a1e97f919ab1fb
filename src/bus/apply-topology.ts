/**
 * Declares the topology on a broker, idempotently: exchanges, queues (with their arguments) and bindings.
 * A queue that already exists with other arguments is an operator's problem to see, not to paper over:
 * the error names the queue and what differs.
 */
import type { Channel, ChannelModel } from 'amqplib';
import { AppError } from '../errors.ts';
import type { Topology } from './topology.ts';

export class TopologyMismatchError extends AppError {
  constructor(what: string, cause: unknown) {
    super('INTERNAL_ERROR', `RabbitMQ already has ${what} declared differently: ${String(cause)}`, { cause });
  }
}

/** A partitioned topology's consistent-hash exchange, on a broker without its plugin. */
export class MissingPluginError extends AppError {
  constructor(what: string, cause: unknown) {
    super(
      'INTERNAL_ERROR',
      `RabbitMQ cannot declare ${what}: enable its plugin (rabbitmq-plugins enable rabbitmq_consistent_hash_exchange), or set the partitions to 1: ${String(cause)}`,
      { cause },
    );
  }
}

export async function applyTopology(connection: ChannelModel, topology: Topology): Promise<void> {
  const channel: Channel = await connection.createChannel();
  // A failed declare closes the channel; keep the error of the declare, not the "channel closed" after it.
  channel.on('error', () => {});
  try {
    for (const exchange of topology.exchanges) {
      await declare(`exchange ${exchange.name}`, () =>
        channel.assertExchange(exchange.name, exchange.type, {
          durable: true,
          autoDelete: false,
          ...(exchange.arguments === undefined ? {} : { arguments: exchange.arguments }),
        }),
      );
    }
    for (const queue of topology.queues) {
      await declare(`queue ${queue.name}`, () =>
        channel.assertQueue(queue.name, { durable: true, arguments: queue.arguments }),
      );
    }
    for (const binding of topology.bindings) {
      await channel.bindQueue(binding.queue, binding.exchange, binding.pattern);
    }
    for (const binding of topology.exchangeBindings) {
      await channel.bindExchange(binding.destination, binding.source, binding.pattern);
    }
  } finally {
    await channel.close().catch(() => {});
  }

  async function declare(what: string, run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (error) {
      const code = (error as { code?: number }).code;
      if (code === 406) throw new TopologyMismatchError(what, error);
      // 503 COMMAND_INVALID "invalid exchange type": the type's plugin is not enabled.
      if (code === 503 && /exchange type/i.test(String(error))) throw new MissingPluginError(what, error);
      throw error;
    }
  }
}
