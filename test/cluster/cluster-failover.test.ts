/**
 * A three-node RabbitMQ cluster (issue 16), started for this file on loopback beside the machine's own
 * broker (test/support/rabbitmq-cluster.ts), and four faults of it under load — each against the whole
 * system as deployed (the API and a worker as processes of their own, RABBITMQ_URL listing the three
 * nodes), each proving by counting every event that none was lost or applied twice, that every model's
 * events kept their order, and measuring how long the bus took to work on another node:
 *
 * 1. kill -9 of the node the API and the worker are connected to;
 * 2. kill -9 of a node that leads some queues (and that nobody is connected to);
 * 3. a rolling restart of the three nodes, one at a time, as an upgrade does it;
 * 4. a node partitioned away: its port behind a TCP proxy that stops forwarding.
 *
 * It prints the table and writes it to test-results/cluster-failover.{md,json}. `npm run test:cluster`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ManagementApi } from '../../src/bus/management-api.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import { spawnCli } from '../support/cli-process.ts';
import { ClusterReport } from '../support/cluster/cluster-report.ts';
import { type HealthSampler, sampleHealth } from '../support/cluster/health-sampler.ts';
import { type OrderedUpdates, startOrderedUpdates } from '../support/cluster/ordered-updates.ts';
import { type Accounting, waitForSettled } from '../support/fault-matrix/event-accounting.ts';
import { RegistryWorkload } from '../support/fault-matrix/registry-workload.ts';
import {
  type SystemUnderTest,
  scenarioPrefix,
  startSystem,
} from '../support/fault-matrix/system-under-test.ts';
import { type ClusterNode, type RabbitCluster, startCluster } from '../support/rabbitmq-cluster.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { waitUntil } from '../support/wait-until.ts';

const SIZE = {
  /** Requests per second of the registry mix, besides the ordered updates. */
  rate: 150,
  /** Models updated one request at a time each, 3 per second. */
  orderedModels: 10,
  /** Load before the fault, and after the bus is back, in s. */
  warmupS: 4,
  afterS: 4,
  /** The bound on a failover, and on the bus outage per step of a rolling restart, in ms. */
  failoverMs: 5000,
  /** AMQP heartbeat of the API and the worker, in s: a partition is detected after two to three of them. */
  heartbeatS: 2,
  settleS: 120,
  scenarioS: 300,
};

const report = new ClusterReport();
let cluster: RabbitCluster;

before(
  async () => {
    const started = Date.now();
    cluster = await startCluster();
    console.log(
      `cluster of ${cluster.nodes.length} nodes formed in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  },
  { timeout: 180_000 },
);
after(async () => {
  report.write();
  await cluster?.close();
});

interface ScenarioResult {
  accounting: Accounting;
  failoverSeconds: number;
  notes: string;
}

function scenario(title: string, body: (t: TestContext) => Promise<ScenarioResult>): void {
  test(title, { timeout: SIZE.scenarioS * 1000 }, async (t) => {
    let result: ScenarioResult | undefined;
    try {
      result = await body(t);
    } finally {
      report.add({
        scenario: title,
        sent: result?.accounting.sent ?? 0,
        lost: result?.accounting.lost ?? -1,
        duplicates: result?.accounting.duplicates ?? -1,
        failoverSeconds: result?.failoverSeconds ?? -1,
        notes: result?.notes ?? 'failed: see the log',
        passed: result !== undefined,
      });
    }
  });
}

/** Every node runs again and every queue of the scenario has all its members online: the next starts whole. */
async function restoreCluster(): Promise<void> {
  for (const node of cluster.nodes) {
    if (cluster.pid(node) === undefined) await cluster.start(node);
  }
  await cluster.waitUntilFormed();
}

interface ClusterSystem {
  system: SystemUnderTest;
  workload: RegistryWorkload;
  health: HealthSampler;
  ordered: OrderedUpdates;
  /** Stops the load (the mix and the ordered updates). */
  stopLoad(): Promise<void>;
}

/**
 * The API and a worker on a vhost of the cluster, RABBITMQ_URL listing every node (`firstNode` rewrites
 * the first, to put a proxy in front of it), with load running.
 */
async function clusterSystem(
  t: TestContext,
  n: number,
  firstNode: (url: string) => string = (url) => url,
): Promise<ClusterSystem> {
  const [first] = cluster.nodes as [ClusterNode];
  const urls = (vhostUrl: string) => {
    const vhost = decodeURIComponent(new URL(vhostUrl).pathname.slice(1));
    return cluster.nodes
      .map((node, index) =>
        index === 0 ? firstNode(cluster.amqpUrl(node, vhost)) : cluster.amqpUrl(node, vhost),
      )
      .join(',');
  };
  const env = {
    RABBITMQ_MANAGEMENT_URL: cluster.nodes.map((node) => cluster.managementUrl(node)).join(','),
    RABBITMQ_HEARTBEAT_S: String(SIZE.heartbeatS),
  };
  const system = await startSystem(t, {
    broker: { amqpUrl: cluster.amqpUrl(first), managementUrl: cluster.managementUrl(first) },
    rabbitmqUrl: urls,
    apiEnv: env,
    workerEnv: env,
  });
  const prefix = scenarioPrefix(n);
  const workload = new RegistryWorkload(system.api.url, system.key, prefix);
  await workload.seed(20);
  const health = sampleHealth(() => system.api.url);
  t.after(() => health.stop());
  const ordered = await startOrderedUpdates({
    apiUrl: system.api.url,
    apiKey: system.key,
    prefix,
    models: SIZE.orderedModels,
    answered: workload.answered,
  });
  let stopped = false;
  const mix = workload.run({ ratePerSecond: SIZE.rate, durationMs: 3_600_000, stop: () => stopped });
  let stopping: Promise<void> | undefined;
  const stopLoad = () => {
    stopped = true;
    stopping ??= Promise.all([mix, ordered.stop()]).then(() => {});
    return stopping;
  };
  t.after(stopLoad);
  return { system, workload, health, ordered, stopLoad };
}

/** The node of a `host:port` label (as /health and the logs name nodes). */
function nodeAt(label: string | null | undefined): ClusterNode | undefined {
  const port = Number(label?.split(':').pop());
  return cluster.byAmqpPort(port);
}

/** When the worker's consumers connected, or lost their connection, and which node, from its log lines. */
function workerEvents(
  system: SystemUnderTest,
  kind: 'connected' | 'lost',
): Array<{ at: number; node: string }> {
  const worker = system.workers[0];
  if (worker === undefined) return [];
  const message =
    kind === 'connected' ? 'consumers connected to RabbitMQ' : 'consumers lost their RabbitMQ connection';
  return worker
    .output()
    .split('\n')
    .filter((line) => line.includes(message))
    .map((line) => JSON.parse(line) as { time: string; node: string })
    .map((entry) => ({ at: Date.parse(entry.time), node: entry.node }));
}

const workerConnections = (system: SystemUnderTest) => workerEvents(system, 'connected');

/** Each queue's leader and members, from the management API of any node that answers. */
async function placement(vhost: string) {
  const api = new ManagementApi({ urls: cluster.nodes.map((node) => cluster.managementUrl(node)) });
  const { value } = await api.queues(vhost, ['name', 'leader', 'members', 'online']);
  return value;
}

/**
 * Stops the load, waits for every event to be applied, and asserts: 0 lost, 0 applied twice, the ledger
 * in agreement, every model's events in order, the audit chains intact, every request answered as intended.
 */
async function settleAndCheck(setup: ClusterSystem): Promise<Accounting> {
  await setup.stopLoad();
  const { system, workload, ordered } = setup;
  const { accounting, timedOut } = await waitForSettled(
    system.pool,
    { kind: 'requests', answered: new Set(workload.answered.keys()) },
    { timeoutMs: SIZE.settleS * 1000 },
  );
  const detail = JSON.stringify(accounting);
  assert.ok(!timedOut, `not every event was applied within ${SIZE.settleS} s: ${detail}`);
  assert.equal(accounting.lost, 0, `lost: ${detail}`);
  assert.equal(accounting.duplicates, 0, `applied twice: ${detail}`);
  assert.deepEqual(await ordered.outOfOrder(system.pool), [], 'every model’s events applied in order');
  const verified = await verifyAuditTrail(system.pool);
  assert.equal(verified.ok, true, `audit verify: ${JSON.stringify(verified)}`);
  assert.equal(workload.unanswered, 0, `every request was answered: ${workload.unansweredErrors.join('; ')}`);
  assert.deepEqual([...workload.unexpected], [], 'no request failed (every status as the mix intended)');
  return accounting;
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);

test('new queues’ leaders are spread over the nodes, and topology show prints each queue’s leader and members', async (t) => {
  const [first] = cluster.nodes as [ClusterNode];
  const vhost = await createTestVhost(t, {
    amqpUrl: cluster.amqpUrl(first),
    managementUrl: cluster.managementUrl(first),
  });
  const env = {
    RABBITMQ_URL: cluster.nodes.map((node) => cluster.amqpUrl(node, vhost.vhost)).join(','),
    RABBITMQ_MANAGEMENT_URL: cluster.nodes.map((node) => cluster.managementUrl(node)).join(','),
  };
  const apply = spawnCli(['topology', 'apply'], env);
  await once(apply.child, 'exit');
  assert.equal(apply.child.exitCode, 0, apply.output());
  const show = spawnCli(['topology', 'show'], env);
  await once(show.child, 'exit');
  const queues = await placement(vhost.vhost);
  const leaders = new Set(queues.map((queue) => queue.leader));
  assert.equal(leaders.size, cluster.nodes.length, `leaders on every node: ${JSON.stringify(queues)}`);
  for (const queue of queues) {
    assert.equal(queue.members?.length, cluster.nodes.length, `${queue.name} on every node`);
    assert.match(show.output(), new RegExp(`leader ${queue.leader}; members ${queue.members?.join(', ')}`));
  }
});

scenario('kill -9 the node the API and the worker are connected to, under load', async (t) => {
  const setup = await clusterSystem(t, 1);
  const { system, health } = setup;
  await sleep(SIZE.warmupS * 1000);
  const apiNode = nodeAt(health.last()?.node);
  const workerNode = nodeAt(workerConnections(system).at(-1)?.node);
  assert.ok(apiNode !== undefined && apiNode === workerNode, 'the API and the worker start on the same node');
  const killedAt = Date.now();
  let restored = false;
  try {
    await cluster.kill(apiNode);
    await waitUntil(
      'the publisher and the consumers on another node',
      () =>
        health.first(killedAt, (s) => s.state === 'connected' && nodeAt(s.node) !== apiNode) !== undefined &&
        workerConnections(system).some((c) => c.at >= killedAt && nodeAt(c.node) !== apiNode),
      30_000,
      { intervalMs: 50 },
    );
    await sleep(SIZE.afterS * 1000);
    await restoreCluster();
    restored = true;
  } finally {
    if (!restored) await restoreCluster();
  }
  const publisherMs =
    (health.first(killedAt, (s) => s.state === 'connected' && nodeAt(s.node) !== apiNode)?.at ?? 0) -
    killedAt;
  const consumerMs = (workerConnections(system).find((c) => c.at >= killedAt)?.at ?? 0) - killedAt;
  const accounting = await settleAndCheck(setup);
  assert.ok(publisherMs <= SIZE.failoverMs, `publisher on another node after ${publisherMs} ms`);
  assert.ok(consumerMs <= SIZE.failoverMs, `consumers on another node after ${consumerMs} ms`);
  return {
    accounting,
    failoverSeconds: Math.max(publisherMs, consumerMs) / 1000,
    notes: `publisher on another node after ${seconds(publisherMs)} s, consumers after ${seconds(consumerMs)} s; order kept`,
  };
});

scenario('kill -9 a node that leads some queues (nobody connected to it)', async (t) => {
  const setup = await clusterSystem(t, 2);
  const { system, health } = setup;
  await sleep(SIZE.warmupS * 1000);
  const connected = nodeAt(health.last()?.node);
  const before = await placement(system.bus.vhost.vhost);
  const victim = cluster.nodes.find(
    (node) => node !== connected && before.some((queue) => queue.leader === node.name),
  );
  assert.ok(
    victim !== undefined,
    `a node besides ${connected?.name} leads a queue: ${JSON.stringify(before)}`,
  );
  const led = before.filter((queue) => queue.leader === victim.name).map((queue) => queue.name);
  const connectsBefore = health.last()?.connects ?? 0;
  const killedAt = Date.now();
  let movedMs = -1;
  try {
    await cluster.kill(victim);
    await waitUntil(
      'every queue led by a live node',
      async () => {
        const now = await placement(system.bus.vhost.vhost);
        return now.length === before.length && now.every((queue) => queue.leader !== victim.name);
      },
      30_000,
      { intervalMs: 100, ignoreErrors: true },
    );
    movedMs = Date.now() - killedAt;
    await sleep(SIZE.afterS * 1000);
  } finally {
    await restoreCluster();
  }
  const stallMs = health.longestConfirmStall(killedAt, killedAt + movedMs + SIZE.afterS * 1000);
  const accounting = await settleAndCheck(setup);
  assert.equal(health.last()?.connects, connectsBefore, 'the publisher kept its connection');
  return {
    accounting,
    failoverSeconds: movedMs / 1000,
    notes: `${led.length} leaders moved (${led.join(', ')}) within ${seconds(movedMs)} s; no request failed; publisher kept its connection, confirms stalled ${seconds(stallMs)} s at most`,
  };
});

scenario('rolling restart of the three nodes, one at a time, under load (an upgrade)', async (t) => {
  const setup = await clusterSystem(t, 3);
  const { system, health } = setup;
  await sleep(SIZE.warmupS * 1000);
  const steps: Array<{
    node: ClusterNode;
    publisherMs: number;
    stallMs: number;
    consumersMs: number | null;
  }> = [];
  // From the consumers' connection lost (their node drained) to their connection on another node.
  const consumerOutage = (from: number, to: number): number | null => {
    const lost = workerEvents(system, 'lost').find((event) => event.at >= from && event.at <= to);
    const back = lost && workerConnections(system).find((event) => event.at >= lost.at);
    return lost === undefined || back === undefined ? null : back.at - lost.at;
  };
  try {
    for (const node of cluster.nodes) {
      // As an upgrade does it: only when every quorum queue keeps its majority without this node, and
      // with its leaders and clients moved off it first.
      await cluster.cli('rabbitmq-upgrade', node, ['await_online_quorum_plus_one', '--timeout', '120']);
      const stepAt = Date.now();
      await cluster.cli('rabbitmq-upgrade', node, ['drain', '--timeout', '120']);
      await cluster.stop(node);
      await cluster.start(node);
      await cluster.cli('rabbitmq-upgrade', node, ['revive']);
      const stepEnd = Date.now();
      steps.push({
        node,
        publisherMs: health.longest(stepAt, stepEnd, (s) => s.state !== 'connected'),
        stallMs: health.longestConfirmStall(stepAt, stepEnd),
        consumersMs: consumerOutage(stepAt, stepEnd),
      });
      await sleep(1000);
    }
    await sleep(SIZE.afterS * 1000);
  } finally {
    await restoreCluster();
  }
  const accounting = await settleAndCheck(setup);
  for (const step of steps) {
    assert.ok(
      step.publisherMs <= SIZE.failoverMs,
      `publisher away ${step.publisherMs} ms in the step of ${step.node.name}`,
    );
    assert.ok(
      step.stallMs <= SIZE.failoverMs,
      `confirms stalled ${step.stallMs} ms in the step of ${step.node.name}`,
    );
    assert.ok(
      (step.consumersMs ?? 0) <= SIZE.failoverMs,
      `consumers away ${step.consumersMs} ms in the step of ${step.node.name}`,
    );
  }
  assert.ok(
    steps.some((step) => step.consumersMs !== null),
    'a step restarted the consumers’ node, and they moved',
  );
  const worst = Math.max(
    ...steps.map((step) => Math.max(step.publisherMs, step.stallMs, step.consumersMs ?? 0)),
  );
  return {
    accounting,
    failoverSeconds: worst / 1000,
    notes: steps
      .map(
        (step) =>
          `node ${step.node.index}: publisher away ${seconds(step.publisherMs)} s, confirms stalled ${seconds(step.stallMs)} s` +
          (step.consumersMs === null ? '' : `, consumers away ${seconds(step.consumersMs)} s`),
      )
      .join('; '),
  };
});

scenario('a node partitioned away (its port behind a TCP proxy that stops forwarding)', async (t) => {
  const [first] = cluster.nodes as [ClusterNode];
  const partitioned: TcpProxy = await startTcpProxy({ targetPort: first.amqpPort });
  t.after(() => partitioned.close());
  const setup = await clusterSystem(t, 4, (url) => partitioned.url(url));
  const { system, health } = setup;
  await sleep(SIZE.warmupS * 1000);
  const proxied = `127.0.0.1:${partitioned.port}`;
  assert.equal(health.last()?.node, proxied, 'the API publishes through the proxy');
  assert.equal(workerConnections(system).at(-1)?.node, proxied, 'the worker consumes through the proxy');
  const cutAt = Date.now();
  try {
    partitioned.blackhole(true);
    await waitUntil(
      'the publisher and the consumers on another node',
      () =>
        health.first(cutAt, (s) => s.state === 'connected' && s.node !== proxied) !== undefined &&
        workerConnections(system).some((c) => c.at >= cutAt && c.node !== proxied),
      60_000,
      { intervalMs: 50 },
    );
    await sleep(SIZE.afterS * 1000);
  } finally {
    partitioned.blackhole(false);
  }
  const detectedMs = (health.first(cutAt, (s) => s.state !== 'connected')?.at ?? 0) - cutAt;
  const publisherMs =
    (health.first(cutAt, (s) => s.state === 'connected' && s.node !== proxied)?.at ?? 0) - cutAt;
  const consumerMs = (workerConnections(system).find((c) => c.at >= cutAt)?.at ?? 0) - cutAt;
  const accounting = await settleAndCheck(setup);
  // A connection is dropped two heartbeat intervals after its last byte (broker-connection.ts); the
  // /health samples are 100 ms apart.
  const heartbeatMs = SIZE.heartbeatS * 1000;
  assert.ok(detectedMs <= 2 * heartbeatMs + 300, `the publisher saw the partition after ${detectedMs} ms`);
  assert.ok(
    publisherMs - detectedMs <= SIZE.failoverMs,
    `publisher failed over ${publisherMs - detectedMs} ms after`,
  );
  return {
    accounting,
    failoverSeconds: Math.max(publisherMs, consumerMs) / 1000,
    notes:
      `detected after ${seconds(detectedMs)} s (${(detectedMs / heartbeatMs).toFixed(1)} heartbeats of ${SIZE.heartbeatS} s); ` +
      `publisher on another node after ${seconds(publisherMs)} s, consumers after ${seconds(consumerMs)} s`,
  };
});
