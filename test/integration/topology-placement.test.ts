/**
 * Quorum queue placement against the real broker: new queues get the initial group size and the leader
 * locator; queues created before them (or by a process configured otherwise) keep theirs and applying
 * the topology still succeeds, while a difference in any other argument is still refused; and
 * `topology show` reads each queue's leader and members from the management API. (Leaders spread over
 * three nodes: test/cluster/.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import amqp from 'amqplib';
import { applyTopology, TopologyMismatchError } from '../../src/bus/apply-topology.ts';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { buildTopology, QUEUES } from '../../src/bus/topology.ts';
import { readPlacement, renderTopology } from '../../src/cli/topology.ts';
import { loadConfig } from '../../src/config.ts';
import { topologyFromConfig } from '../../src/topology-from-config.ts';
import { createTestVhost, listQueues } from '../support/rabbitmq-vhost.ts';

const placed = buildTopology({ placement: { initialGroupSize: 1, leaderLocator: 'balanced' } });

async function connect(t: { after(fn: () => unknown): void }, url: string) {
  const connection = await amqp.connect(url);
  connection.on('error', () => {});
  t.after(() => closeConnection(connection));
  return connection;
}

test('new queues are created with the placement arguments', async (t) => {
  const vhost = await createTestVhost(t);
  const connection = await connect(t, vhost.url);
  const { placementKept } = await applyTopology(connection, placed);
  assert.deepEqual(placementKept, []);
  const queues = await listQueues(vhost.managementUrl, vhost.vhost);
  assert.equal(queues.length, placed.queues.length);
  for (const queue of queues) {
    assert.equal(queue.arguments['x-queue-leader-locator'], 'balanced', queue.name);
    assert.equal(queue.arguments['x-quorum-initial-group-size'], 1, queue.name);
  }
});

test('queues placed otherwise keep their placement; the topology still applies; other differences are refused', async (t) => {
  const vhost = await createTestVhost(t);
  const connection = await connect(t, vhost.url);
  // As an earlier version declared them: no placement arguments.
  await applyTopology(connection, buildTopology());
  const names = placed.queues.map((queue) => queue.name);
  assert.deepEqual((await applyTopology(connection, placed)).placementKept, names);
  const queues = await listQueues(vhost.managementUrl, vhost.vhost);
  assert.ok(queues.every((queue) => queue.arguments['x-queue-leader-locator'] === undefined));

  // Created with one placement, declared with another, or with none: kept too.
  const other = await createTestVhost(t);
  const second = await connect(t, other.url);
  await applyTopology(second, placed);
  const clientLocal = buildTopology({ placement: { leaderLocator: 'client-local' } });
  assert.deepEqual((await applyTopology(second, clientLocal)).placementKept, names);
  assert.deepEqual((await applyTopology(second, buildTopology())).placementKept, names);

  // Any other argument that differs is still an operator's problem to see.
  const longerLadder = buildTopology({ deliveryLimit: 5, placement: { leaderLocator: 'balanced' } });
  await assert.rejects(applyTopology(connection, longerLadder), (error: Error) => {
    assert.ok(error instanceof TopologyMismatchError);
    assert.match(error.message, new RegExp(`queue ${QUEUES.metrics.replace('.', '\\.')}.*x-delivery-limit`));
    return true;
  });
});

test('topology show prints each queue’s leader and members, from the first management API that answers', async (t) => {
  const vhost = await createTestVhost(t);
  const config = loadConfig({
    RABBITMQ_URL: vhost.url,
    RABBITMQ_MANAGEMENT_URL: `http://guest:guest@127.0.0.1:1,${vhost.managementUrl}`,
  });
  const topology = topologyFromConfig(config);
  const before = await readPlacement(config, topology);
  assert.ok(before.queues.every((queue) => !queue.declared));
  assert.match(renderTopology(topology, false, before), /not declared on the broker yet/);

  await applyTopology(await connect(t, vhost.url), topology);
  const placement = await readPlacement(config, topology);
  assert.equal(placement.error, null);
  assert.equal(placement.source, new URL(vhost.managementUrl).host);
  for (const queue of placement.queues) {
    assert.ok(queue.declared && queue.leader !== null, queue.name);
    assert.deepEqual(queue.members, [queue.leader], 'one node: the leader is the only member');
    assert.deepEqual(queue.offline, []);
  }
  const text = renderTopology(topology, false, placement);
  const leader = placement.queues[0]?.leader as string;
  assert.equal(
    text.split('\n').filter((line) => line.includes(`leader ${leader}; members ${leader}`)).length,
    topology.queues.length,
  );
  assert.match(text, /when created: x-queue-leader-locator=balanced/);
  const json = JSON.parse(renderTopology(topology, true, placement)) as { placement: { queues: unknown[] } };
  assert.equal(json.placement.queues.length, topology.queues.length);

  const off = loadConfig({ RABBITMQ_URL: vhost.url, RABBITMQ_MANAGEMENT_URL: 'off' });
  assert.match(
    renderTopology(topology, false, await readPlacement(off, topology)),
    /leaders and members unknown: RABBITMQ_MANAGEMENT_URL is off/,
  );
});
