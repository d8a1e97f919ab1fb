/**
 * Runs the publisher in a thread of its own (./publisher-thread.ts) for the API's thread, which keeps
 * only the spool's appends: this side starts the thread, applies what it reports (the confirmed offset
 * to the spool, confirm counts to the loss ledger, log lines to the logger), answers for its status,
 * restarts it with backoff when it crashes (the API keeps serving; events wait in the spool), and stops
 * it within the shutdown budget.
 */
import type { EventLoopUtilization } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import { redactedMessage as describe } from '../../redact-credentials.ts';
import { startWorker } from '../../start-worker.ts';
import { reconnectDelay } from '../broker-session.ts';
import type { LedgerCounts } from '../ledger-counts.ts';
import type { Spool } from '../spool/spool.ts';
import type { SpoolTail } from '../spool/spool-tail.ts';
import type {
  LatencyRecorder,
  PublisherCounters,
  PublisherLogger,
  PublisherStatus,
} from '../spool-publisher.ts';
import { SPOOL_PUBLISHER_DEFAULTS, zeroCounters } from '../spool-publisher.ts';
import type { Topology } from '../topology.ts';
import type { FromPublisherThread, PublisherThreadData, ToPublisherThread } from './messages.ts';

export type PublisherThreadState = 'starting' | 'running' | 'restarting' | 'stopped';

export interface PublisherThreadStatus {
  state: PublisherThreadState;
  /** Since when the state holds, ISO-8601. */
  since: string;
  /** Restarts after a crash since the process started. */
  restarts: number;
  /** Why the thread last crashed, or null. */
  lastError: string | null;
  /** The running thread's OS thread id (`/proc/<pid>/task/<tid>`, named `tb-publisher`); null when none runs or not on Linux. */
  tid: number | null;
}

export interface PublisherThreadOptions {
  spool: Spool;
  tail: SpoolTail;
  urls: readonly string[];
  topology: Topology;
  /** Passed to the thread's SpoolPublisher (its defaults apply when undefined). */
  window?: number | undefined;
  confirmTimeoutMs?: number | undefined;
  /**
   * Time the thread waits after it is woken by appends before it reads them, in ms: events that arrive
   * meanwhile go out in the same socket write and broker round. @default 0
   */
  lingerMs?: number | undefined;
  heartbeatSeconds?: number | undefined;
  logger?: PublisherLogger | undefined;
  ledger?: LedgerCounts | undefined;
  /** Where the thread's confirms' emit-to-confirm latencies are observed. */
  latency?: LatencyRecorder | undefined;
  /** Upper bound of the first restart delay after a crash, in ms; it doubles per crash. @default 100 */
  restartMinDelayMs?: number;
  /** Longest restart delay, in ms. @default 5000 */
  restartMaxDelayMs?: number;
}

/** A thread that ran this long before crashing is restarted after the shortest delay again, in ms. */
const STABLE_AFTER_MS = 30_000;
/** Time the thread gets beyond the stop budget to report and exit before it is terminated, in ms. */
const STOP_GRACE_MS = 1000;

export class PublisherThread {
  readonly #options: PublisherThreadOptions;
  readonly #logger: PublisherLogger | undefined;
  #worker: Worker | undefined;
  #incarnation = 0;
  #startedAt = 0;
  #crashesInARow = 0;
  #state: PublisherThreadState = 'starting';
  #since = Date.now();
  #lastError: string | null = null;
  #restartTimer: NodeJS.Timeout | undefined;
  #stopping = false;
  /** The last status the running thread reported. */
  #status: PublisherStatus;
  /** Counters of the threads before this one. */
  #base: PublisherCounters = zeroCounters();
  #stopped: ((left: number) => void) | undefined;
  /** The running thread's tid, as it reported it. */
  #tid: number | null = null;

  constructor(options: PublisherThreadOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#status = {
      state: 'connecting',
      node: null,
      since: new Date().toISOString(),
      lastError: null,
      unconfirmed: 0,
      window: options.window ?? SPOOL_PUBLISHER_DEFAULTS.window,
      counters: zeroCounters(),
    };
  }

  start(): void {
    const options = this.#options;
    const data: PublisherThreadData = {
      directory: options.spool.directory,
      tailBuffer: options.tail.buffer,
      confirmedOffset: options.spool.stats().confirmedOffset,
      countLedger: options.ledger !== undefined,
      incarnation: this.#incarnation,
      urls: options.urls,
      topology: options.topology,
      window: options.window,
      confirmTimeoutMs: options.confirmTimeoutMs,
      lingerMs: options.lingerMs,
      heartbeatSeconds: options.heartbeatSeconds,
    };
    const worker = startWorker('./publisher-thread', import.meta.url, {
      workerData: data,
      name: 'tb-publisher',
      // None of the process's own flags but the CPU profiler's: a preload meant for the request thread
      // (`--import` of a probe or an APM agent) would load again in this thread, and a `.ts` one cannot
      // load here at all (Node 20 gives a thread no loader hooks), crashing the thread at every start.
      // `--cpu-prof` is per thread: kept, a profiled API writes this thread's profile beside its own.
      execArgv: process.execArgv.filter((flag) => /^--cpu-prof($|-dir=|-interval=)/.test(flag)),
    });
    this.#worker = worker;
    this.#startedAt = Date.now();
    this.#setState('running');
    worker.on('message', (message: FromPublisherThread) => this.#onMessage(message));
    worker.on('error', (error) => {
      this.#lastError = describe(error);
      this.#logger?.error({ err: this.#lastError }, 'the publisher thread crashed; events wait in the spool');
    });
    worker.on('exit', (code) => this.#onExit(worker, code));
  }

  /** The publisher's status as the thread last reported it, its counters summed over every thread. */
  status(): PublisherStatus {
    const status = this.#status;
    const counters = { ...status.counters };
    for (const key of Object.keys(counters) as (keyof PublisherCounters)[]) counters[key] += this.#base[key];
    const running = this.#state === 'running' || this.#state === 'stopped';
    return {
      ...status,
      state: running ? status.state : 'disconnected',
      node: running ? status.node : null,
      counters,
    };
  }

  threadStatus(): PublisherThreadStatus {
    return {
      state: this.#state,
      since: new Date(this.#since).toISOString(),
      restarts: this.#incarnation,
      lastError: this.#lastError,
      tid: this.#state === 'running' ? this.#tid : null,
    };
  }

  /** The running thread's event-loop utilisation since it started, and which start it is. */
  eventLoopUtilization(): { utilization: EventLoopUtilization; incarnation: number } | undefined {
    const worker = this.#worker;
    if (worker === undefined || this.#state !== 'running') return undefined;
    return { utilization: worker.performance.eventLoopUtilization(), incarnation: this.#incarnation };
  }

  /**
   * Has the thread send what the spool holds for up to `timeoutMs`, then disconnect and exit. Resolves
   * with the number of records left unconfirmed in the spool (sent by the next start).
   */
  async stop(timeoutMs: number): Promise<number> {
    this.#stopping = true;
    clearTimeout(this.#restartTimer);
    const worker = this.#worker;
    if (worker !== undefined) {
      const stopped = new Promise<number | undefined>((resolve) => {
        this.#stopped = resolve;
        worker.once('exit', () => resolve(undefined));
      });
      worker.postMessage({ kind: 'stop', timeoutMs } satisfies ToPublisherThread);
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), timeoutMs + STOP_GRACE_MS);
      });
      await Promise.race([stopped, deadline]);
      clearTimeout(timer);
      await worker.terminate();
    }
    this.#worker = undefined;
    this.#tid = null;
    this.#setState('stopped');
    this.#status = { ...this.#status, state: 'stopped', node: null };
    return this.#options.spool.stats().unconfirmed;
  }

  #onMessage(message: FromPublisherThread): void {
    switch (message.kind) {
      case 'started':
        this.#tid = message.tid;
        return;
      case 'progress':
        this.#options.spool.confirm(message.confirmedOffset);
        if (message.ledger.length > 0) this.#options.ledger?.restore(message.ledger);
        this.#observeLatencies(message.latency);
        this.#status = message.status;
        return;
      case 'log':
        this.#logger?.[message.level](message.object, message.message);
        return;
      case 'damage':
        this.#options.spool.reportDamage(message.segmentFirstOffset, message.position, message.damage);
        return;
      case 'stopped':
        this.#stopped?.(message.left);
        return;
    }
  }

  #observeLatencies(pairs: Float64Array): void {
    const latency = this.#options.latency;
    if (latency === undefined) return;
    for (let index = 0; index + 1 < pairs.length; index += 2)
      latency.observe(pairs[index] as number, pairs[index + 1] as number);
  }

  #onExit(worker: Worker, code: number): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    this.#tid = null;
    for (const key of Object.keys(this.#base) as (keyof PublisherCounters)[])
      this.#base[key] += this.#status.counters[key];
    // What the thread had in flight is sent again by the next one.
    this.#base.resent += this.#status.unconfirmed;
    this.#status = { ...this.#status, counters: zeroCounters(), unconfirmed: 0, node: null };
    if (this.#stopping) return;
    this.#lastError ??= `exited with code ${code}`;
    if (Date.now() - this.#startedAt >= STABLE_AFTER_MS) this.#crashesInARow = 0;
    const delay = reconnectDelay(
      this.#crashesInARow++,
      this.#options.restartMinDelayMs ?? 100,
      this.#options.restartMaxDelayMs ?? 5000,
    );
    this.#setState('restarting');
    this.#logger?.warn({ code, restartInMs: delay }, 'restarting the publisher thread');
    this.#restartTimer = setTimeout(() => {
      if (this.#stopping) return;
      this.#incarnation++;
      this.start();
    }, delay);
  }

  #setState(state: PublisherThreadState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#since = Date.now();
  }
}
