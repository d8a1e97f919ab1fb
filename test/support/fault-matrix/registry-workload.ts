/**
 * Test support: the registry's clients for the fault matrix — the end-to-end benchmark's request mix
 * (bench/support/e2e-mix.ts: reads, filters, every kind of write, intended 404 and 400) sent over real
 * HTTP at a paced rate, remembering every request's correlation id and whether it got a response. Every
 * answered request emitted exactly one event, so the answered ids are the ground truth the matrix counts
 * the consumers' tables against.
 */
import { BLOCK, FILTER_QUERIES, type RequestKind } from '../../../bench/support/e2e-mix.ts';
import { seedModel } from '../../../bench/support/seed-models.ts';
import { type LoadRequest, type LoadResult, runLoad } from '../http-load.ts';

export interface WorkloadRunOptions {
  /** Requests per second. */
  ratePerSecond: number;
  /** How long to send, in ms (fewer if `stop` says so first). */
  durationMs: number;
  /** Requests in flight at most. @default 16 */
  concurrency?: number;
  /** Stop sending once this returns true (e.g. the API was killed). */
  stop?: () => boolean;
  /** Called with each result as it comes. */
  onResult?: (result: LoadResult) => void;
}

const modelPath = (id: string) => `/models/${encodeURIComponent(id)}`;

export class RegistryWorkload {
  /** Correlation id → HTTP status of every request that got a response. */
  readonly answered = new Map<string, number>();
  /** Requests sent that got no response (the API died or the connection was cut). */
  unanswered = 0;
  /** Why each unanswered request got no response (bounded by the requests sent). */
  readonly unansweredErrors: string[] = [];
  /** Answered with a status the mix did not intend (a 503 while PostgreSQL is down, say). */
  readonly unexpected = new Map<number, number>();
  #seeded: string[] = [];
  /** Models this workload asked to register and has not deactivated yet, oldest first. */
  readonly #registered: string[] = [];
  #runs = 0;
  #next = 0;

  /**
   * @param baseUrl where the API is; settable, since a restarted API listens elsewhere.
   * @param prefix of every correlation id and registered model id: unique per scenario.
   */
  constructor(
    public baseUrl: string,
    readonly apiKey: string,
    readonly prefix: string,
  ) {}

  /** Registers `count` models for the mix to read and update (answered requests, like any other). */
  async seed(count: number): Promise<void> {
    const results = await this.#send(count, 16, undefined, (index) => ({
      method: 'POST',
      path: '/models',
      body: { ...seedModel(index), model_id: `${this.prefix}/seed-${index}` },
    }));
    const failed = results.filter((result) => result.status !== 201);
    if (failed.length > 0) throw new Error(`seeding: ${failed.length} of ${count} not created`);
    this.#seeded = results.map((_, index) => `${this.prefix}/seed-${index}`);
  }

  /** Sends the mix at `ratePerSecond` for `durationMs`. */
  async run(options: WorkloadRunOptions): Promise<LoadResult[]> {
    if (this.#seeded.length === 0) throw new Error('seed() first');
    const count = Math.ceil((options.ratePerSecond * options.durationMs) / 1000);
    return this.#send(
      count,
      options.concurrency ?? 16,
      options,
      (index) => this.#request(BLOCK[index % BLOCK.length] as RequestKind, index),
      options.onResult,
    );
  }

  async #send(
    count: number,
    concurrency: number,
    pacing: WorkloadRunOptions | undefined,
    request: (index: number) => LoadRequest,
    onResult?: (result: LoadResult) => void,
  ): Promise<LoadResult[]> {
    const run = this.#runs++;
    return runLoad(this.baseUrl, {
      count,
      concurrency,
      ...(pacing === undefined ? {} : { ratePerSecond: pacing.ratePerSecond }),
      ...(pacing?.stop === undefined ? {} : { stop: pacing.stop }),
      correlationPrefix: `${this.prefix}-${run}`,
      request: (index) => {
        const spec = request(index);
        return { ...spec, headers: { 'x-api-key': this.apiKey, ...spec.headers } };
      },
      onResult: (result) => {
        if (result.status === 0) {
          this.unanswered++;
          this.unansweredErrors.push(`${result.correlationId}: ${result.error ?? 'no response'}`);
        } else this.answered.set(result.correlationId, result.status);
        onResult?.(result);
      },
    });
  }

  #request(kind: RequestKind, index: number): LoadRequest {
    const n = this.#next++;
    const seeded = this.#seeded[n % this.#seeded.length] as string;
    switch (kind) {
      case 'get':
        return { method: 'GET', path: modelPath(seeded) };
      case 'filter':
        return { method: 'GET', path: FILTER_QUERIES[n % FILTER_QUERIES.length] as string };
      case 'register': {
        const id = `${this.prefix}/new-${n}`;
        this.#registered.push(id);
        return { method: 'POST', path: '/models', body: { ...seedModel(n), model_id: id } };
      }
      case 'update':
        return { method: 'PATCH', path: modelPath(seeded), body: { context_window: 1000 + index } };
      case 'deactivate': {
        // The model registered two registrations ago: created by now, unless the request failed (then
        // this is a 404, an answered request and an event like any other).
        const id = this.#registered.length >= 2 ? (this.#registered.shift() as string) : seeded;
        return { method: 'POST', path: `${modelPath(id)}/deactivate` };
      }
      case 'missing (404)':
        return { method: 'GET', path: modelPath(`${this.prefix}/missing-${n}`) };
      case 'invalid (400)':
        return { method: 'POST', path: '/models', body: { ...seedModel(n), context_window: -5 } };
    }
  }
}
