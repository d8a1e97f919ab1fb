/**
 * Declares the topology on a broker, idempotently: exchanges, queues (with their arguments) and bindings.
 * A queue that already exists with other arguments is an operator's problem to see, not to paper over:
 * the error names the queue and what differs — except for placement arguments (where a new queue goes
 * in a cluster), which RabbitMQ also compares but which only mattered when the queue was created: a
 * queue created before them, or by a process configured otherwise, keeps its placement, and applying
 * the topology still succeeds (the result lists those queues).
 */
import type { Channel, ChannelModel } from 'amqplib';
import { AppError } from '../errors.ts';
import type { QueueSpec, Topology } from './topology.ts';

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

export interface AppliedTopology {
  /** Queues that existed with another placement than the topology's, and keep it. */
  placementKept: string[];
}

export async function applyTopology(connection: ChannelModel, topology: Topology): Promise<AppliedTopology> {
  // A failed declare closes the channel: the next declare opens another.
  let open: Channel | undefined;
  const channel = async (): Promise<Channel> => {
    if (open !== undefined) return open;
    const created = await connection.createChannel();
    // Keep the error of the declare, not the "channel closed" after it.
    created.on('error', () => {});
    open = created;
    return created;
  };
  const placementKept: string[] = [];
  try {
    for (const exchange of topology.exchanges) {
      await declare(`exchange ${exchange.name}`, async () =>
        (await channel()).assertExchange(exchange.name, exchange.type, {
          durable: true,
          autoDelete: false,
          ...(exchange.arguments === undefined ? {} : { arguments: exchange.arguments }),
        }),
      );
    }
    for (const queue of topology.queues) {
      if (!(await declareQueue(queue))) placementKept.push(queue.name);
    }
    for (const binding of topology.bindings) {
      await (await channel()).bindQueue(binding.queue, binding.exchange, binding.pattern);
    }
    for (const binding of topology.exchangeBindings) {
      await (await channel()).bindExchange(binding.destination, binding.source, binding.pattern);
    }
  } finally {
    await open?.close().catch(() => {});
  }
  return { placementKept };

  /**
   * Declares with the placement; if only the placement differs from the queue's, without it; if the
   * queue has a placement of its own, passively. False when the queue kept another placement.
   */
  async function declareQueue(queue: QueueSpec): Promise<boolean> {
    const placement = queue.placement ?? {};
    const assert = (args: Record<string, unknown>) => async () =>
      (await channel()).assertQueue(queue.name, { durable: true, arguments: args });
    try {
      await declare(`queue ${queue.name}`, assert({ ...queue.arguments, ...placement }));
      return true;
    } catch (error) {
      if (!differsInPlacement(error)) throw error;
    }
    try {
      await declare(`queue ${queue.name}`, assert(queue.arguments));
    } catch (error) {
      if (!differsInPlacement(error)) throw error;
      // Placed otherwise, by a declare with other placement arguments: only its existence is checked.
      await declare(`queue ${queue.name}`, async () => (await channel()).checkQueue(queue.name));
    }
    return false;
  }

  async function declare(what: string, run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (error) {
      // A refused declare closes its channel.
      open = undefined;
      const code = (error as { code?: number }).code;
      if (code === 406) throw new TopologyMismatchError(what, error);
      // 503 COMMAND_INVALID "invalid exchange type": the type's plugin is not enabled.
      if (code === 503 && /exchange type/i.test(String(error))) throw new MissingPluginError(what, error);
      throw error;
    }
  }
}

/** RabbitMQ's 406 names the first argument that differs: is it a placement argument? */
function differsInPlacement(error: unknown): boolean {
  return (
    error instanceof TopologyMismatchError &&
    /inequivalent arg '(x-quorum-initial-group-size|x-queue-leader-locator)'/.test(String(error.cause))
  );
}
