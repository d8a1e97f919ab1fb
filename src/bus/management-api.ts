/**
 * The RabbitMQ management API of a cluster, for what only it can tell: a queue's unacknowledged
 * messages, its leader and members. Any node's API answers for the whole cluster, so a list of URLs
 * (`RABBITMQ_MANAGEMENT_URL`, one per node) is tried in turn, starting with the last one that answered,
 * each within a time-out. fetch refuses URLs with credentials: they go into a Basic header, never into
 * an error message.
 */
import { redactCredentials } from '../redact-credentials.ts';

export interface ManagementApiOptions {
  /** Base URLs with credentials (`http://user:password@host:15672`), tried in order; at least one. */
  urls: readonly string[];
  /** Time one URL gets to answer, in milliseconds. @default 2000 */
  timeoutMs?: number;
}

/** What the management API says about one queue; absent fields are unknown to it (a classic queue has no leader). */
export interface ManagementQueue {
  name: string;
  type?: string;
  messages_ready?: number;
  messages_unacknowledged?: number;
  consumers?: number;
  /** Quorum queues: the node of the leader, and of every member, and of the members online. */
  leader?: string;
  members?: string[];
  online?: string[];
  /** Classic queues: the node the queue lives on. */
  node?: string;
}

/** The answer, and which URL gave it (`host:port`). */
export interface ManagementAnswer<T> {
  value: T;
  node: string;
}

export class ManagementApi {
  readonly #urls: readonly string[];
  readonly #timeoutMs: number;
  /** Index of the URL that answered last: tried first next time. */
  #preferred = 0;

  constructor(options: ManagementApiOptions) {
    if (options.urls.length === 0) throw new RangeError('the management API needs at least one URL');
    this.#urls = options.urls;
    this.#timeoutMs = options.timeoutMs ?? 2000;
  }

  /** The queues of `vhost`, with the given columns, from the first URL that answers. */
  queues(vhost: string, columns: readonly string[]): Promise<ManagementAnswer<ManagementQueue[]>> {
    return this.#get(`api/queues/${encodeURIComponent(vhost)}?columns=${columns.join(',')}`);
  }

  async #get<T>(path: string): Promise<ManagementAnswer<T>> {
    const failures: string[] = [];
    const first = this.#preferred;
    for (let step = 0; step < this.#urls.length; step++) {
      const index = (first + step) % this.#urls.length;
      const base = new URL(this.#urls[index] as string);
      const node = base.host;
      try {
        const value = await request<T>(base, path, this.#timeoutMs);
        this.#preferred = index;
        return { value, node };
      } catch (error) {
        failures.push(`${node}: ${redactCredentials(describeFetchError(error))}`);
      }
    }
    throw new Error(`the management API did not answer (${failures.join('; ')})`);
  }
}

async function request<T>(base: URL, path: string, timeoutMs: number): Promise<T> {
  const authorization = `Basic ${Buffer.from(
    `${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`,
  ).toString('base64')}`;
  const url = new URL(
    path,
    `${base.origin}${base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`}`,
  );
  // The signal bounds the body's reading too, and aborts the request rather than leaving it running.
  const response = await fetch(url, {
    headers: { authorization, accept: 'application/json' },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`answered ${response.status}`);
  }
  return (await response.json()) as T;
}

/** fetch's "fetch failed" says nothing: the cause (ECONNREFUSED, a time-out) does. */
function describeFetchError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'no answer in time';
  const cause = error.cause as { code?: string; message?: string } | undefined;
  return cause === undefined ? error.message : (cause.code ?? cause.message ?? error.message);
}
