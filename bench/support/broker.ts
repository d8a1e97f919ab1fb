/**
 * RabbitMQ for the bus benchmarks: a vhost of its own per system under test (test/helper.ts
 * `createBusEnvironment()`: a `tb_test_` vhost and a temporary data directory, both removed by `remove()`),
 * a wait for a healthy broker before measuring (the broker is shared: fault tests stop it, or raise a memory
 * alarm, now and then), and queue depths and purges over AMQP, which are exact at once where the management
 * API's counters lag by its statistics interval.
 */
import { rmSync } from 'node:fs';
import amqp, { type ChannelModel } from 'amqplib';
import { EXCHANGES, type Topology } from '../../src/bus/topology.ts';
import { type BusEnvironment, createBusEnvironment } from '../../test/helper.ts';
import { TEST_RABBITMQ_MANAGEMENT_URL, TEST_RABBITMQ_URL } from '../../test/support/rabbitmq-vhost.ts';
import { progress } from './report.ts';
import { sleep } from './settings.ts';

export { type BusEnvironment, createBusEnvironment, TEST_RABBITMQ_MANAGEMENT_URL, TEST_RABBITMQ_URL };

interface NodeInfo {
  mem_alarm?: boolean;
  disk_free_alarm?: boolean;
  mem_used?: number;
  mem_limit?: number;
}

export interface BrokerInfo {
  version: string;
  erlang: string;
  memUsedMiB: number | null;
  memLimitMiB: number | null;
}

async function management<T>(path: string): Promise<T> {
  const base = new URL(TEST_RABBITMQ_MANAGEMENT_URL);
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
  base.username = '';
  base.password = '';
  const response = await fetch(new URL(`api${path}`, base.toString().replace(/\/?$/, '/')), {
    headers: { authorization },
    signal: AbortSignal.timeout(5000),
  });
  if (!response.ok) throw new Error(`management API ${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

/** Why the broker cannot take a benchmark now, or undefined when it can. */
async function brokerProblem(): Promise<string | undefined> {
  try {
    const connection = await amqp.connect(TEST_RABBITMQ_URL, { timeout: 3000 });
    await connection.close();
  } catch (error) {
    return `AMQP: ${error instanceof Error ? error.message : String(error)}`;
  }
  try {
    const nodes = await management<NodeInfo[]>('/nodes');
    const alarms = nodes.flatMap((node) => [
      ...(node.mem_alarm ? ['memory alarm'] : []),
      ...(node.disk_free_alarm ? ['disk alarm'] : []),
    ]);
    return alarms.length > 0 ? alarms.join(', ') : undefined;
  } catch (error) {
    return `management API: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/**
 * Waits until the broker takes connections and has no resource alarm, for up to `timeoutMs`: it is shared,
 * and a fault test may have stopped it for a few seconds.
 */
export async function waitForBroker(timeoutMs = 90_000): Promise<BrokerInfo> {
  const deadline = Date.now() + timeoutMs;
  let reported: string | undefined;
  for (;;) {
    const problem = await brokerProblem();
    if (problem === undefined) break;
    if (Date.now() >= deadline) throw new Error(`RabbitMQ is not usable: ${problem}`);
    if (problem !== reported) progress(`waiting for RabbitMQ (${problem})`);
    reported = problem;
    await sleep(1000);
  }
  const [overview, nodes] = await Promise.all([
    management<{ rabbitmq_version: string; erlang_version: string }>('/overview'),
    management<NodeInfo[]>('/nodes'),
  ]);
  const node = nodes[0];
  const mib = (bytes: number | undefined) => (bytes === undefined ? null : Math.round(bytes / 2 ** 20));
  return {
    version: overview.rabbitmq_version,
    erlang: overview.erlang_version,
    memUsedMiB: mib(node?.mem_used),
    memLimitMiB: mib(node?.mem_limit),
  };
}

/** The broker's alarms right now ([] when none), for a check after a run. */
export async function brokerAlarms(): Promise<string[]> {
  const problem = await brokerProblem();
  return problem === undefined ? [] : [problem];
}

/** Message counts of `queues` in the vhost of `url`, over AMQP (exact, unlike the management API's). */
export async function queueDepths(url: string, queues: readonly string[]): Promise<Record<string, number>> {
  return withConnection(url, async (connection) => {
    const depths: Record<string, number> = {};
    for (const queue of queues) {
      const channel = await connection.createChannel();
      try {
        depths[queue] = (await channel.checkQueue(queue)).messageCount;
      } finally {
        await channel.close().catch(() => {});
      }
    }
    return depths;
  });
}

/** Empties `queues` (there are no consumers: published messages would otherwise pile up in the broker). */
export async function purgeQueues(url: string, queues: readonly string[]): Promise<number> {
  return withConnection(url, async (connection) => {
    const channel = await connection.createChannel();
    let purged = 0;
    try {
      for (const queue of queues) purged += (await channel.purgeQueue(queue)).messageCount;
    } finally {
      await channel.close().catch(() => {});
    }
    return purged;
  });
}

async function withConnection<T>(url: string, action: (connection: ChannelModel) => Promise<T>): Promise<T> {
  const connection = await amqp.connect(url, { timeout: 5000 });
  connection.on('error', () => {});
  try {
    return await action(connection);
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Bus environments to remove at the end, whatever happened. */
export class Environments {
  readonly #all = new Set<BusEnvironment>();

  async create(): Promise<BusEnvironment> {
    const environment = await createBusEnvironment();
    this.#all.add(environment);
    return environment;
  }

  async remove(environment: BusEnvironment): Promise<void> {
    this.#all.delete(environment);
    await environment.remove();
  }

  /** Removes every environment still there; reports (never throws) what could not be removed. */
  async removeAll(): Promise<void> {
    for (const environment of [...this.#all]) {
      try {
        await this.remove(environment);
      } catch (error) {
        rmSync(environment.env.DATA_DIR, { recursive: true, force: true });
        process.stderr.write(
          `[bench] could not remove vhost ${environment.vhost.vhost} or ${environment.env.DATA_DIR}: ${String(error)}\n`,
        );
      }
    }
  }
}

const EVENT_EXCHANGES = new Set<string>([EXCHANGES.models, EXCHANGES.metrics, EXCHANGES.errors]);

/**
 * The topology with only `queue` bound to the event exchanges: every event goes there and nowhere else
 * (bench:consumers fills one queue so; bench:publisher's --raw-also measures the broker without the fan-out).
 */
export function onlyQueueFed(topology: Topology, queue: string): Topology {
  return {
    ...topology,
    bindings: topology.bindings.filter(
      (binding) => !EVENT_EXCHANGES.has(binding.exchange) || binding.queue === queue,
    ),
  };
}
