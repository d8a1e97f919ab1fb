/**
 * How busy the API process's threads are, from perf_hooks: the request thread's event-loop delay (how
 * long a ready callback — a request — waited for the loop) and each thread's event-loop utilisation
 * (the share of time its loop was running code rather than waiting). The publisher thread's utilisation
 * is read from the API's side (`worker.performance`), so asking costs that thread nothing.
 *
 * Figures are over fixed windows: the last complete one is shown (GET /health, the dashboard,
 * `telemetry_event_loop_utilization`), so two readers a second apart see the same numbers.
 */
import { type EventLoopUtilization, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

export interface EventLoopHealthOptions {
  /** The publisher thread's cumulative utilisation and which start of the thread it is; undefined when none runs. */
  publisherThread?: () => { utilization: EventLoopUtilization; incarnation: number } | undefined;
  /** Length of a window, in ms. @default 10000 */
  windowMs?: number;
}

export interface EventLoopWindow {
  /** Length of the window, in seconds. */
  window_s: number;
  request_thread: {
    /** Event-loop delay percentiles, in ms: how late a 10 ms timer fired. */
    delay_ms: { p50: number; p99: number; max: number };
    /** Share of the window the loop was busy, 0–1. */
    utilization: number;
  };
  /** Null when the bus is off or publishes on the request thread (or the thread was restarting). */
  publisher_thread: { utilization: number } | null;
}

const DEFAULT_WINDOW_MS = 10_000;
/** Sampling resolution of the delay histogram, in ms. */
const RESOLUTION_MS = 10;
const round = (value: number, digits: number) => Math.round(value * 10 ** digits) / 10 ** digits;

export class EventLoopHealth {
  readonly #options: EventLoopHealthOptions;
  readonly #windowMs: number;
  readonly #delay = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  #requestMark = performance.eventLoopUtilization();
  #publisherMark: { utilization: EventLoopUtilization; incarnation: number } | undefined;
  #windowStart = performance.now();
  #last: EventLoopWindow | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(options: EventLoopHealthOptions = {}) {
    this.#options = options;
    this.#windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    this.#publisherMark = options.publisherThread?.();
    this.#delay.enable();
    this.#timer = setInterval(() => {
      this.#last = this.#measure(true);
    }, this.#windowMs).unref();
  }

  /** The last complete window, or the one under way before the first completes. */
  snapshot(): EventLoopWindow {
    return this.#last ?? this.#measure(false);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#delay.disable();
  }

  #measure(close: boolean): EventLoopWindow {
    const now = performance.now();
    const request = performance.eventLoopUtilization(this.#requestMark);
    const current = this.#options.publisherThread?.();
    const mark = this.#publisherMark;
    let publisher: EventLoopWindow['publisher_thread'] = null;
    if (current !== undefined) {
      // A restarted thread counts from its own start.
      const since =
        mark !== undefined && mark.incarnation === current.incarnation
          ? performance.eventLoopUtilization(current.utilization, mark.utilization)
          : current.utilization;
      publisher = { utilization: round(since.utilization, 4) };
    }
    // The histogram records each sampling interval whole: the delay is what exceeds the resolution.
    const toMs = (ns: number) => (Number.isFinite(ns) ? round(Math.max(0, ns / 1e6 - RESOLUTION_MS), 3) : 0);
    const window: EventLoopWindow = {
      window_s: round((now - this.#windowStart) / 1000, 3),
      request_thread: {
        delay_ms: {
          p50: toMs(this.#delay.percentile(50)),
          p99: toMs(this.#delay.percentile(99)),
          max: toMs(this.#delay.max),
        },
        utilization: round(request.utilization, 4),
      },
      publisher_thread: publisher,
    };
    if (close) {
      this.#requestMark = performance.eventLoopUtilization();
      this.#publisherMark = current;
      this.#windowStart = now;
      this.#delay.reset();
    }
    return window;
  }
}

/** `telemetry_event_loop_utilization{thread}`: each thread's utilisation over the last window. */
export function registerEventLoopMetrics(registry: Registry, health: EventLoopHealth): void {
  new Gauge({
    name: 'telemetry_event_loop_utilization',
    help: "Share of the last window the thread's event loop was busy (0-1): request, publisher",
    labelNames: ['thread'],
    registers: [registry],
    collect() {
      const window = health.snapshot();
      this.reset();
      this.set({ thread: 'request' }, window.request_thread.utilization);
      if (window.publisher_thread !== null)
        this.set({ thread: 'publisher' }, window.publisher_thread.utilization);
    },
  });
}
