/**
 * The one place a process connects to RabbitMQ. Every connection — the publisher's, each consumer
 * runtime's, a DLQ replay's, `topology apply`'s, the queue inspector's — is opened by a BrokerSession, so
 * they all fail over the same way:
 *
 * - **Several nodes.** `RABBITMQ_URL` may list every node of a cluster. A connect tries them in turn and
 *   takes the first that answers, starting with the node of the last connection; once a connection is
 *   ended by the broker or the network (not by us), the next connect starts with the node after it, so a
 *   dead node is not the first one tried again.
 * - **A bounded connect.** Each node gets `connectTimeoutMs` for the TCP connect and the AMQP handshake:
 *   a black-holed host costs that, not the kernel's minutes of SYN retries.
 * - **Jittered backoff.** When every node failed (or the owner could not use the connection it got), the
 *   caller waits {@link reconnectDelay} before the next round: exponential, and random within its upper
 *   half, so that the many connections of a deployment that lost the same broker do not all come back
 *   in step. The owner says when a connection is in use ({@link BrokerSession.established}), which
 *   makes the next retry after its loss a quick one again.
 *
 * A session holds no connection itself: its owner keeps the connections it opens and decides what to do
 * when one closes (resend, resubscribe); the session only remembers where to go next.
 */
import type { ChannelModel } from 'amqplib';
import { redactCredentials, redactedMessage } from '../redact-credentials.ts';
import { BROKER_CONNECTION_DEFAULTS, connectToBroker } from './broker-connection.ts';

export interface BrokerSessionOptions {
  /** AMQP URLs of the nodes, tried in this order (at least one). */
  urls: readonly string[];
  /** Shown as the connections' name in the management UI, e.g. `telemetry-bus publisher`. */
  name: string;
  /** AMQP heartbeat interval, in seconds. @default {@link BROKER_SESSION_DEFAULTS} */
  heartbeatSeconds?: number;
  /** Time one node gets for the TCP connect and the AMQP handshake, in ms. @default {@link BROKER_SESSION_DEFAULTS} */
  connectTimeoutMs?: number;
  /** Upper bound of the first pause after every node failed, in ms. @default {@link BROKER_SESSION_DEFAULTS} */
  reconnectMinDelayMs?: number;
  /** Longest pause between two rounds, in ms. @default {@link BROKER_SESSION_DEFAULTS} */
  reconnectMaxDelayMs?: number;
}

/** The defaults of a session: a connection's, and the pauses between rounds over the nodes. */
export const BROKER_SESSION_DEFAULTS = {
  ...BROKER_CONNECTION_DEFAULTS,
  /** Upper bound of the first pause after every node failed, in milliseconds; it doubles per round. */
  reconnectMinDelayMs: 100,
  /** Longest pause between two rounds, in milliseconds. */
  reconnectMaxDelayMs: 5000,
} as const;

/** A connection and the node it is open on. */
export interface NodeConnection {
  connection: ChannelModel;
  /** `host:port` of the node, never its credentials. */
  node: string;
}

/** Every node was tried once and none answered; the message says why, node by node. */
export class BrokerUnreachableError extends Error {
  constructor(readonly failures: ReadonlyArray<{ node: string; reason: string }>) {
    super(
      failures.length === 1
        ? `RabbitMQ at ${failures[0]?.node} did not answer: ${failures[0]?.reason}`
        : `no RabbitMQ node answered: ${failures.map((failure) => `${failure.node} (${failure.reason})`).join('; ')}`,
    );
    this.name = 'BrokerUnreachableError';
  }
}

/**
 * Delay before retry round `attempt` (0-based), in ms: the ceiling `minMs · 2^attempt` (at most `maxMs`),
 * drawn uniformly from its upper half (full jitter would sometimes retry at once, and the many
 * connections of a deployment would still meet at the ceiling).
 *
 * | attempt | 0      | 1       | 2       | 3        | 4        | 5         | 6 and later |
 * | ------- | ------ | ------- | ------- | -------- | -------- | --------- | ----------- |
 * | delay   | 50–100 | 100–200 | 200–400 | 400–800  | 0.8–1.6 s | 1.6–3.2 s | 2.5–5 s     |
 *
 * (with the defaults, 100 ms and 5 s)
 */
export function reconnectDelay(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** `host:port` of an AMQP URL: how a node is named in logs, errors and `/health`. */
export function nodeLabel(url: string): string {
  try {
    const parsed = new URL(url);
    const port = parsed.port !== '' ? parsed.port : parsed.protocol === 'amqps:' ? '5671' : '5672';
    return `${parsed.hostname}:${port}`;
  } catch {
    return redactCredentials(url);
  }
}

export class BrokerSession {
  readonly #urls: readonly string[];
  readonly #labels: readonly string[];
  readonly #options: Required<Omit<BrokerSessionOptions, 'urls'>>;
  /** Index of the node the next connect tries first. */
  #preferred = 0;
  /** Rounds since the owner last had a connection in use (see {@link established}). */
  #failedRounds = 0;

  constructor(options: BrokerSessionOptions) {
    if (options.urls.length === 0) throw new RangeError('a broker session needs at least one URL');
    const { urls, ...rest } = options;
    this.#urls = [...urls];
    this.#labels = urls.map(nodeLabel);
    this.#options = {
      ...BROKER_SESSION_DEFAULTS,
      ...(Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== undefined)) as Partial<
        typeof rest
      >),
    } as Required<Omit<BrokerSessionOptions, 'urls'>>;
  }

  /** The nodes, as `host:port`, in the order they are tried. */
  get nodes(): readonly string[] {
    return this.#labels;
  }

  /** The node the next connect tries first, as `host:port`. */
  get preferredNode(): string {
    return this.#labels[this.#preferred] as string;
  }

  /**
   * Opens a connection on the first node that answers, trying each node once, the preferred one first.
   * Rejects with a {@link BrokerUnreachableError} when none does; the caller then waits
   * {@link retryDelay} before the next round. `name` overrides the session's connection name (a
   * process's second connection: the consumers' publishing one).
   */
  async connect(name = this.#options.name): Promise<NodeConnection> {
    const failures: Array<{ node: string; reason: string }> = [];
    const first = this.#preferred;
    for (let step = 0; step < this.#urls.length; step++) {
      const index = (first + step) % this.#urls.length;
      const node = this.#labels[index] as string;
      try {
        const connection = await connectToBroker(this.#urls[index] as string, {
          name,
          heartbeatSeconds: this.#options.heartbeatSeconds,
          connectTimeoutMs: this.#options.connectTimeoutMs,
        });
        this.#preferred = index;
        // Every error ends in 'close', which the owner handles: an owner without an 'error' listener of
        // its own must not crash the process (an EventEmitter throws an unheard 'error').
        connection.on('error', () => {});
        // Ended by the broker or the network (an error comes with the close): next time, start elsewhere.
        connection.once('close', (error?: unknown) => {
          if (error !== undefined && this.#preferred === index) {
            this.#preferred = (index + 1) % this.#urls.length;
          }
        });
        return { connection, node };
      } catch (error) {
        failures.push({ node, reason: redactedMessage(error) });
      }
    }
    // Every node failed: the next round starts after the one that was first this time.
    this.#preferred = (first + 1) % this.#urls.length;
    throw new BrokerUnreachableError(failures);
  }

  /**
   * The owner's connection is up and in use (its topology applied, its consumers subscribed): after
   * its loss the next round comes at once again. Until then every round counts as failed, so an owner
   * whose setup keeps failing on a node that accepts connections backs off too.
   */
  established(): void {
    this.#failedRounds = 0;
  }

  /** The pause before the next round, in ms: short after a lost connection, growing while rounds fail. */
  retryDelay(): number {
    return reconnectDelay(
      this.#failedRounds++,
      this.#options.reconnectMinDelayMs,
      this.#options.reconnectMaxDelayMs,
    );
  }
}
