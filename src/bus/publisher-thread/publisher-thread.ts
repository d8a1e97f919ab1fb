/**
 * The publisher thread (`tb-publisher`): a worker_threads worker of the API process that owns everything
 * of publishing but the append — the AMQP connection (opened through the broker session, so cluster
 * failover works as before), the confirm window, reading the spool's tail, the confirmed offset,
 * reconnects and resends. The API's thread only appends (../event-bus.ts); see ./publisher-thread-host.ts
 * for how this thread is started, restarted and stopped.
 *
 * Back to the API's thread go, at most once per turn of this thread's event loop: the confirmed offset,
 * the confirms counted for the loss ledger, their publish latencies (emit and confirm times, observed in
 * the API's thread's histogram: exact, one transferred array per report), and the publisher's status;
 * log lines; damage met in the spool. Confirms are reported with their ledger counts and latencies in
 * one message, so a crash loses all or none: records whose confirm was not reported are sent again by
 * the next thread, and counted then.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { LedgerCounts } from '../ledger-counts.ts';
import { SpoolTail } from '../spool/spool-tail.ts';
import { SpoolTailReader } from '../spool/spool-tail-reader.ts';
import { type PublisherLogger, SpoolPublisher } from '../spool-publisher.ts';
import { CRASH_SWITCH, crashAfter } from './crash-switch.ts';
import type { FromPublisherThread, PublisherThreadData, ToPublisherThread } from './messages.ts';
import { identifyThread } from './thread-identity.ts';
import { ThreadSpool } from './thread-spool.ts';

/** Interval at which a changed status is reported even without confirms, in ms. */
const STATUS_INTERVAL_MS = 50;
/**
 * Shortest interval between two reports of confirms, in ms: a report costs this thread a status, a
 * structured clone and a postMessage (14 µs per event of its profile at 1,000 events/s), and the API's
 * thread a message to handle between requests, so confirms that come within it share one. (On the
 * benchmark machine confirms came in batches further apart already, so the profile changed little.)
 * Latencies are measured at the confirm, so reporting later changes none; the spool frees its segments
 * up to 5 ms later.
 */
const REPORT_MIN_INTERVAL_MS = 5;

const port = parentPort;
if (port === null) throw new Error('publisher-thread.ts runs as a worker thread');
const data = workerData as PublisherThreadData;
const post = (message: FromPublisherThread, transfer: ArrayBuffer[] = []) =>
  port.postMessage(message, transfer);

post({ kind: 'started', tid: identifyThread('tb-publisher') });

const crash = crashAfter(process.env[CRASH_SWITCH], data.incarnation);
const tail = new SpoolTail(data.tailBuffer);
const reader = new SpoolTailReader(data.directory, tail, (segmentFirstOffset, position, damage) =>
  post({ kind: 'damage', segmentFirstOffset, position, damage }),
);
const ledger = data.countLedger ? new LedgerCounts() : undefined;
let reportPending = false;
let lastReportAt = 0;
const spool = new ThreadSpool(reader, tail, data.confirmedOffset, data.lingerMs ?? 0, () => {
  if (reportPending) return;
  reportPending = true;
  const wait = lastReportAt + REPORT_MIN_INTERVAL_MS - performance.now();
  if (wait > 0) setTimeout(report, wait);
  else setImmediate(report);
});
/** Emit and confirm times of the confirms not reported yet, in pairs: observed in the API's thread. */
let latencies = new Float64Array(1024);
let latencyCount = 0;
const latency = {
  observe(emittedAtMs: number, nowMs: number): void {
    if (latencyCount + 2 > latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[latencyCount++] = emittedAtMs;
    latencies[latencyCount++] = nowMs;
  },
};
const log =
  (level: 'info' | 'warn' | 'error') =>
  (object: object, message: string): void =>
    post({ kind: 'log', level, object, message });
const logger: PublisherLogger = { info: log('info'), warn: log('warn'), error: log('error') };
const publisher = new SpoolPublisher(spool, {
  urls: data.urls,
  topology: data.topology,
  window: data.window,
  confirmTimeoutMs: data.confirmTimeoutMs,
  heartbeatSeconds: data.heartbeatSeconds,
  logger,
  ledger,
  latency,
});

let reportedOffset = data.confirmedOffset;
let reportedStatus = '';
function report(): void {
  reportPending = false;
  lastReportAt = performance.now();
  const status = publisher.status();
  if (crash !== undefined && status.counters.confirmed >= crash) {
    throw new Error(`publisher thread crash injected by ${CRASH_SWITCH} (tests only)`);
  }
  const statusText = JSON.stringify(status);
  if (spool.confirmedOffset === reportedOffset && statusText === reportedStatus && latencyCount === 0) return;
  reportedOffset = spool.confirmedOffset;
  reportedStatus = statusText;
  const observed = latencies.slice(0, latencyCount);
  latencyCount = 0;
  const message: FromPublisherThread = {
    kind: 'progress',
    confirmedOffset: reportedOffset,
    ledger: ledger?.drain() ?? [],
    latency: observed,
    status,
  };
  post(message, [observed.buffer]);
}

const statusTimer = setInterval(report, STATUS_INTERVAL_MS);
port.on('message', (message: ToPublisherThread) => {
  if (message.kind !== 'stop') return;
  void publisher.stop(message.timeoutMs).then((left) => {
    clearInterval(statusTimer);
    report();
    reader.close();
    post({ kind: 'stopped', left });
  });
});
publisher.start();
report();
