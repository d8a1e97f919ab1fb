/**
 * The paced, open-model HTTP load generator of the fixed-rate phases: request n is due at start + n ÷ rate
 * and is sent then whether or not earlier ones have answered, its latency counted from that intended time
 * (coordinated omission corrected), into HDR histograms (µs, 3 significant digits). Method and its check
 * against a fixed-delay server: bench/README.md, test/timing/paced-load.test.ts.
 *
 * The main thread's timers have about 1 ms of resolution, so a metronome thread sleeps until each due time
 * (Atomics.wait) and wakes the main thread, which sends every request due by then. Requests are
 * autocannon's `Request` objects, so the same mixes serve both generators: request n is the next of lane
 * n mod lanes, each lane cycling through its own sequence (as autocannon's connections do).
 */
import http from 'node:http';
import { Worker } from 'node:worker_threads';
import type { Request } from 'autocannon';
import * as hdr from 'hdr-histogram-js';
import type { LoadResult } from './load.ts';
import { interruptSignal } from './settings.ts';
import type { Distribution } from './stats.ts';

/**
 * The metronome (plain JavaScript, evaluated): given the first due time (ms since the epoch, so both
 * threads' clocks agree), the interval and the count, it posts the index of each due request as its time
 * comes, skipping to the latest one when it fell behind.
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

const TIMEOUT_MS = 10_000;

function histogram() {
  const h = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    useWebAssembly: false,
  });
  const summary = () => {
    const ms = (us: number) => Math.round(us) / 1000;
    const at = (percentile: number) => ms(h.getValueAtPercentile(percentile));
    const { totalCount: count } = h;
    return {
      count,
      mean: count === 0 ? Number.NaN : ms(h.mean),
      p50: at(50),
      p90: at(90),
      p95: at(95),
      p99: at(99),
      p99_9: at(99.9),
      max: ms(h.maxValue),
    };
  };
  return { record: (ms: number) => h.recordValue(Math.max(1, Math.round(ms * 1000))), summary };
}

export async function pacedLoad(options: {
  /** Base URL, e.g. http://127.0.0.1:3000. */
  url: string;
  /** Requests per second. */
  rate: number;
  durationS: number;
  /** The sequences request n is taken from (lane n mod lanes.length). */
  lanes: readonly Request[][];
  /** Headers of every request (e.g. the API key). */
  headers?: Record<string, string>;
}): Promise<LoadResult & { sent: number; shortfall: number; sendLagMs: Distribution }> {
  const base = new URL(options.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const interval = 1000 / options.rate;
  const total = Math.max(1, Math.round(options.rate * options.durationS));
  const lanes = options.lanes.filter((lane) => lane.length > 0);
  if (lanes.length === 0) throw new Error('pacedLoad needs at least one request');
  const position = lanes.map(() => 0);
  const latency = histogram();
  const lag = histogram();
  const statusCodes: Record<string, number> = {};
  const counts = { sent: 0, settled: 0, responses: 0, errors: 0, timeouts: 0, lastResponseAt: 0 };
  let whenSettled = () => {};

  const send = (n: number, intended: number) => {
    const lane = n % lanes.length;
    const sequence = lanes[lane] as Request[];
    const template = sequence[(position[lane] as number)++ % sequence.length] as Request;
    const request = (template.setupRequest?.({ ...template }, undefined as never) ?? template) as Request;
    const body = request.body === undefined ? undefined : String(request.body);
    const headers: Record<string, string | number> = { ...options.headers, ...(request.headers as object) };
    if (body !== undefined) headers['content-length'] = Buffer.byteLength(body);
    lag.record(performance.now() - intended);
    let finished = false;
    const finish = (outcome?: 'errors' | 'timeouts') => {
      if (finished) return;
      finished = true;
      if (outcome !== undefined) counts[outcome]++;
      counts.settled++;
      whenSettled();
    };
    const { hostname: host, port } = base;
    const { method = 'GET', path = '/' } = request;
    const outgoing = http.request({ agent, host, port, method, path, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', () => finish('errors'));
      response.on('end', () => {
        const status = response.statusCode ?? 0;
        counts.lastResponseAt = performance.now();
        latency.record(counts.lastResponseAt - intended);
        statusCodes[status] = (statusCodes[status] ?? 0) + 1;
        counts.responses++;
        template.onResponse?.(status, Buffer.concat(chunks).toString(), undefined as never, {});
        finish();
      });
    });
    outgoing.setTimeout(TIMEOUT_MS, () => {
      finish('timeouts');
      outgoing.destroy();
    });
    outgoing.on('error', () => finish('errors'));
    outgoing.end(body);
  };

  const start = performance.now() + 5;
  const metronome = new Worker(METRONOME, { eval: true });
  metronome.unref();
  try {
    await new Promise<void>((resolve) => {
      let sending = true;
      whenSettled = () => !sending && counts.settled === counts.sent && resolve();
      const stop = () => {
        sending = false;
        interruptSignal.removeEventListener('abort', stop);
        void metronome.terminate();
        whenSettled();
      };
      interruptSignal.addEventListener('abort', stop);
      metronome.on('message', () => {
        const now = performance.now();
        while (sending && counts.sent < total && start + counts.sent * interval <= now) {
          send(counts.sent, start + counts.sent * interval);
          counts.sent++;
        }
        if (sending && counts.sent >= total) stop();
      });
      metronome.postMessage({ start: performance.timeOrigin + start, interval, total });
    });
  } finally {
    await metronome.terminate();
    agent.destroy();
  }
  const seconds = Math.max(counts.lastResponseAt - start, interval) / 1000;
  const requestsPerSec = Math.round((10 * counts.responses) / seconds) / 10;
  return {
    generator: 'paced',
    targetRate: options.rate,
    connections: null,
    durationS: options.durationS,
    sent: counts.sent,
    responses: counts.responses,
    requestsPerSec,
    shortfall: Math.round(1000 * Math.max(0, 1 - requestsPerSec / options.rate)) / 1000,
    latencyMs: latency.summary(),
    sendLagMs: lag.summary(),
    statusCodes,
    errors: counts.errors,
    timeouts: counts.timeouts,
  };
}
