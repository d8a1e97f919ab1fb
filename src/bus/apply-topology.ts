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

export async function applyTopology(connection: ChannelModel, topology: Topology): Promise<void> {
  const channel: Channel = await connection.createChannel();
  // A failed declare closes the channel; keep the error of the declare, not the "channel closed" after it.
  channel.on('error', () => {});
  try {
    for (const exchange of topology.exchanges) {
      await declare(`exchange ${exchange.name}`, () =>
        channel.assertExchange(exchange.name, exchange.type, { durable: true, autoDelete: false }),
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
  } finally {
    await channel.close().catch(() => {});
  }

  async function declare(what: string, run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (error) {
      const code = (error as { code?: number }).code;
      if (code === 406) throw new TopologyMismatchError(what, error);
      throw error;
    }
  }
}
