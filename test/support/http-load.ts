/**
 * Test support: drives an API over real HTTP with a fixed number of concurrent keep-alive clients and
 * records each request's correlation id, status and latency — what fault tests need to say afterwards
 * which requests got a response, and so which events must exist.
 */
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoadRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface LoadResult {
  index: number;
  correlationId: string;
  /** 0 when no response came (connection refused or reset). */
  status: number;
  latencyMs: number;
  /** Why no response came (the socket error's code or message), when `status` is 0. */
  error?: string;
}

export interface LoadOptions {
  /** Requests in all. */
  count: number;
  /** Requests in flight at once. @default 10 */
  concurrency?: number;
  /** The request number `index` (0-based). */
  request: (index: number) => LoadRequest;
  /** Prefix of the correlation ids, which are `<prefix>-<index>`. */
  correlationPrefix: string;
  /** Called with each result as it comes (to record responses before a crash, for example). */
  onResult?: (result: LoadResult) => void;
  /** Stop sending new requests once this returns true. */
  stop?: () => boolean;
  /** Requests started per second at most, paced evenly (open-loop while the API keeps up). @default unpaced */
  ratePerSecond?: number;
}

export async function runLoad(baseUrl: string, options: LoadOptions): Promise<LoadResult[]> {
  // An idle socket is closed here after 2 s, before the API's keep-alive timeout (5 s) closes it there:
  // otherwise a request sent on a socket the server is closing at that moment gets a reset, which the
  // tests would count as a request the API did not answer. (Node's agent ignores the server's
  // `Keep-Alive: timeout` hint when it has no timeout of its own.)
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency ?? 10, timeout: 2000 });
  const url = new URL(baseUrl);
  const results: LoadResult[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < options.count && !(options.stop?.() ?? false)) {
      const index = next++;
      if (options.ratePerSecond !== undefined) {
        const wait = started + (index * 1000) / options.ratePerSecond - performance.now();
        if (wait > 0) await sleep(wait);
        if (options.stop?.() ?? false) break;
      }
      const result = await send(
        agent,
        url,
        options.request(index),
        `${options.correlationPrefix}-${index}`,
        index,
      );
      results.push(result);
      options.onResult?.(result);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency ?? 10 }, worker));
  } finally {
    agent.destroy();
  }
  return results.sort((a, b) => a.index - b.index);
}

function send(agent: http.Agent, base: URL, spec: LoadRequest, correlationId: string, index: number) {
  return new Promise<LoadResult>((resolve) => {
    const started = process.hrtime.bigint();
    const body = spec.body === undefined ? undefined : JSON.stringify(spec.body);
    const request = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: spec.method,
        path: spec.path,
        headers: {
          'x-correlation-id': correlationId,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...spec.headers,
        },
      },
      (response) => {
        response.resume();
        response.on('end', () =>
          resolve({
            index,
            correlationId,
            status: response.statusCode ?? 0,
            latencyMs: Number(process.hrtime.bigint() - started) / 1e6,
          }),
        );
        response.on('error', (error) => resolve(unanswered(index, correlationId, error)));
      },
    );
    request.on('error', (error) => resolve(unanswered(index, correlationId, error)));
    request.end(body);
  });
}

function unanswered(index: number, correlationId: string, error: Error & { code?: string }): LoadResult {
  return { index, correlationId, status: 0, latencyMs: 0, error: error.code ?? error.message };
}

/** The p-th percentile (0–100) of the latencies, nearest-rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}
