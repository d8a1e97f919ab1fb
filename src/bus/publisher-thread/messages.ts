/**
 * What the API's thread and its publisher thread tell each other (structured-cloned plain objects).
 * Appends are not among them: the publisher thread learns of those from the shared spool tail
 * (../spool/spool-tail.ts), with no message per event.
 */
import type { LedgerRow } from '../ledger-counts.ts';
import type { PublisherStatus } from '../spool-publisher.ts';
import type { Topology } from '../topology.ts';

/** The publisher thread's start-up data (`workerData`). */
export interface PublisherThreadData {
  /** The spool's directory: the thread reads its segment files, never writes them. */
  directory: string;
  /** The shared tail (`SpoolTail.buffer`). */
  tailBuffer: SharedArrayBuffer;
  /** The spool's confirmed offset when the thread starts: sending resumes after it. */
  confirmedOffset: number;
  /** Whether confirms are counted for the loss ledger (and sent back as rows). */
  countLedger: boolean;
  /** Which start of the thread this is, from 0. */
  incarnation: number;
  urls: readonly string[];
  topology: Topology;
  window?: number | undefined;
  confirmTimeoutMs?: number | undefined;
  heartbeatSeconds?: number | undefined;
  /** Wait after a wake-up before reading the spool, in ms (ThreadSpool). */
  lingerMs?: number | undefined;
}

/** From the API's thread. */
export type ToPublisherThread = { kind: 'stop'; timeoutMs: number };

/** From the publisher thread. */
export type FromPublisherThread =
  | {
      kind: 'progress';
      /** Highest offset confirmed by the broker with everything before it. */
      confirmedOffset: number;
      /** Confirms counted since the last progress, for the loss ledger. */
      ledger: LedgerRow[];
      /** Publish latency of the confirms since the last progress: emit and confirm time (Unix ms), in pairs. */
      latency: Float64Array;
      status: PublisherStatus;
    }
  /** Sent first: the thread's OS thread id (Linux; null elsewhere), for per-thread CPU figures. */
  | { kind: 'started'; tid: number | null }
  | { kind: 'log'; level: 'info' | 'warn' | 'error'; object: object; message: string }
  | { kind: 'damage'; segmentFirstOffset: number; position: number; damage: 'torn' | 'corrupt' }
  | { kind: 'stopped'; left: number };
