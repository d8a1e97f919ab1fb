/**
 * Test support: fault tests need the real broker to fail (stopped, or refusing publishes under a memory
 * alarm), because only the real broker shows what the application sees then. The broker is shared by every
 * test on the machine, so each change here has a way back, and restoreBroker() undoes all of them whatever
 * state a failed test left behind: call it in a `finally` or `t.after`.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { TEST_RABBITMQ_URL } from './rabbitmq-vhost.ts';

const execFileAsync = promisify(execFile);

/** The rabbitmqctl to run; override with TEST_RABBITMQCTL (e.g. a wrapper that runs it with sudo). */
export const RABBITMQCTL = process.env.TEST_RABBITMQCTL ?? 'rabbitmqctl';

/** What starts the broker node after it was killed; override with TEST_RABBITMQ_SERVER. */
export const RABBITMQ_SERVER = process.env.TEST_RABBITMQ_SERVER ?? 'rabbitmq-server';

/**
 * The memory high watermark restored after an alarm, as a fraction of RAM: RabbitMQ's default, which the test
 * broker's rabbitmq.conf does not change.
 */
export const DEFAULT_MEMORY_HIGH_WATERMARK = 0.4;

export interface RabbitmqctlOptions {
  /** Kill rabbitmqctl if it has not finished after this long, in ms. Default 30_000. */
  timeoutMs?: number;
}

export interface StartBrokerOptions {
  /** Deadline for the app to boot and accept an AMQP connection, in ms. Default 60_000. */
  timeoutMs?: number;
}

export interface BrokerRunningOptions {
  /** Give up on the probe connection after this long, in ms. Default 2_000. */
  timeoutMs?: number;
}

/** Runs rabbitmqctl and returns its standard output; rejects with its standard error when it fails. */
export async function rabbitmqctl(
  args: readonly string[],
  options: RabbitmqctlOptions = {},
): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  try {
    const { stdout } = await execFileAsync(RABBITMQCTL, args, { timeout: timeoutMs, killSignal: 'SIGKILL' });
    return stdout;
  } catch (err) {
    const { stderr, stdout, killed } = err as { stderr?: string; stdout?: string; killed?: boolean };
    const why = killed ? `timed out after ${timeoutMs} ms` : (stderr || stdout || String(err)).trim();
    throw new Error(`${RABBITMQCTL} ${args.join(' ')} failed: ${why}`);
  }
}

/**
 * Stops the RabbitMQ application but not its Erlang node: every client connection is closed and the AMQP
 * port refuses connections until startBrokerApp(). The management API is part of the app and stops too.
 */
export async function stopBrokerApp(): Promise<void> {
  await rabbitmqctl(['stop_app'], { timeoutMs: 60_000 });
}

/**
 * Starts the RabbitMQ application and resolves only once an AMQP connection succeeds: `await_startup` returns
 * when the app has booted, which is not yet proof that clients can connect.
 */
export async function startBrokerApp(options: StartBrokerOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  await rabbitmqctl(['start_app'], { timeoutMs });
  const remainingS = () => Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
  await rabbitmqctl(['await_startup', '--timeout', String(remainingS())], {
    timeoutMs: remainingS() * 1000 + 5_000,
  });
  for (;;) {
    if (await brokerRunning()) return;
    if (Date.now() >= deadline) {
      throw new Error(`RabbitMQ did not accept an AMQP connection within ${timeoutMs} ms of start_app`);
    }
    await sleep(250);
  }
}

/**
 * Kills the broker's Erlang node with SIGKILL, as a crash or the OOM killer would: no connection is
 * closed cleanly and queues recover from their logs at the next start. Resolves once the process is gone.
 */
export async function killBroker(): Promise<void> {
  const pid = Number(JSON.parse((await rabbitmqctl(['eval', 'os:getpid().'])).trim()));
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`unexpected broker pid ${pid}`);
  process.kill(pid, 'SIGKILL');
  await waitUntil(async () => !processAlive(pid), 15_000, `broker process ${pid} to exit`);
}

/** Whether the broker's node (not necessarily its app) answers rabbitmqctl. */
export async function brokerNodeUp(): Promise<boolean> {
  try {
    await rabbitmqctl(['-q', 'ping'], { timeoutMs: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts the broker node (after killBroker(), say) and resolves once it accepts an AMQP connection. The
 * node restarts its app, and every quorum queue replays its log, which takes a few seconds here.
 */
export async function startBrokerNode(options: StartBrokerOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 90_000;
  await execFileAsync(RABBITMQ_SERVER, ['-detached'], { timeout: 30_000, killSignal: 'SIGKILL' });
  await waitUntil(() => brokerRunning(), timeoutMs, 'the restarted broker to accept AMQP connections');
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether the broker accepts AMQP connections: the node can be up with the app stopped, and only a real
 * connection tells both apart. A broker under a memory alarm still counts as running.
 */
export async function brokerRunning(options: BrokerRunningOptions = {}): Promise<boolean> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  let timer: NodeJS.Timeout | undefined;
  const connecting = amqp.connect(TEST_RABBITMQ_URL, {
    timeout: timeoutMs,
    clientProperties: { connection_name: 'telemetry-bus test broker probe' },
  });
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    const result = await Promise.race([connecting, timedOut]);
    if (result === 'timeout') {
      // The handshake may still complete; close what it opens rather than leak it.
      connecting.then((model) => model.close()).catch(() => {});
      return false;
    }
    await result.close().catch(() => {});
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Raises or clears a memory alarm on the broker. A high watermark of 0 (documented in RabbitMQ's memory
 * guide as the way to stop all publishing) puts the node over its limit at once, so it blocks every
 * connection that publishes and sends it `connection.blocked`; connections that only consume are untouched.
 * Resolves once the alarm is really raised or cleared.
 */
export async function setMemoryAlarm(on: boolean): Promise<void> {
  const watermark = on ? 0 : DEFAULT_MEMORY_HIGH_WATERMARK;
  await rabbitmqctl(['set_vm_memory_high_watermark', String(watermark)]);
  await waitUntil(
    async () => (await memoryAlarmActive()) === on,
    15_000,
    `memory alarm to be ${on ? 'set' : 'cleared'}`,
  );
}

/** Whether the node has a memory alarm in effect. */
export async function memoryAlarmActive(): Promise<boolean> {
  return (await brokerAlarms()).some((alarm) => alarm.includes('resource_limit,memory'));
}

/** The node's alarms, one Erlang term each, e.g. `{{resource_limit,memory,rabbit@localhost},[]}`. */
export async function brokerAlarms(): Promise<string[]> {
  const output = (await rabbitmqctl(['eval', 'rabbit_alarm:get_alarms().'])).trim();
  if (!output.startsWith('[') || output === '[]') return [];
  // Each alarm is a {{...},[...]} tuple; splitting between tuples avoids parsing Erlang terms in full.
  return output
    .slice(1, -1)
    .split(/(?<=\}),\s*(?=\{\{)/)
    .map((alarm) => alarm.trim())
    .filter(Boolean);
}

/**
 * Puts the broker back as tests expect it: app running and accepting AMQP connections, memory watermark at
 * {@link DEFAULT_MEMORY_HIGH_WATERMARK}, no alarms. Safe to call whatever the state, and when nothing was
 * changed. Every step is attempted even if one fails; it then rejects with all the failures, since a broker
 * left broken would fail every other test on the machine.
 */
export async function restoreBroker(): Promise<void> {
  const failures: unknown[] = [];
  const step = async (fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      failures.push(err);
    }
  };
  await step(async () => {
    if (await brokerRunning()) return;
    // A killed node is started again; a node whose app was stopped only needs the app.
    if (await brokerNodeUp()) await startBrokerApp();
    else await startBrokerNode();
  });
  // Unconditional: cheaper than asking for the current watermark first, and right whatever set it.
  await step(() => setMemoryAlarm(false));
  await step(() =>
    waitUntil(async () => (await brokerAlarms()).length === 0, 15_000, 'all broker alarms to clear'),
  );
  if (failures.length > 0) {
    throw new AggregateError(
      failures,
      `restoreBroker could not restore RabbitMQ: ${failures.map(String).join('; ')}`,
    );
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
