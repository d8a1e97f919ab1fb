/**
 * `telemetry-bus topology show|apply`: print the topology the bus declares (and, from the management
 * API, where each queue's leader and members are), or declare it now.
 */
import { applyTopology } from '../bus/apply-topology.ts';
import { closeConnection, vhostOf } from '../bus/broker-connection.ts';
import { BrokerSession } from '../bus/broker-session.ts';
import { ManagementApi } from '../bus/management-api.ts';
import type { Topology } from '../bus/topology.ts';
import type { Config } from '../config.ts';
import { redactedMessage } from '../redact-credentials.ts';
import { topologyFromConfig } from '../topology-from-config.ts';
import { CliError } from './cli-error.ts';

/** Where the queues are in the cluster, as the management API says; `error` when it could not be asked. */
export interface Placement {
  /** The management API that answered (`host:port`), or null. */
  source: string | null;
  error: string | null;
  queues: QueuePlacementState[];
}

export interface QueuePlacementState {
  name: string;
  /** The queue is not declared on the broker (yet). */
  declared: boolean;
  leader: string | null;
  members: string[];
  /** Members that are not online (a node down, or partitioned away). */
  offline: string[];
}

function describeArguments(args: Record<string, string | number | boolean>): string {
  return Object.entries(args)
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');
}

/** A readable listing, or the topology (and the placement) as JSON with `--json`. */
export function renderTopology(topology: Topology, json: boolean, placement?: Placement): string {
  if (json)
    return `${JSON.stringify(placement === undefined ? topology : { ...topology, placement }, null, 2)}\n`;
  const lines = ['Exchanges'];
  for (const exchange of topology.exchanges) {
    lines.push(`  ${exchange.name.padEnd(18)} ${exchange.type.padEnd(7)} ${exchange.description}`);
    if (exchange.arguments !== undefined) {
      lines.push(`  ${''.padEnd(18)} ${''.padEnd(7)} ${describeArguments(exchange.arguments)}`);
    }
  }
  lines.push('', 'Queues (durable)');
  if (placement !== undefined) {
    lines.push(
      placement.error === null
        ? `  (leaders and members from the management API at ${placement.source})`
        : `  (leaders and members unknown: ${placement.error})`,
    );
  }
  const indent = `  ${''.padEnd(18)} `;
  for (const queue of topology.queues) {
    lines.push(
      `  ${queue.name.padEnd(18)} ${queue.description}`,
      `${indent}${describeArguments(queue.arguments)}`,
    );
    if (queue.placement !== undefined) {
      lines.push(`${indent}when created: ${describeArguments(queue.placement)}`);
    }
    const state = placement?.queues.find((candidate) => candidate.name === queue.name);
    if (state !== undefined) lines.push(`${indent}${describePlacement(state)}`);
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

function describePlacement(state: QueuePlacementState): string {
  if (!state.declared) return 'not declared on the broker yet';
  const offline = state.offline.length === 0 ? '' : `; offline: ${state.offline.join(', ')}`;
  return `leader ${state.leader ?? 'none'}; members ${state.members.join(', ') || 'unknown'}${offline}`;
}

/** Each queue's leader and members, from the first management API that answers. */
export async function readPlacement(config: Config, topology: Topology): Promise<Placement> {
  const unknown = (error: string): Placement => ({ source: null, error, queues: [] });
  if (config.rabbitmqManagementUrls.length === 0) {
    return unknown('RABBITMQ_MANAGEMENT_URL is off, and only the management API knows them');
  }
  const api = new ManagementApi({ urls: config.rabbitmqManagementUrls });
  try {
    const { value: rows, node } = await api.queues(vhostOf(config.rabbitmqUrls[0] as string), [
      'name',
      'leader',
      'members',
      'online',
      'node',
    ]);
    const byName = new Map(rows.map((row) => [row.name, row]));
    return {
      source: node,
      error: null,
      queues: topology.queues.map(({ name }): QueuePlacementState => {
        const row = byName.get(name);
        // A classic queue (declared by something else under our name) lives on one node.
        const members = row?.members ?? (row?.node === undefined ? [] : [row.node]);
        const online = row?.online ?? members;
        return {
          name,
          declared: row !== undefined,
          leader: row?.leader ?? row?.node ?? null,
          members,
          offline: members.filter((member) => !online.includes(member)),
        };
      }),
    };
  } catch (error) {
    return unknown(redactedMessage(error));
  }
}

export async function showTopology(config: Config, options: { json?: boolean }): Promise<void> {
  const topology = topologyFromConfig(config);
  const placement = await readPlacement(config, topology);
  process.stdout.write(renderTopology(topology, options.json === true, placement));
}

export async function applyTopologyNow(config: Config): Promise<void> {
  const broker = new BrokerSession({
    urls: config.rabbitmqUrls,
    name: 'telemetry-bus topology',
    heartbeatSeconds: config.rabbitmqHeartbeatSeconds,
  });
  let opened: Awaited<ReturnType<BrokerSession['connect']>>;
  try {
    opened = await broker.connect();
  } catch (error) {
    throw new CliError(`cannot reach RabbitMQ: ${redactedMessage(error)}`, { exitCode: 1 });
  }
  const { connection, node } = opened;
  connection.on('error', () => {});
  try {
    const topology = topologyFromConfig(config);
    const { placementKept } = await applyTopology(connection, topology);
    process.stderr.write(
      `declared ${topology.exchanges.length} exchanges, ${topology.queues.length} queues and ${topology.bindings.length + topology.exchangeBindings.length} bindings on ${node}\n`,
    );
    if (placementKept.length > 0) {
      process.stderr.write(
        `existing queues keep the placement they were created with: ${placementKept.join(', ')}\n`,
      );
    }
  } finally {
    await closeConnection(connection);
  }
}
