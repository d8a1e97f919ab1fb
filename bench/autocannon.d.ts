/**
 * The part of autocannon 8's API the benchmarks use (bench/support/load.ts, and the `Request` objects of
 * the paced generator). autocannon ships no types; @types/autocannon describes 7.x.
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
    setRequests(requests: Request[]): void;
  }

  export interface Options extends RequestParams {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    /** Seconds. */
    timeout?: number;
    title?: string;
    requests?: Request[];
    setupClient?: (client: Client) => void;
  }

  export interface Result {
    /** Seconds. */
    duration: number;
    errors: number;
    timeouts: number;
    statusCodeStats: Record<string, { count: number }>;
  }

  /** Resolves with the result; emits 'response' (client, status, bytes, ms) for each response. */
  export interface Instance extends EventEmitter, PromiseLike<Result> {
    stop(): void;
  }

  export default function autocannon(options: Options): Instance;
}
