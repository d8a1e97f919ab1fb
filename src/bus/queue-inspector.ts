/**
 * Depths and consumer counts of the topology's queues, for `GET /health`. The management API gives all
 * of them (unacknowledged included) in one request; without it — `off`, or a stock broker without the
 * plugin, or no node's API answering — AMQP passive declares on a connection of the inspector's own give
 * ready messages and consumers, and the report says which source answered and why. After the management
 * API failed, AMQP answers alone for `managementRetryMs`, so a broker without the plugin costs one
 * refused request per half minute, not one per probe. Results are kept for a second and concurrent
 * callers share one lookup, so a health probe storm costs the broker nothing.
 */
import type { Channel, ChannelModel } from 'amqplib';
import { redactedMessage } from '../redact-credentials.ts';
import { withTimeout } from '../with-timeout.ts';
import { closeConnection, vhostOf } from './broker-connection.ts';
import { BrokerSession } from './broker-session.ts';
import { ManagementApi, type ManagementQueue } from './management-api.ts';

export interface QueueDepth {
  name: string;
  /** Absent when the queue does not exist (yet). */
  exists: boolean;
  messages_ready: number | null;
  /** Only the management API knows it; null over AMQP. */
  messages_unacknowledged: number | null;
  consumers: number | null;
}

export interface QueueReport {
  /** Which source answered (the last one asked, when none did). */
  source: 'management' | 'amqp';
  /** The node that answered (`host:port`), null when none did. */
  node: string | null;
  queues: QueueDepth[];
  /** Why the figures are missing, when the broker could not be asked. */
  error: string | null;
  /** Why AMQP answered in place of the management API (its error), null when it did not have to. */
  fallbackReason: string | null;
}

export interface QueueInspectorOptions {
  /** AMQP URLs of the nodes (their path names the vhost), tried in order. */
  amqpUrls: readonly string[];
  /** Management API base URLs with credentials, tried in order; empty to use AMQP only. */
  managementUrls: readonly string[];
  queues: readonly string[];
  /** How long a report is reused, in ms. @default 1000 */
  cacheMs?: number;
  /** Time allowed to each source (the management API, then AMQP) per lookup, in ms. @default 2000 */
  timeoutMs?: number;
  /** After the management API failed, how long AMQP answers alone before it is asked again, in ms. @default 30000 */
  managementRetryMs?: number;
}

export class QueueInspector {
  readonly #options: Required<QueueInspectorOptions>;
  readonly #management: ManagementApi | undefined;
  readonly #broker: BrokerSession;
  #cached: { at: number; report: QueueReport } | undefined;
  #pending: Promise<QueueReport> | undefined;
  #connection: { connection: ChannelModel; node: string } | undefined;
  /** The management API's last failure: AMQP answers alone until `managementRetryMs` after it. */
  #managementFailed: { at: number; reason: string } | undefined;

  constructor(options: QueueInspectorOptions) {
    this.#options = { cacheMs: 1000, timeoutMs: 2000, managementRetryMs: 30_000, ...options };
    this.#management =
      options.managementUrls.length === 0
        ? undefined
        : new ManagementApi({ urls: options.managementUrls, timeoutMs: this.#options.timeoutMs });
    this.#broker = new BrokerSession({
      urls: options.amqpUrls,
      name: 'telemetry-bus inspector',
      connectTimeoutMs: this.#options.timeoutMs,
    });
  }

  async report(): Promise<QueueReport> {
    const cached = this.#cached;
    if (cached !== undefined && Date.now() - cached.at < this.#options.cacheMs) return cached.report;
    this.#pending ??= this.#lookup().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  async close(): Promise<void> {
    const open = this.#connection;
    this.#connection = undefined;
    if (open !== undefined) await closeConnection(open.connection);
  }

  async #lookup(): Promise<QueueReport> {
    const report = (await this.#fromManagement()) ?? (await this.#fromAmqp());
    this.#cached = { at: Date.now(), report };
    return report;
  }

  /** The management API's report; undefined when it is off, failed a moment ago, or fails now. */
  async #fromManagement(): Promise<QueueReport | undefined> {
    const failed = this.#managementFailed;
    if (
      this.#management === undefined ||
      (failed !== undefined && Date.now() - failed.at < this.#options.managementRetryMs)
    ) {
      return undefined;
    }
    try {
      const { value: rows, node } = await this.#management.queues(
        vhostOf(this.#options.amqpUrls[0] as string),
        ['name', 'messages_ready', 'messages_unacknowledged', 'consumers'],
      );
      this.#managementFailed = undefined;
      return { source: 'management', node, queues: this.#depths(rows), error: null, fallbackReason: null };
    } catch (error) {
      this.#managementFailed = { at: Date.now(), reason: redactedMessage(error) };
      return undefined;
    }
  }

  async #fromAmqp(): Promise<QueueReport> {
    const fallbackReason = this.#managementFailed?.reason ?? null;
    try {
      const { queues, node } = await withTimeout(this.#viaAmqp(), this.#options.timeoutMs);
      return { source: 'amqp', node, queues, error: null, fallbackReason };
    } catch (error) {
      await this.close();
      return {
        source: 'amqp',
        node: null,
        queues: this.#options.queues.map((name) => ({
          name,
          exists: false,
          messages_ready: null,
          messages_unacknowledged: null,
          consumers: null,
        })),
        error:
          fallbackReason === null
            ? redactedMessage(error)
            : `${fallbackReason}; AMQP: ${redactedMessage(error)}`,
        fallbackReason,
      };
    }
  }

  #depths(rows: ReadonlyArray<ManagementQueue>): QueueDepth[] {
    const byName = new Map(rows.map((row) => [row.name, row]));
    return this.#options.queues.map((name) => {
      const row = byName.get(name);
      return {
        name,
        exists: row !== undefined,
        messages_ready: row?.messages_ready ?? null,
        messages_unacknowledged: row?.messages_unacknowledged ?? null,
        consumers: row?.consumers ?? null,
      };
    });
  }

  async #viaAmqp(): Promise<{ queues: QueueDepth[]; node: string }> {
    if (this.#connection === undefined) {
      const opened = await this.#broker.connect();
      opened.connection.on('error', () => {});
      opened.connection.on('close', () => {
        if (this.#connection === opened) this.#connection = undefined;
      });
      this.#connection = opened;
    }
    const { connection, node } = this.#connection;
    const depths: QueueDepth[] = [];
    let channel: Channel | undefined;
    for (const name of this.#options.queues) {
      channel ??= await connection.createChannel();
      channel.on('error', () => {});
      try {
        const { messageCount, consumerCount } = await channel.checkQueue(name);
        depths.push({
          name,
          exists: true,
          messages_ready: messageCount,
          messages_unacknowledged: null,
          consumers: consumerCount,
        });
      } catch {
        // A passive declare of a missing queue closes the channel: the next queue gets a new one.
        channel = undefined;
        depths.push({
          name,
          exists: false,
          messages_ready: null,
          messages_unacknowledged: null,
          consumers: null,
        });
      }
    }
    await channel?.close().catch(() => {});
    return { queues: depths, node };
  }
}
