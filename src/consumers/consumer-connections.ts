/**
 * The consumer runtime's two AMQP connections: one to consume, and one to publish retries and dead
 * letters (never the API's publisher), both with heartbeats and on the same node; the topology declared
 * and a confirm channel opened on the second. When either goes, `lost` resolves and the runtime reopens
 * both on the next node that answers (../bus/broker-session.ts), with the session's back-off between
 * rounds.
 */
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { applyTopology } from '../bus/apply-topology.ts';
import { closeConnection } from '../bus/broker-connection.ts';
import { BrokerSession } from '../bus/broker-session.ts';
import type { Topology } from '../bus/topology.ts';

export interface ConsumerConnectionsOptions {
  urls: readonly string[];
  topology: Topology;
  heartbeatSeconds: number;
  reconnectMinDelayMs: number;
}

export class ConsumerConnections {
  readonly #topology: Topology;
  readonly #broker: BrokerSession;
  #consuming: ChannelModel | undefined;
  #publishing: ChannelModel | undefined;
  #confirm: ConfirmChannel | undefined;
  #lost: (() => void) | undefined;

  constructor(options: ConsumerConnectionsOptions) {
    this.#topology = options.topology;
    this.#broker = new BrokerSession({
      urls: options.urls,
      name: 'telemetry-bus worker',
      heartbeatSeconds: options.heartbeatSeconds,
      reconnectMinDelayMs: options.reconnectMinDelayMs,
    });
  }

  /**
   * Opens both connections, declares the topology and opens the confirm channel. `lost` resolves when
   * either connection closes (or {@link lose} is called); on a throw, call {@link close}.
   */
  async open(): Promise<{ consuming: ChannelModel; node: string; lost: Promise<void> }> {
    const lost = new Promise<void>((resolve) => {
      this.#lost = resolve;
    });
    const { connection: consuming, node } = await this.#broker.connect();
    this.#consuming = consuming;
    consuming.on('error', () => {});
    consuming.on('close', () => this.#lost?.());
    // The same node first: the session prefers the node of its last connection.
    const { connection: publishing } = await this.#broker.connect('telemetry-bus worker publisher');
    this.#publishing = publishing;
    publishing.on('error', () => {});
    publishing.on('close', () => this.#lost?.());
    await applyTopology(publishing, this.#topology);
    this.#confirm = await publishing.createConfirmChannel();
    this.#confirm.on('error', () => {});
    return { consuming, node, lost };
  }

  /** The connections are up and every consumer subscribed: the next failure starts the back-off afresh. */
  established(): void {
    this.#broker.established();
  }

  /** The pause before the next round of connection attempts, in ms. */
  retryDelay(): number {
    return this.#broker.retryDelay();
  }

  /** The channel retries and dead letters are published on; undefined while disconnected. */
  get confirm(): ConfirmChannel | undefined {
    return this.#confirm;
  }

  /** Whether `connection` is the current consuming connection (not one closed since). */
  isConsuming(connection: ChannelModel): boolean {
    return this.#consuming === connection;
  }

  /** Treats the connections as lost (a consumer could not subscribe again on them): they are reopened. */
  lose(): void {
    this.#lost?.();
  }

  async close(): Promise<void> {
    this.#confirm = undefined;
    for (const connection of [this.#consuming, this.#publishing]) {
      if (connection === undefined) continue;
      await closeConnection(connection);
    }
    this.#consuming = undefined;
    this.#publishing = undefined;
  }
}
