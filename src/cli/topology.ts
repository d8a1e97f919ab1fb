/** `telemetry-bus topology show|apply`: print the topology the bus declares, or declare it now. */
import { applyTopology } from '../bus/apply-topology.ts';
import { closeConnection, connectToBroker } from '../bus/broker-connection.ts';
import type { Topology } from '../bus/topology.ts';
import { topologyFromConfig } from '../bus/topology-from-config.ts';
import { type Config, redactUrl } from '../config.ts';
import { CliError } from './cli-error.ts';

function topologyOf(config: Config): Topology {
  return topologyFromConfig(config);
}

function describeArguments(args: Record<string, string | number | boolean>): string {
  return Object.entries(args)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
}

/** A readable listing, or the topology as JSON with `--json`. */
export function renderTopology(topology: Topology, json: boolean): string {
  if (json) return `${JSON.stringify(topology, null, 2)}\n`;
  const lines = ['Exchanges'];
  for (const exchange of topology.exchanges) {
    lines.push(`  ${exchange.name.padEnd(18)} ${exchange.type.padEnd(7)} ${exchange.description}`);
    if (exchange.arguments !== undefined) {
      lines.push(`  ${''.padEnd(18)} ${''.padEnd(7)} ${describeArguments(exchange.arguments)}`);
    }
  }
  lines.push('', 'Queues (durable)');
  for (const queue of topology.queues) {
    lines.push(
      `  ${queue.name.padEnd(18)} ${queue.description}`,
      `  ${''.padEnd(18)} ${describeArguments(queue.arguments)}`,
    );
  }
  lines.push('', 'Bindings');
  for (const binding of topology.bindings) {
    lines.push(
      `  ${binding.exchange.padEnd(18)} → ${binding.queue.padEnd(18)} ${binding.pattern === '' ? '(all)' : binding.pattern}`,
    );
  }
  for (const binding of topology.exchangeBindings) {
    lines.push(
      `  ${binding.source.padEnd(18)} → ${`${binding.destination} (exchange)`.padEnd(18)} ${binding.pattern === '' ? '(all)' : binding.pattern}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export function showTopology(config: Config, options: { json?: boolean }): void {
  process.stdout.write(renderTopology(topologyOf(config), options.json === true));
}

export async function applyTopologyNow(config: Config): Promise<void> {
  let connection: Awaited<ReturnType<typeof connectToBroker>>;
  try {
    connection = await connectToBroker(config.rabbitmqUrl, {
      name: 'telemetry-bus topology',
      heartbeatSeconds: config.rabbitmqHeartbeatSeconds,
    });
  } catch (error) {
    throw new CliError(
      `cannot reach RabbitMQ at ${redactUrl(config.rabbitmqUrl)}: ${(error as Error).message}`,
      {
        exitCode: 1,
      },
    );
  }
  connection.on('error', () => {});
  try {
    const topology = topologyOf(config);
    await applyTopology(connection, topology);
    process.stderr.write(
      `declared ${topology.exchanges.length} exchanges, ${topology.queues.length} queues and ${topology.bindings.length + topology.exchangeBindings.length} bindings on ${redactUrl(config.rabbitmqUrl)}\n`,
    );
  } finally {
    await closeConnection(connection);
  }
}
