/**
 * Test support: every test that touches RabbitMQ gets a virtual host of its own, created and deleted through the
 * management HTTP API, so test files run in parallel against the one real broker without seeing each other's
 * exchanges, queues or messages (the same idea as the database per test file in test/helper.ts).
 */
import { randomUUID } from 'node:crypto';

/** AMQP URL of the broker tests run against, without a vhost; override with TEST_RABBITMQ_URL. */
export const TEST_RABBITMQ_URL = process.env.TEST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Management API base URL, credentials included; override with TEST_RABBITMQ_MANAGEMENT_URL. */
export const TEST_RABBITMQ_MANAGEMENT_URL =
  process.env.TEST_RABBITMQ_MANAGEMENT_URL ?? 'http://guest:guest@127.0.0.1:15672';

/** Every vhost created here starts with this, so leftovers are recognisable and nothing else is ever deleted. */
export const TEST_VHOST_PREFIX = 'tb_test_';

/** Anything with node:test's `after` hook registration: a TestContext, or `{ after }` at file level. */
export interface Teardown {
  after(fn: () => unknown): void;
}

export interface TestVhost {
  /** The vhost name, unencoded (`tb_test_<32 hex>`). */
  vhost: string;
  /** AMQP URL that opens connections in this vhost. */
  url: string;
  /** Management API base URL to pass to {@link queueStats} and {@link listQueues}. */
  managementUrl: string;
}

/** Message counters of one queue, as the management API reports them. */
export interface QueueStats {
  messages: number;
  messages_ready: number;
  messages_unacknowledged: number;
  consumers: number;
}

/** One queue as listed by the management API; counters are absent until the broker first reports them. */
export interface QueueInfo extends Partial<QueueStats> {
  name: string;
  vhost: string;
  durable: boolean;
  auto_delete: boolean;
  exclusive: boolean;
  type?: string;
  arguments: Record<string, unknown>;
  [key: string]: unknown;
}

export interface ManagementRequestOptions {
  /** Give up on the HTTP request after this long, in ms. Default 10_000. */
  timeoutMs?: number;
}

export interface QueueStatsOptions extends ManagementRequestOptions {
  /**
   * How long to wait for the counters to exist, in ms. Default 15_000: a new queue has none until the broker's
   * next statistics emission, which is every 5 s by default (`collect_statistics_interval`).
   */
  statsTimeoutMs?: number;
}

export interface WaitForQueueStatsOptions extends ManagementRequestOptions {
  /** Overall deadline, in ms. Default 15_000, three statistics intervals. */
  waitTimeoutMs?: number;
  /** Pause between polls, in ms. Default 250. */
  intervalMs?: number;
}

export interface DeleteStaleTestVhostsOptions extends ManagementRequestOptions {
  /**
   * Only delete vhosts created at least this long ago, in ms. Default 3_600_000 (1 h), so a test run still in
   * progress in another checkout keeps its vhosts. Vhosts whose creation time cannot be read count as stale.
   */
  olderThanMs?: number;
  /** Management API base URL. Default {@link TEST_RABBITMQ_MANAGEMENT_URL}. */
  managementUrl?: string;
}

const CREATED_AT_PATTERN = /created_at=(\S+)/;

/** A broker to make test vhosts on: the local one by default, or a test cluster's node. */
export interface TestBroker {
  /** AMQP URL without a vhost. */
  amqpUrl: string;
  /** Management API base URL, credentials included. */
  managementUrl: string;
}

/**
 * Creates a vhost of its own for the caller, grants guest everything in it, and registers its deletion on
 * `teardown`. Deleting a vhost also closes every connection still open in it, so nothing leaks even when a test
 * forgets to close a connection.
 */
export async function createTestVhost(
  teardown: Teardown,
  broker: TestBroker = { amqpUrl: TEST_RABBITMQ_URL, managementUrl: TEST_RABBITMQ_MANAGEMENT_URL },
): Promise<TestVhost> {
  const vhost = `${TEST_VHOST_PREFIX}${randomUUID().replaceAll('-', '')}`;
  const managementUrl = broker.managementUrl;
  // Vhosts have no creation time of their own; the description carries one so deleteStaleTestVhosts can tell
  // a leftover from a vhost of a run still in progress.
  await managementRequest(managementUrl, 'PUT', `/vhosts/${encodeURIComponent(vhost)}`, {
    body: { description: `telemetry-bus test vhost created_at=${new Date().toISOString()}`, tags: '' },
  });
  // Registered before the permissions are set, so a failure there still leaves no vhost behind.
  teardown.after(() => deleteVhost(managementUrl, vhost));
  const amqpUser = decodeURIComponent(new URL(broker.amqpUrl).username) || 'guest';
  await managementRequest(
    managementUrl,
    'PUT',
    `/permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(amqpUser)}`,
    { body: { configure: '.*', write: '.*', read: '.*' } },
  );
  return { vhost, url: amqpUrlForVhost(broker.amqpUrl, vhost), managementUrl };
}

/** The AMQP URL `base` pointed at `vhost`; the vhost is percent-encoded because `/` is a legal vhost character. */
export function amqpUrlForVhost(base: string, vhost: string): string {
  const url = new URL(base);
  url.pathname = `/${encodeURIComponent(vhost)}`;
  return url.toString();
}

/** Deletes a vhost and, with it, its queues, exchanges and open connections; a vhost already gone is fine. */
export async function deleteVhost(
  managementUrl: string,
  vhost: string,
  options: ManagementRequestOptions = {},
): Promise<void> {
  await managementRequest(managementUrl, 'DELETE', `/vhosts/${encodeURIComponent(vhost)}`, {
    ...options,
    allowNotFound: true,
  });
}

/**
 * Message and consumer counts of one queue. The management API reports them as of its last statistics
 * emission (every 5 s by default), so they lag behind AMQP: poll with {@link waitForQueueStats} for a value
 * that is expected to change.
 */
export async function queueStats(
  managementUrl: string,
  vhost: string,
  queue: string,
  options: QueueStatsOptions = {},
): Promise<QueueStats> {
  const deadline = Date.now() + (options.statsTimeoutMs ?? 15_000);
  for (;;) {
    const info = await getQueue(managementUrl, vhost, queue, options);
    const stats = pickStats(info);
    if (stats) return stats;
    if (Date.now() >= deadline) {
      throw new Error(`management API reported no counters for queue ${queue} in vhost ${vhost} in time`);
    }
    await sleep(250);
  }
}

/**
 * Polls {@link queueStats} until `predicate` holds and returns the stats that satisfied it; rejects with the
 * last stats seen otherwise.
 */
export async function waitForQueueStats(
  managementUrl: string,
  vhost: string,
  queue: string,
  predicate: (stats: QueueStats) => boolean,
  options: WaitForQueueStatsOptions = {},
): Promise<QueueStats> {
  const waitTimeoutMs = options.waitTimeoutMs ?? 15_000;
  const deadline = Date.now() + waitTimeoutMs;
  let last: QueueStats | undefined;
  for (;;) {
    const info = await getQueue(managementUrl, vhost, queue, options);
    last = pickStats(info) ?? last;
    if (last && predicate(last)) return last;
    if (Date.now() >= deadline) {
      throw new Error(
        `queue ${queue} in vhost ${vhost} did not reach the expected stats within ${waitTimeoutMs} ms; ` +
          `last seen: ${last ? JSON.stringify(last) : 'no counters yet'}`,
      );
    }
    await sleep(options.intervalMs ?? 250);
  }
}

/** All queues of a vhost, sorted by name. */
export async function listQueues(
  managementUrl: string,
  vhost: string,
  options: ManagementRequestOptions = {},
): Promise<QueueInfo[]> {
  const response = await managementRequest(
    managementUrl,
    'GET',
    `/queues/${encodeURIComponent(vhost)}`,
    options,
  );
  const queues = (await response.json()) as QueueInfo[];
  return queues.sort((a, b) => a.name.localeCompare(b.name));
}

/** Names of every `tb_test_` vhost on the broker, whoever created them. */
export async function listTestVhosts(managementUrl = TEST_RABBITMQ_MANAGEMENT_URL): Promise<string[]> {
  return (await listTestVhostsWithDescription(managementUrl)).map((v) => v.name);
}

/**
 * Deletes `tb_test_` vhosts left behind by test processes that died before their teardown ran, and returns
 * their names. Never called automatically: run it by hand (or in CI before a run) when no other test run is
 * using the broker, since a younger-than-`olderThanMs` guard is all that protects a concurrent run.
 */
export async function deleteStaleTestVhosts(options: DeleteStaleTestVhostsOptions = {}): Promise<string[]> {
  const managementUrl = options.managementUrl ?? TEST_RABBITMQ_MANAGEMENT_URL;
  const olderThanMs = options.olderThanMs ?? 3_600_000;
  const now = Date.now();
  const deleted: string[] = [];
  for (const vhost of await listTestVhostsWithDescription(managementUrl, options)) {
    if (!isStaleTestVhost(vhost, olderThanMs, now)) continue;
    await deleteVhost(managementUrl, vhost.name, options);
    deleted.push(vhost.name);
  }
  return deleted;
}

/**
 * Whether deleteStaleTestVhosts would delete this vhost: a `tb_test_` one created at least `olderThanMs` ms
 * before `now` (Unix ms), or whose description carries no creation time.
 */
export function isStaleTestVhost(
  vhost: { name: string; description?: string },
  olderThanMs: number,
  now = Date.now(),
): boolean {
  if (!vhost.name.startsWith(TEST_VHOST_PREFIX)) return false;
  const createdAt = Date.parse(CREATED_AT_PATTERN.exec(vhost.description ?? '')?.[1] ?? '');
  return !Number.isFinite(createdAt) || now - createdAt >= olderThanMs;
}

async function listTestVhostsWithDescription(
  managementUrl: string,
  options: ManagementRequestOptions = {},
): Promise<{ name: string; description: string }[]> {
  const response = await managementRequest(managementUrl, 'GET', '/vhosts', options);
  const vhosts = (await response.json()) as { name: string; description?: string }[];
  return vhosts
    .filter((v) => v.name.startsWith(TEST_VHOST_PREFIX))
    .map((v) => ({ name: v.name, description: v.description ?? '' }));
}

async function getQueue(
  managementUrl: string,
  vhost: string,
  queue: string,
  options: ManagementRequestOptions,
): Promise<QueueInfo> {
  const path = `/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`;
  const response = await managementRequest(managementUrl, 'GET', path, options);
  return (await response.json()) as QueueInfo;
}

function pickStats(info: QueueInfo): QueueStats | undefined {
  const { messages, messages_ready, messages_unacknowledged, consumers } = info;
  if (
    typeof messages !== 'number' ||
    typeof messages_ready !== 'number' ||
    typeof messages_unacknowledged !== 'number'
  ) {
    return undefined;
  }
  // `consumers` is reported with the other counters, but default it rather than wait another interval for it.
  return { messages, messages_ready, messages_unacknowledged, consumers: consumers ?? 0 };
}

/**
 * One management API call. fetch refuses URLs that carry credentials, so they are moved from the configured
 * URL into a basic Authorization header; any path prefix of the base URL is kept.
 */
async function managementRequest(
  managementUrl: string,
  method: 'GET' | 'PUT' | 'DELETE',
  path: string,
  options: ManagementRequestOptions & { body?: unknown; allowNotFound?: boolean } = {},
): Promise<Response> {
  const base = new URL(managementUrl);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (base.username || base.password) {
    const credentials = `${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
    base.username = '';
    base.password = '';
  }
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const url = `${base.origin}${base.pathname.replace(/\/+$/, '')}/api${path}`;
  const response = await fetch(url, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  if (response.ok || (options.allowNotFound && response.status === 404)) return response;
  const text = await response.text().catch(() => '');
  throw new Error(`RabbitMQ management API ${method} /api${path} failed: ${response.status} ${text}`.trim());
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Names of the client connections open in a vhost, as the broker lists them now. */
export async function vhostConnections(
  managementUrl: string,
  vhost: string,
  options: ManagementRequestOptions = {},
): Promise<string[]> {
  const response = await managementRequest(
    managementUrl,
    'GET',
    `/vhosts/${encodeURIComponent(vhost)}/connections`,
    options,
  );
  const connections = (await response.json()) as Array<{ client_properties?: { connection_name?: string } }>;
  return connections.map((connection) => connection.client_properties?.connection_name ?? '(unnamed)');
}

/**
 * A RabbitMQ user of its own, with a password nobody else uses and every permission in `vhost`, deleted
 * on `teardown`: what a test that greps outputs for a password connects with.
 */
export async function createTestUser(
  teardown: Teardown,
  vhost: TestVhost,
): Promise<{ username: string; password: string }> {
  const username = `tb_test_user_${randomUUID().slice(0, 8)}`;
  const password = `Pw-${randomUUID()}`;
  await managementRequest(vhost.managementUrl, 'PUT', `/users/${encodeURIComponent(username)}`, {
    body: { password, tags: 'monitoring' },
  });
  teardown.after(() =>
    managementRequest(vhost.managementUrl, 'DELETE', `/users/${encodeURIComponent(username)}`, {
      allowNotFound: true,
    }),
  );
  await managementRequest(
    vhost.managementUrl,
    'PUT',
    `/permissions/${encodeURIComponent(vhost.vhost)}/${encodeURIComponent(username)}`,
    { body: { configure: '.*', write: '.*', read: '.*' } },
  );
  return { username, password };
}
