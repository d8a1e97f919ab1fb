/**
 * RabbitMQ for the bus benchmarks: a vhost of its own per system under test (test/helper.ts
 * `createBusEnvironment()`: a `tb_test_` vhost and a temporary data directory), a wait for a healthy
 * broker before measuring (it is shared: fault tests stop it, or raise a memory alarm, now and then), and
 * queue depths and purges over AMQP, which are exact at once where the management API's counters lag.
 */
import { rmSync } from 'node:fs';
import amqp, { type Channel } from 'amqplib';
import { EXCHANGES, type Topology } from '../../src/bus/topology.ts';
import { type BusEnvironment, createBusEnvironment } from '../../test/helper.ts';
import { TEST_RABBITMQ_MANAGEMENT_URL, TEST_RABBITMQ_URL } from '../../test/support/rabbitmq-vhost.ts';
import { progress } from './report.ts';
import { sleep } from './settings.ts';

export type { BusEnvironment };

type Nodes = Array<{ mem_alarm?: boolean; disk_free_alarm?: boolean; mem_used?: number; mem_limit?: number }>;

async function management<T>(path: string): Promise<T> {
  const base = new URL(TEST_RABBITMQ_MANAGEMENT_URL);
  const credentials = `${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`;
  [base.username, base.password] = ['', ''];
  const response = await fetch(new URL(`api${path}`, base.toString().replace(/\/?$/, '/')), {
    headers: { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` },
    signal: AbortSignal.timeout(5000),
  });
  if (!response.ok) throw new Error(`management API ${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

/** Why the broker cannot take a benchmark now ([] when it can): no connection, or a resource alarm. */
export async function brokerAlarms(): Promise<string[]> {
  try {
    await (await amqp.connect(TEST_RABBITMQ_URL, { timeout: 3000 })).close();
  } catch (error) {
    return [`AMQP: ${error instanceof Error ? error.message : String(error)}`];
  }
  try {
    return (await management<Nodes>('/nodes')).flatMap((node) => [
      ...(node.mem_alarm ? ['memory alarm'] : []),
      ...(node.disk_free_alarm ? ['disk alarm'] : []),
    ]);
  } catch (error) {
    return [`management API: ${error instanceof Error ? error.message : String(error)}`];
  }
}

/** Waits until the broker takes connections and has no alarm, for up to `timeoutMs` (a fault test may have stopped it). */
export async function waitForBroker(timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  let reported = '';
  for (;;) {
    const problem = (await brokerAlarms()).join(', ');
    if (problem === '') break;
    if (Date.now() >= deadline) throw new Error(`RabbitMQ is not usable: ${problem}`);
    if (problem !== reported) progress(`waiting for RabbitMQ (${problem})`);
    reported = problem;
    await sleep(1000);
  }
  const [overview, nodes] = await Promise.all([
    management<{ rabbitmq_version: string; erlang_version: string }>('/overview'),
    management<Nodes>('/nodes'),
  ]);
  const mib = (bytes: number | undefined) => (bytes === undefined ? null : Math.round(bytes / 2 ** 20));
  return {
    version: overview.rabbitmq_version,
    erlang: overview.erlang_version,
    memUsedMiB: mib(nodes[0]?.mem_used),
    memLimitMiB: mib(nodes[0]?.mem_limit),
  };
}

export type BrokerInfo = Awaited<ReturnType<typeof waitForBroker>>;

/** `action` on a channel of its own connection to `url`, both closed after it. */
async function withChannel<T>(url: string, action: (channel: Channel) => Promise<T>): Promise<T> {
  const connection = await amqp.connect(url, { timeout: 5000 });
  connection.on('error', () => {});
  try {
    return await action(await connection.createChannel());
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Message counts of `queues` in the vhost of `url`, over AMQP (exact, unlike the management API's). */
export const queueDepths = (url: string, queues: readonly string[]): Promise<Record<string, number>> =>
  withChannel(url, async (channel) => {
    const depths: Record<string, number> = {};
    for (const queue of queues) depths[queue] = (await channel.checkQueue(queue)).messageCount;
    return depths;
  });

/** Empties `queues` (with no consumers, published messages would otherwise pile up in the broker). */
export const purgeQueues = (url: string, queues: readonly string[]): Promise<number> =>
  withChannel(url, async (channel) => {
    let purged = 0;
    for (const queue of queues) purged += (await channel.purgeQueue(queue)).messageCount;
    return purged;
  });

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
      await this.remove(environment).catch((error: unknown) => {
        rmSync(environment.env.DATA_DIR, { recursive: true, force: true });
        progress(
          `could not remove vhost ${environment.vhost.vhost} or ${environment.env.DATA_DIR}: ${String(error)}`,
        );
      });
    }
  }
}

const EVENT_EXCHANGES = new Set<string>([EXCHANGES.models, EXCHANGES.metrics, EXCHANGES.errors]);

/** The topology with only `queue` bound to the event exchanges: every event goes there and nowhere else. */
export const onlyQueueFed = (topology: Topology, queue: string): Topology => ({
  ...topology,
  bindings: topology.bindings.filter(
    (binding) => !EVENT_EXCHANGES.has(binding.exchange) || binding.queue === queue,
  ),
});
