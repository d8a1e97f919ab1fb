/**
 * The part of autocannon 8's programmatic API the benchmarks use. autocannon ships no types and
 * @types/autocannon is not a dependency; see node_modules/autocannon/README.md ("API", "Results").
 */
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  export interface RequestParams {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
  }

  export interface Request extends RequestParams {
    /** Called before every request; the body's Content-Length is computed from what it returns. */
    setupRequest?: (
      request: RequestParams,
      context: Record<string, unknown>,
    ) => RequestParams | null | undefined;
    onResponse?: (
      status: number,
      body: string,
      context: Record<string, unknown>,
      headers: Record<string, string>,
    ) => void;
  }

  /** One connection. */
  export interface Client {
    /** Replaces the sequence of requests this connection loops over. */
    setRequests(requests: Request[]): void;
  }

  export interface Options extends RequestParams {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    /** Seconds before a request counts as timed out (and as an error). */
    timeout?: number;
    pipelining?: number;
    title?: string;
    requests?: Request[];
    idReplacement?: boolean;
    /** A run before the measured one, whose results are only attached as `warmup`. */
    warmup?: { connections?: number; duration?: number };
    excludeErrorStats?: boolean;
    /** Requests per second over all connections (a fixed arrival rate); 0 = as fast as possible. */
    overallRate?: number;
    /** Requests per second of each connection. */
    connectionRate?: number;
    /** With a rate set, record latencies as they are, without the coordinated-omission correction. */
    ignoreCoordinatedOmission?: boolean;
    /** Called with each connection as it is created. */
    setupClient?: (client: Client) => void;
  }

  /** hdr-histogram-percentiles-obj: mean, spread and percentiles of one statistic. */
  export interface Histogram {
    average: number;
    mean: number;
    stddev: number;
    min: number;
    max: number;
    total: number;
    p0_001: number;
    p0_01: number;
    p0_1: number;
    p1: number;
    p2_5: number;
    p10: number;
    p25: number;
    p50: number;
    p75: number;
    p90: number;
    p97_5: number;
    p99: number;
    p99_9: number;
    p99_99: number;
    p99_999: number;
  }

  export interface Result {
    title?: string;
    url: string;
    connections: number;
    pipelining: number;
    /** Seconds actually run. */
    duration: number;
    samples: number;
    start: Date;
    finish: Date;
    /** Connection errors, timeouts included. */
    errors: number;
    timeouts: number;
    mismatches: number;
    non2xx: number;
    resets: number;
    '1xx': number;
    '2xx': number;
    '3xx': number;
    '4xx': number;
    '5xx': number;
    statusCodeStats: Record<string, { count: number }>;
    /** Milliseconds. */
    latency: Histogram & { totalCount: number };
    /** Requests per one-second sample. */
    requests: Histogram & { sent: number };
    /** Bytes per one-second sample. */
    throughput: Histogram;
    warmup?: Result;
  }

  export interface Instance extends EventEmitter, PromiseLike<Result> {
    /** Ends the run early; the promise still resolves with what was measured. */
    stop(): void;
  }

  export interface TrackOptions {
    outputStream?: NodeJS.WritableStream;
    renderProgressBar?: boolean;
    renderResultsTable?: boolean;
    renderLatencyTable?: boolean;
    /** A format of the `progress` package, e.g. `'running [:bar] :percent'`. */
    progressBarString?: string;
  }

  function autocannon(options: Options): Instance;
  namespace autocannon {
    /** Renders a run's progress bar (and, unless turned off, its results) on the output stream. */
    function track(instance: Instance, options?: TrackOptions): void;
  }
  export default autocannon;
}
