/**
 * Depths and consumer counts of the topology's queues, for `GET /health`. The management API gives all
 * of them (unacknowledged included) in one request; without it, AMQP passive declares on a connection of
 * the inspector's own give ready messages and consumers. Results are kept for a second and concurrent
 * callers share one lookup, so a health probe storm costs the broker nothing.
 */
import type { Channel, ChannelModel } from 'amqplib';
import { withTimeout } from '../with-timeout.ts';
import { closeConnection, connectToBroker } from './broker-connection.ts';

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
  source: 'management' | 'amqp';
  queues: QueueDepth[];
  /** Why the figures are missing, when the broker could not be asked. */
  error: string | null;
}

export interface QueueInspectorOptions {
  /** AMQP URL (its path names the vhost). */
  amqpUrl: string;
  /** Management API base URL with credentials, or '' to use AMQP. */
  managementUrl: string;
  queues: readonly string[];
  /** How long a report is reused, in ms. @default 1000 */
  cacheMs?: number;
  /** Time allowed for one lookup, in ms. @default 2000 */
  timeoutMs?: number;
}

export function vhostOf(amqpUrl: string): string {
  const path = new URL(amqpUrl).pathname;
  return path.length > 1 ? decodeURIComponent(path.slice(1)) : '/';
}

export class QueueInspector {
  readonly #options: Required<QueueInspectorOptions>;
  #cached: { at: number; report: QueueReport } | undefined;
  #pending: Promise<QueueReport> | undefined;
  #connection: ChannelModel | undefined;

  constructor(options: QueueInspectorOptions) {
    this.#options = { cacheMs: 1000, timeoutMs: 2000, ...options };
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
    const connection = this.#connection;
    this.#connection = undefined;
    if (connection !== undefined) await closeConnection(connection);
  }

  async #lookup(): Promise<QueueReport> {
    const source = this.#options.managementUrl === '' ? 'amqp' : 'management';
    let report: QueueReport;
    try {
      const queues = await withTimeout(
        source === 'management' ? this.#viaManagement() : this.#viaAmqp(),
        this.#options.timeoutMs,
      );
      report = { source, queues, error: null };
    } catch (error) {
      if (source === 'amqp') await this.close();
      report = {
        source,
        queues: this.#options.queues.map((name) => ({
          name,
          exists: false,
          messages_ready: null,
          messages_unacknowledged: null,
          consumers: null,
        })),
        error: error instanceof Error ? error.message : String(error),
      };
    }
    this.#cached = { at: Date.now(), report };
    return report;
  }

  async #viaManagement(): Promise<QueueDepth[]> {
    const base = new URL(this.#options.managementUrl);
    const authorization = `Basic ${Buffer.from(
      `${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`,
    ).toString('base64')}`;
    base.username = '';
    base.password = '';
    const vhost = encodeURIComponent(vhostOf(this.#options.amqpUrl));
    const url = new URL(
      `api/queues/${vhost}?columns=name,messages_ready,messages_unacknowledged,consumers`,
      base.href.endsWith('/') ? base.href : `${base.href}/`,
    );
    const response = await fetch(url, { headers: { authorization } });
    if (!response.ok) throw new Error(`management API answered ${response.status}`);
    const rows = (await response.json()) as Array<{
      name: string;
      messages_ready?: number;
      messages_unacknowledged?: number;
      consumers?: number;
    }>;
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

  async #viaAmqp(): Promise<QueueDepth[]> {
    if (this.#connection === undefined) {
      const connection = await connectToBroker(this.#options.amqpUrl, { name: 'telemetry-bus inspector' });
      connection.on('error', () => {});
      connection.on('close', () => {
        if (this.#connection === connection) this.#connection = undefined;
      });
      this.#connection = connection;
    }
    const connection = this.#connection;
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
    return depths;
  }
}
