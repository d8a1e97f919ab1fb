/**
 * The live dashboard's producer: one timer, ticking once a second while at least one client listens
 * (none when nobody does), builds one snapshot and hands the same serialised text to every listener, so
 * a hundred open dashboards cost what one does.
 *
 * A tick never waits on I/O. In-process figures (the live window, the bus's counters, recent errors) are
 * read directly; what needs PostgreSQL or the broker is a {@link BackgroundValue}: the tick starts a
 * refresh and sends the last value it has, marked stale when its load failed or is late. So the feed
 * keeps ticking through a PostgreSQL or RabbitMQ outage, and says which one is down.
 */
import type { EventBusStatus } from '../bus/event-bus.ts';
import type { QueueReport } from '../bus/queue-inspector.ts';
import type { LedgerWindow } from '../ledger/ledger-query.ts';
import type { EventLoopWindow } from '../prometheus/event-loop-health.ts';
import type { WindowPercentiles } from '../sliding-histogram.ts';
import { type BackgroundReading, BackgroundValue } from './background-value.ts';
import type { LivePoint, LiveWindow } from './live-window.ts';
import type { RecentError, RecentErrors } from './recent-errors.ts';

/** Where the feed's figures come from; each may be absent (telemetry off, no broker). */
export interface DashboardSources {
  window: LiveWindow;
  errors: RecentErrors;
  /** The bus's counters, when telemetry is on. */
  busStatus?: () => EventBusStatus;
  /** Emit-to-confirm latency over the last minute, when telemetry is on. */
  publishLatency?: (nowMs: number) => WindowPercentiles;
  /** The threads' event-loop delay and utilisation. */
  eventLoop?: () => EventLoopWindow;
  /** Queue depths and consumers (may ask the broker). */
  queues?: () => Promise<QueueReport>;
  /** Resolves when PostgreSQL answers a trivial query. */
  pingDatabase: () => Promise<unknown>;
  /** Dead letters not replayed yet. */
  deadLetters: () => Promise<number>;
  /** The loss ledger of a window. */
  ledger: (from: Date, to: Date) => Promise<LedgerWindow>;
}

export interface DashboardFeedOptions {
  /** Time between snapshots, in ms. @default 1000 */
  intervalMs?: number;
  /** A PostgreSQL or broker lookup slower than this is reported stale, in ms. @default 1000 */
  lookupTimeoutMs?: number;
  /** Time between dead-letter counts and loss-ledger reads, in ms. @default 5000 */
  slowRefreshMs?: number;
  /** Loss ledger window, in ms. @default 15 min */
  ledgerWindowMs?: number;
  /** Seconds of traffic repeated in every snapshot, so a late tick loses no point. @default 5 */
  overlapSeconds?: number;
}

export type DependencyState = 'up' | 'down' | 'blocked' | 'off' | 'unknown';

/** What every tick sends. */
export interface DashboardSnapshot {
  at: string;
  checks: { postgres: DependencyState; broker: DependencyState };
  /** The last seconds of traffic (from the live window), oldest first. */
  traffic: LivePoint[];
  publisher: {
    state: string;
    since: string;
    last_error: string | null;
    unconfirmed: number;
    confirmed: number;
    /** Emit to broker confirm over the last minute (as in GET /health). */
    latency: WindowPercentiles | null;
  } | null;
  events: { emitted: number; dropped: Record<string, number>; unpublished: number } | null;
  spool: { bytes: number; segments: number } | null;
  event_loop: EventLoopWindow | null;
  queues: BackgroundReading<QueueReport> | null;
  dead_letters: BackgroundReading<number>;
  ledger: BackgroundReading<LedgerWindow>;
  recent_errors: RecentError[];
}

export type FeedListener = (text: string) => void;

const DEFAULTS = {
  intervalMs: 1000,
  lookupTimeoutMs: 1000,
  slowRefreshMs: 5000,
  ledgerWindowMs: 15 * 60_000,
  overlapSeconds: 5,
} as const;

export class DashboardFeed {
  readonly #sources: DashboardSources;
  readonly #options: Required<DashboardFeedOptions>;
  readonly #listeners = new Set<FeedListener>();
  readonly #database: BackgroundValue<true>;
  readonly #queues: BackgroundValue<QueueReport> | undefined;
  readonly #deadLetters: BackgroundValue<number>;
  readonly #ledger: BackgroundValue<LedgerWindow>;
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;

  constructor(sources: DashboardSources, options: DashboardFeedOptions = {}) {
    this.#sources = sources;
    this.#options = { ...DEFAULTS, ...options };
    const { intervalMs, lookupTimeoutMs, slowRefreshMs, ledgerWindowMs } = this.#options;
    this.#database = new BackgroundValue({
      load: () => sources.pingDatabase().then(() => true as const),
      refreshMs: intervalMs,
      timeoutMs: lookupTimeoutMs,
    });
    const queues = sources.queues;
    this.#queues =
      queues === undefined
        ? undefined
        : new BackgroundValue({
            // The inspector reports a broker it cannot reach in its `error`: that too is stale.
            load: async () => {
              const report = await queues();
              if (report.error !== null) throw new Error(report.error);
              return report;
            },
            refreshMs: intervalMs,
            timeoutMs: lookupTimeoutMs,
          });
    this.#deadLetters = new BackgroundValue({
      load: sources.deadLetters,
      refreshMs: slowRefreshMs,
      timeoutMs: lookupTimeoutMs,
    });
    this.#ledger = new BackgroundValue({
      load: () => {
        const to = new Date();
        return sources.ledger(new Date(to.getTime() - ledgerWindowMs), to);
      },
      refreshMs: slowRefreshMs,
      timeoutMs: lookupTimeoutMs,
    });
  }

  /** Listeners now. */
  get listeners(): number {
    return this.#listeners.size;
  }

  /** Snapshots built since the feed was made (tests check that an idle feed does no work). */
  get ticks(): number {
    return this.#ticks;
  }

  /** Adds a listener; the first one starts the timer. Returns the function that removes it. */
  subscribe(listener: FeedListener): () => void {
    this.#listeners.add(listener);
    if (this.#timer === undefined) {
      this.#refresh(Date.now());
      this.#timer = setInterval(() => this.#tick(), this.#options.intervalMs);
      // A dashboard left open must not keep the process alive on shutdown.
      this.#timer.unref();
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  /** Stops the timer (the next subscriber starts it again). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The full history of the live window, for a client that just connected. */
  history(nowMs = Date.now()): LivePoint[] {
    return this.#sources.window.points(nowMs);
  }

  /** Builds a snapshot now (without waiting for any lookup). */
  snapshot(nowMs = Date.now()): DashboardSnapshot {
    const status = this.#sources.busStatus?.();
    const database = this.#database.read(nowMs);
    const queues = this.#queues?.read(nowMs) ?? null;
    const publisher = status?.publisher;
    return {
      at: new Date(nowMs).toISOString(),
      checks: {
        postgres: database.error !== null ? 'down' : database.updated_at === null ? 'unknown' : 'up',
        broker: brokerState(publisher?.state),
      },
      traffic: this.#sources.window.points(nowMs, Math.floor(nowMs / 1000) - this.#options.overlapSeconds),
      publisher:
        publisher === undefined
          ? null
          : {
              state: publisher.state,
              since: publisher.since,
              last_error: publisher.lastError,
              unconfirmed: publisher.unconfirmed,
              confirmed: publisher.counters.confirmed,
              latency: this.#sources.publishLatency?.(nowMs) ?? null,
            },
      events:
        status === undefined
          ? null
          : { emitted: status.emitted, dropped: status.dropped, unpublished: status.spool.unconfirmed },
      spool: status === undefined ? null : { bytes: status.spool.bytes, segments: status.spool.segments },
      event_loop: this.#sources.eventLoop?.() ?? null,
      queues,
      dead_letters: this.#deadLetters.read(nowMs),
      ledger: this.#ledger.read(nowMs),
      recent_errors: this.#sources.errors.list(),
    };
  }

  #refresh(nowMs: number): void {
    this.#database.refresh(nowMs);
    this.#queues?.refresh(nowMs);
    this.#deadLetters.refresh(nowMs);
    this.#ledger.refresh(nowMs);
  }

  #tick(): void {
    const now = Date.now();
    this.#ticks++;
    this.#refresh(now);
    const text = JSON.stringify(this.snapshot(now));
    for (const listener of this.#listeners) {
      try {
        listener(text);
      } catch {
        // One broken client must not stop the others' updates; its stream's own close removes it.
      }
    }
  }
}

function brokerState(state: string | undefined): DependencyState {
  if (state === undefined) return 'off';
  if (state === 'connected') return 'up';
  return state === 'blocked' ? 'blocked' : 'down';
}
