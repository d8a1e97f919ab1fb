/**
 * A paced, open-model HTTP load generator for the fixed-rate phases (autocannon stays for the
 * maximum-throughput ones):
 * - request n is due at start + n ÷ rate: evenly spaced at the target rate, and sent when due whether or
 *   not earlier requests have answered (an open model: a slow server does not slow the arrivals);
 * - its latency is measured from that intended send time, not from when it went out, so a generator that
 *   fell behind (or a connection that was busy) cannot hide queueing: coordinated omission is corrected;
 * - latencies go into HDR histograms (hdr-histogram-js, µs, 3 significant digits);
 * - it reports the rate it achieved (responses ÷ seconds) against the target, and how late it sent.
 *
 * The main thread's timers have a resolution of about 1 ms, which would send requests up to 1 ms late:
 * a metronome thread sleeps until each due time with Atomics.wait (sub-millisecond) and wakes the main
 * thread with a message, which sends every request due by then. Requests still go out late when the
 * main thread is busy (reading responses); their latencies count from each one's own intended time.
 *
 * Requests are autocannon's `Request` objects (method, path, headers, body, setupRequest, onResponse), so
 * the same request mixes serve both generators: request n is the next of lane n mod lanes, each lane
 * cycling through its own sequence (as autocannon's connections do).
 */
import http from 'node:http';
import { Worker } from 'node:worker_threads';
import type { Request } from 'autocannon';
import * as hdr from 'hdr-histogram-js';
import { interruptSignal } from './settings.ts';
import type { Distribution } from './stats.ts';

export interface PacedLoadOptions {
  /** Base URL, e.g. http://127.0.0.1:3000. */
  url: string;
  /** Target rate, requests per second. */
  rate: number;
  /** Seconds of sending. */
  durationS: number;
  /** The sequences request n is taken from (lane n mod lanes.length). */
  lanes: readonly Request[][];
  /** Headers of every request (e.g. the API key). */
  headers?: Record<string, string>;
  /** Sockets at most; requests beyond wait for one (and their wait counts in their latency). @default 256 */
  maxSockets?: number;
  /** A request unanswered after this many ms is a time-out. @default 10000 */
  timeoutMs?: number;
  /** Called with every response: status, intended-time latency (ms). */
  onResponse?: (status: number, latencyMs: number) => void;
}

/** Latencies in ms, with the count. */
export type LatencySummaryMs = Distribution;

export interface PacedLoadResult {
  targetRate: number;
  durationS: number;
  sent: number;
  responses: number;
  /** Responses ÷ (first due → last response). */
  achievedRate: number;
  /** 1 − achieved ÷ target: how far the achieved rate fell from the target (0 = none). */
  shortfall: number;
  statusCodes: Record<string, number>;
  errors: number;
  timeouts: number;
  /** From each request's intended send time (corrected for coordinated omission). */
  latencyMs: LatencySummaryMs;
  /** From the moment each request was actually handed to the socket (uncorrected, for comparison). */
  serviceMs: LatencySummaryMs;
  /** How late requests were handed over, behind their intended time. */
  sendLagMs: LatencySummaryMs;
  /** Requests in flight at most. */
  maxInFlight: number;
}

/**
 * The metronome thread (plain JavaScript, evaluated): given the first due time (ms since the epoch, so
 * both threads' clocks agree), the interval and the count, it posts the index of each due request as its
 * time comes, skipping to the latest one when it fell behind.
 */
const METRONOME = `
const { parentPort } = require('node:worker_threads');
const cell = new Int32Array(new SharedArrayBuffer(4));
parentPort.once('message', ({ start, interval, total }) => {
  const now = () => performance.timeOrigin + performance.now();
  for (let n = 0; n < total; ) {
    const due = start + n * interval;
    let wait = due - now();
    if (wait > 0.2) Atomics.wait(cell, 0, 0, wait - 0.1);
    while (now() < due) {}
    n = Math.min(total, Math.floor((now() - start) / interval) + 1);
    parentPort.postMessage(n);
  }
});
`;

function histogram() {
  return hdr.build({
    bitBucketSize: 'packed',
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
  });
}

function summary(h: hdr.Histogram): LatencySummaryMs {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    mean: h.totalCount === 0 ? Number.NaN : ms(h.mean),
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p95: ms(h.getValueAtPercentile(95)),
    p99: ms(h.getValueAtPercentile(99)),
    p99_9: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
  };
}

export async function pacedLoad(options: PacedLoadOptions): Promise<PacedLoadResult> {
  const base = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256 });
  const timeoutMs = options.timeoutMs ?? 10_000;
  const interval = 1000 / options.rate;
  const total = Math.max(1, Math.round(options.rate * options.durationS));
  const lanes = options.lanes.filter((lane) => lane.length > 0);
  if (lanes.length === 0) throw new Error('pacedLoad needs at least one request');
  const position = lanes.map(() => 0);
  const latency = histogram();
  const service = histogram();
  const lag = histogram();
  const statusCodes: Record<string, number> = {};
  let sent = 0;
  let responses = 0;
  let errors = 0;
  let timeouts = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let lastResponseAt = 0;

  const send = (n: number, intended: number, done: () => void) => {
    const lane = n % lanes.length;
    const sequence = lanes[lane] as Request[];
    const template = sequence[(position[lane] as number) % sequence.length] as Request;
    position[lane] = (position[lane] as number) + 1;
    const request = template.setupRequest
      ? (template.setupRequest({ ...template }, undefined as never) as Request)
      : template;
    const body = request.body === undefined ? undefined : String(request.body);
    const headers: Record<string, string | number> = {
      ...options.headers,
      ...(request.headers as Record<string, string> | undefined),
    };
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    const handedAt = performance.now();
    lag.recordValue(Math.max(1, Math.round((handedAt - intended) * 1000)));
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      inFlight--;
      done();
    };
    const outgoing = http.request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: request.method ?? 'GET',
        path: request.path ?? '/',
        headers,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const now = performance.now();
          const status = response.statusCode ?? 0;
          const ms = now - intended;
          latency.recordValue(Math.max(1, Math.round(ms * 1000)));
          service.recordValue(Math.max(1, Math.round((now - handedAt) * 1000)));
          statusCodes[status] = (statusCodes[status] ?? 0) + 1;
          responses++;
          lastResponseAt = now;
          template.onResponse?.(status, Buffer.concat(chunks).toString(), undefined as never, {});
          options.onResponse?.(status, ms);
          finish();
        });
        response.on('error', () => {
          errors++;
          finish();
        });
      },
    );
    outgoing.setTimeout(timeoutMs, () => {
      timeouts++;
      outgoing.destroy();
      finish();
    });
    outgoing.on('error', () => {
      if (!finished) errors++;
      finish();
    });
    outgoing.end(body);
  };

  const start = performance.now() + 5;
  const metronome = new Worker(METRONOME, { eval: true });
  metronome.unref();
  try {
    await new Promise<void>((resolve) => {
      let next = 0;
      let settled = 0;
      let sending = true;
      const maybeDone = () => {
        if (!sending && settled === sent) resolve();
      };
      const onSettled = () => {
        settled++;
        maybeDone();
      };
      const stop = () => {
        sending = false;
        maybeDone();
      };
      interruptSignal.addEventListener('abort', stop, { once: true });
      const tick = () => {
        if (!sending) return;
        const now = performance.now();
        while (next < total && start + next * interval <= now) {
          const intended = start + next * interval;
          next++;
          sent++;
          send(next - 1, intended, onSettled);
        }
        if (next >= total) {
          interruptSignal.removeEventListener('abort', stop);
          metronome.terminate();
          stop();
        }
      };
      metronome.on('message', tick);
      metronome.postMessage({ start: performance.timeOrigin + start, interval, total });
    });
  } finally {
    await metronome.terminate();
    agent.destroy();
  }
  const seconds = Math.max(lastResponseAt - start, interval) / 1000;
  const achievedRate = Math.round((10 * responses) / seconds) / 10;
  return {
    targetRate: options.rate,
    durationS: options.durationS,
    sent,
    responses,
    achievedRate,
    shortfall: Math.round(1000 * Math.max(0, 1 - achievedRate / options.rate)) / 1000,
    statusCodes,
    errors,
    timeouts,
    latencyMs: summary(latency),
    serviceMs: summary(service),
    sendLagMs: summary(lag),
    maxInFlight,
  };
}
