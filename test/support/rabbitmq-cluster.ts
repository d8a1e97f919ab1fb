/**
 * Test support: a RabbitMQ cluster of three nodes (or any number) on loopback, of its own — started,
 * clustered, killed, restarted and stopped here — beside the machine's own node (`rabbit@localhost`),
 * which it never touches. Each node has its own node name, ports (free ones, picked at start),
 * configuration, enabled-plugins and environment files, data and log directories under one temporary
 * directory, and the cluster has an Erlang cookie of its own in a private HOME: nothing of the machine's
 * node (its /etc/rabbitmq files, root's cookie) is read or written. The nodes form the cluster by
 * themselves at start (classic-config peer discovery), which is faster than joining them one by one.
 *
 * Every node is stopped by the pid it wrote, never by name: `close()` kills what is left, a handler
 * kills them if the test process exits, and a watchdog shell kills them if the test process is itself
 * killed (SIGKILL leaves no handler a chance).
 *
 * As a script: `node --import tsx test/support/rabbitmq-cluster.ts` starts a cluster, prints its URLs,
 * and stops it on Ctrl-C. Commands that worked on this machine kind: /work/shared/notes/.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePort } from './free-port.ts';
import { waitUntil } from './wait-until.ts';

const run = promisify(execFile);

/** Where Debian's package puts the scripts; as root they must be called directly (/usr/sbin/rabbitmqctl su's). */
const RABBITMQ_BIN = process.env.RABBITMQ_BIN ?? '/usr/lib/rabbitmq/bin';

export interface ClusterOptions {
  /** Nodes in the cluster. @default 3 */
  size?: number;
  /** Plugins every node enables. @default ['rabbitmq_management'] */
  plugins?: readonly string[];
  /** Time a node gets to start (boot and join), in ms. @default 120000 */
  startTimeoutMs?: number;
}

export interface ClusterNode {
  /** 1-based. */
  readonly index: number;
  /** Erlang node name, e.g. `tbclu1-1a2b3c@localhost`. */
  readonly name: string;
  readonly amqpPort: number;
  readonly managementPort: number;
  readonly distPort: number;
  readonly dir: string;
}

export interface RabbitCluster {
  readonly nodes: readonly ClusterNode[];
  /** The directory everything of the cluster lives in. */
  readonly dir: string;
  /** AMQP URL of a node (guest, which may log in over loopback), in `vhost`. */
  amqpUrl(node: ClusterNode, vhost?: string): string;
  /** Management API base URL of a node, with credentials. */
  managementUrl(node: ClusterNode): string;
  /** The pid of a node's Erlang VM, while it runs. */
  pid(node: ClusterNode): number | undefined;
  /** The node whose AMQP port is `port` (as /health and the logs name nodes: host:port). */
  byAmqpPort(port: number): ClusterNode | undefined;
  /** `rabbitmqctl` (or another CLI of the package: rabbitmq-queues, rabbitmq-upgrade) against a node. */
  cli(
    tool: 'rabbitmqctl' | 'rabbitmq-queues' | 'rabbitmq-upgrade',
    node: ClusterNode,
    args: string[],
  ): Promise<string>;
  /** kill -9 of the node's VM; resolves once it is gone. */
  kill(node: ClusterNode): Promise<void>;
  /** A graceful stop (`rabbitmqctl stop`, as an upgrade does); resolves once the VM is gone. */
  stop(node: ClusterNode): Promise<void>;
  /** Starts a stopped or killed node on its data directory; resolves once it runs in the cluster. */
  start(node: ClusterNode): Promise<void>;
  /** Resolves once every node runs and sees the others running (asked through the management API). */
  waitUntilFormed(timeoutMs?: number): Promise<void>;
  /** Kills every node still running and removes the directory. */
  close(): Promise<void>;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function startCluster(options: ClusterOptions = {}): Promise<RabbitCluster> {
  const size = options.size ?? 3;
  const plugins = options.plugins ?? ['rabbitmq_management'];
  const startTimeoutMs = options.startTimeoutMs ?? 120_000;
  const dir = mkdtempSync(join(tmpdir(), 'tb-cluster-'));
  const home = join(dir, 'home');
  mkdirSync(home);
  const cookie = join(home, '.erlang.cookie');
  writeFileSync(cookie, randomBytes(24).toString('hex'));
  chmodSync(cookie, 0o400);
  const tag = randomBytes(3).toString('hex');

  const nodes: ClusterNode[] = [];
  for (let index = 1; index <= size; index++) {
    nodes.push({
      index,
      name: `tbclu${index}-${tag}@localhost`,
      amqpPort: await freePort(),
      managementPort: await freePort(),
      distPort: await freePort(),
      dir: join(dir, String(index)),
    });
  }
  for (const node of nodes) {
    mkdirSync(node.dir);
    writeFileSync(
      join(node.dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.1 = 127.0.0.1:${node.amqpPort}`,
        `management.tcp.port = ${node.managementPort}`,
        'management.tcp.ip = 127.0.0.1',
        // The management API's figures (connections, queue counters) a second old, not five.
        'collect_statistics_interval = 1000',
        'cluster_formation.peer_discovery_backend = classic_config',
        ...nodes.map((peer) => `cluster_formation.classic_config.nodes.${peer.index} = ${peer.name}`),
        '',
      ].join('\n'),
    );
    writeFileSync(join(node.dir, 'enabled_plugins'), `[${plugins.join(',')}].\n`);
    writeFileSync(
      join(node.dir, 'rabbitmq-env.conf'),
      'ERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n',
    );
  }

  const pidFile = (node: ClusterNode) => join(node.dir, 'beam.pid');
  const pid = (node: ClusterNode): number | undefined => {
    if (!existsSync(pidFile(node))) return undefined;
    const value = Number(readFileSync(pidFile(node), 'utf8').trim());
    return Number.isInteger(value) && value > 0 && alive(value) ? value : undefined;
  };
  const environment = (node: ClusterNode): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: home,
    RABBITMQ_NODENAME: node.name,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(node.amqpPort),
    RABBITMQ_DIST_PORT: String(node.distPort),
    RABBITMQ_MNESIA_BASE: join(node.dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(node.dir, 'log'),
    RABBITMQ_PID_FILE: pidFile(node),
    RABBITMQ_CONFIG_FILE: join(node.dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(node.dir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(node.dir, 'enabled_plugins'),
    RABBITMQ_CONF_ENV_FILE: join(node.dir, 'rabbitmq-env.conf'),
    ERL_EPMD_ADDRESS: '127.0.0.1',
  });
  const cliEnvironment: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    ERL_EPMD_ADDRESS: '127.0.0.1',
  };

  const killAll = () => {
    for (const node of nodes) {
      const running = pid(node);
      if (running !== undefined) process.kill(running, 'SIGKILL');
    }
  };
  // The test process exiting (a failed assertion in a hook, Ctrl-C): no node outlives it.
  process.once('exit', killAll);
  // The test process killed outright: a watchdog of its own kills the nodes by their pid files.
  const watchdog = spawn(
    'sh',
    [
      '-c',
      `while kill -0 ${process.pid} 2>/dev/null && [ -d "$1" ]; do sleep 1; done
       for f in "$1"/*/beam.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
       rm -rf "$1"`,
      'tb-cluster-watchdog',
      dir,
    ],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.unref();

  const startNode = async (node: ClusterNode): Promise<void> => {
    rmSync(pidFile(node), { force: true });
    await run(join(RABBITMQ_BIN, 'rabbitmq-server'), ['-detached'], { env: environment(node) });
    await waitUntil(`${node.name} to write its pid`, () => pid(node) !== undefined, startTimeoutMs, {
      intervalMs: 100,
    });
  };

  const cluster: RabbitCluster = {
    nodes,
    dir,
    amqpUrl: (node, vhost = '/') =>
      `amqp://guest:guest@127.0.0.1:${node.amqpPort}/${encodeURIComponent(vhost)}`,
    managementUrl: (node) => `http://guest:guest@127.0.0.1:${node.managementPort}`,
    pid,
    byAmqpPort: (port) => nodes.find((node) => node.amqpPort === port),
    async cli(tool, node, args) {
      const { stdout } = await run(join(RABBITMQ_BIN, tool), ['-q', '-n', node.name, ...args], {
        env: cliEnvironment,
        timeout: 180_000,
      });
      return stdout;
    },
    async kill(node) {
      const running = pid(node);
      if (running === undefined) return;
      process.kill(running, 'SIGKILL');
      await waitUntil(`${node.name} to die`, () => !alive(running), 10_000, { intervalMs: 20 });
    },
    async stop(node) {
      const running = pid(node);
      if (running === undefined) return;
      // `stop <pid file>` returns once the VM has exited.
      await cluster.cli('rabbitmqctl', node, ['stop', pidFile(node)]).catch(() => {});
      if (alive(running)) process.kill(running, 'SIGKILL');
    },
    async start(node) {
      await startNode(node);
      await cluster.cli('rabbitmqctl', node, ['await_startup', '--timeout', String(startTimeoutMs / 1000)]);
      await cluster.waitUntilFormed(startTimeoutMs);
    },
    async waitUntilFormed(timeoutMs = startTimeoutMs) {
      await waitUntil(
        `every node of ${dir} running in one cluster`,
        async () => {
          for (const node of nodes) {
            const response = await fetch(
              `http://127.0.0.1:${node.managementPort}/api/nodes?columns=name,running`,
              {
                headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` },
                signal: AbortSignal.timeout(2000),
              },
            );
            if (!response.ok) return false;
            const listed = (await response.json()) as Array<{ name: string; running: boolean }>;
            if (listed.length !== nodes.length || !listed.every((entry) => entry.running)) return false;
          }
          return true;
        },
        timeoutMs,
        { intervalMs: 250, ignoreErrors: true },
      );
    },
    async close() {
      process.off('exit', killAll);
      killAll();
      for (const node of nodes) {
        const deadline = Date.now() + 10_000;
        while (pid(node) !== undefined && Date.now() < deadline) await sleep(20);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    for (const node of nodes) await startNode(node);
    await cluster.waitUntilFormed(startTimeoutMs);
  } catch (error) {
    await cluster.close();
    throw error;
  }
  return cluster;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) {
  const started = Date.now();
  const cluster = await startCluster();
  console.log(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s, in ${cluster.dir}`);
  console.log(`RABBITMQ_URL=${cluster.nodes.map((node) => cluster.amqpUrl(node)).join(',')}`);
  console.log(
    `RABBITMQ_MANAGEMENT_URL=${cluster.nodes.map((node) => cluster.managementUrl(node)).join(',')}`,
  );
  console.log('Ctrl-C stops it.');
  const stop = async () => {
    await cluster.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
