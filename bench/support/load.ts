/**
 * One load phase against the API, with either generator, and one result shape for both: `{ rate }`, the
 * paced open-model generator (paced-load.ts) for fixed-rate phases; `{ connections }`, autocannon as fast
 * as that many connections go, for maximum-throughput phases, with every response time kept for exact
 * percentiles. Requests are autocannon `Request` sequences, one per lane or connection.
 */
import autocannon, { type Client, type Request } from 'autocannon';
import { pacedLoad } from './paced-load.ts';
import { interruptible, stoppable, throwIfInterrupted } from './settings.ts';
import { type Distribution, distribution } from './stats.ts';

export interface LoadResult {
  generator: 'paced' | 'autocannon';
  targetRate: number | null;
  connections: number | null;
  durationS: number;
  responses: number;
  /** Responses per second over the phase. */
  requestsPerSec: number;
  /** Paced: 1 − achieved ÷ target (0 = the target was met); null for max phases. */
  shortfall: number | null;
  /** Paced: from the intended send time; autocannon: from the send (float ms, exact). */
  latencyMs: Distribution;
  /** Paced: how late requests went out behind their intended time (ms). */
  sendLagMs: Distribution | null;
  statusCodes: Record<string, number>;
  errors: number;
  timeouts: number;
}

export async function runLoad(spec: {
  url: string;
  key: string;
  durationS: number;
  /** The sequence of lane `lane` of `lanes`. */
  requests: (lane: number, lanes: number) => Request[];
  /** Paced at this many req/s (over 10 lanes) … */
  rate?: number;
  /** … or as fast as this many connections go (autocannon). @default 50 */
  connections?: number;
  /** Shown in autocannon's progress bar. */
  label?: string;
}): Promise<LoadResult> {
  const headers = { 'x-api-key': spec.key };
  if (spec.rate !== undefined) {
    const lanes = Array.from({ length: 10 }, (_, lane) => spec.requests(lane, 10));
    const { sent: _, ...result } = await interruptible(
      pacedLoad({ url: spec.url, rate: spec.rate, durationS: spec.durationS, headers, lanes }),
    );
    throwIfInterrupted();
    return result;
  }
  const connections = spec.connections ?? 50;
  let client = 0;
  const samples: number[] = [];
  const instance = autocannon({
    url: spec.url,
    title: spec.label,
    connections,
    duration: spec.durationS,
    timeout: 10,
    headers,
    requests: spec.requests(0, connections),
    setupClient: (c: Client) => c.setRequests(spec.requests(client++, connections)),
  });
  instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) =>
    samples.push(ms),
  );
  const result = await stoppable(
    () => instance.stop(),
    async () => await instance,
  );
  throwIfInterrupted();
  const exact = distribution(samples, 1, 3);
  return {
    generator: 'autocannon',
    targetRate: null,
    connections,
    durationS: result.duration,
    responses: exact.count,
    requestsPerSec: Math.round((10 * exact.count) / result.duration) / 10,
    shortfall: null,
    latencyMs: exact,
    sendLagMs: null,
    statusCodes: Object.fromEntries(
      Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count]),
    ),
    errors: result.errors,
    timeouts: result.timeouts,
  };
}
