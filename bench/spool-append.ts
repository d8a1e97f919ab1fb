/**
 * Latency of Spool.append(), the one cost every API request pays for telemetry.
 *
 *   node --import tsx bench/spool-append.ts [--records 1000000] [--payload-bytes 1024] [--fsync-interval-ms 50]
 *                                           [--segment-bytes 67108864] [--batch 1000] [--no-confirm] [--no-baseline]
 *                                           [--dir PATH]
 *
 * Appends `records` payloads of `payload-bytes` to a spool in a temporary directory (removed at the end)
 * and times every append() alone with process.hrtime.bigint(). Every `batch` appends it yields to the
 * event loop, so the fsync timer runs as it does in the service (its fdatasync then overlaps the appends
 * that follow); and, unless --no-confirm, it confirms all it has appended, as a publisher that keeps up
 * would, so confirmed segments are deleted (outside the timed call) and the disk use stays bounded.
 * Then, unless --no-baseline, it times the same number of bare write syscalls of the same size, the floor
 * under any append. Prints the percentiles in µs and the throughput, and writes
 * bench/results/spool-append-latest.json. Ctrl-C stops early and still removes the directory.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Spool } from '../src/bus/spool/spool.ts';

const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The target: append must stay well under this at p99 for a 1 KiB payload. */
const GOAL_P99_US = 10;

interface Settings {
  records: number;
  payloadBytes: number;
  fsyncIntervalMs: number;
  segmentBytes: number;
  batch: number;
  confirm: boolean;
  baseline: boolean;
  parentDirectory: string;
}

function integer(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min) {
    throw new Error(`--${name} must be an integer >= ${min}, got '${raw}'`);
  }
  return value;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      records: { type: 'string' },
      'payload-bytes': { type: 'string' },
      'fsync-interval-ms': { type: 'string' },
      'segment-bytes': { type: 'string' },
      batch: { type: 'string' },
      'no-confirm': { type: 'boolean' },
      'no-baseline': { type: 'boolean' },
      dir: { type: 'string' },
    },
    strict: true,
  });
  return {
    records: integer('records', values.records, 1_000_000, 1),
    payloadBytes: integer('payload-bytes', values['payload-bytes'], 1024, 0),
    fsyncIntervalMs: integer('fsync-interval-ms', values['fsync-interval-ms'], 50, 0),
    segmentBytes: integer('segment-bytes', values['segment-bytes'], 64 * 1024 * 1024, 1),
    batch: integer('batch', values.batch, 1000, 1),
    confirm: values['no-confirm'] !== true,
    baseline: values['no-baseline'] !== true,
    parentDirectory: values.dir ?? os.tmpdir(),
  };
}

function percentile(sorted: Float64Array, p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const settings = readSettings();
  const directory = fs.mkdtempSync(path.join(settings.parentDirectory, 'spool-bench-'));
  const spool = Spool.open({
    directory,
    segmentBytes: settings.segmentBytes,
    fsyncIntervalMs: settings.fsyncIntervalMs,
    // Without confirms every record stays on disk; leave room for all of them.
    maxBytes: Math.max(1024 ** 3, 2 * settings.records * (settings.payloadBytes + 64)),
  });
  // The publisher always listens; its wake-up is part of what an append costs.
  let wakeUps = 0;
  spool.onAppend(() => wakeUps++);
  // Distinct payloads, so no layer below can profit from identical data.
  const payloads = Array.from({ length: 64 }, () => randomBytes(settings.payloadBytes));
  const latenciesNs = new Float64Array(settings.records);
  const startedAt = new Date();
  let dropped = 0;
  let interrupted = false;
  process.once('SIGINT', () => {
    interrupted = true;
  });
  const started = process.hrtime.bigint();
  try {
    for (let i = 0; i < settings.records && !interrupted; i++) {
      const payload = payloads[i & 63] as Buffer;
      const before = process.hrtime.bigint();
      const offset = spool.append(payload);
      latenciesNs[i] = Number(process.hrtime.bigint() - before);
      if (offset < 0) dropped++;
      if ((i + 1) % settings.batch === 0) {
        if (settings.confirm) spool.confirm(offset);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    if (interrupted) {
      process.stderr.write('interrupted: no results written\n');
      return;
    }
    const elapsedS = Number(process.hrtime.bigint() - started) / 1e9;
    const stats = spool.stats();
    await spool.close();
    const baselineNs = settings.baseline ? await bareWrites(settings, directory) : undefined;
    report(
      settings,
      latenciesNs,
      elapsedS,
      { ...stats, wakeUps, droppedSeen: dropped },
      startedAt,
      baselineNs,
    );
  } finally {
    await spool.close();
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

/**
 * The same writes without the spool: the same number of the same size, positional, to files of
 * `segment-bytes` in the same directory, with the same yields and an fdatasync on the same interval (in
 * the threadpool, as the spool's), each file deleted once full when the spool run confirmed as it went.
 * What the OS alone costs, so the spool's own share of each percentile can be told apart from the
 * machine's.
 */
async function bareWrites(settings: Settings, directory: string): Promise<Float64Array> {
  const record = randomBytes(settings.payloadBytes + 20);
  const latenciesNs = new Float64Array(settings.records);
  let fileNumber = 0;
  const openNext = () => fs.openSync(path.join(directory, `bare-${fileNumber++}.bin`), 'wx');
  let fd = openNext();
  let position = 0;
  let syncing = false;
  const syncs = setInterval(
    () => {
      if (syncing) return;
      syncing = true;
      const syncedFd = fd;
      fs.fdatasync(syncedFd, () => {
        syncing = false;
      });
    },
    Math.max(1, settings.fsyncIntervalMs),
  );
  try {
    for (let i = 0; i < settings.records; i++) {
      if (position + record.length > settings.segmentBytes && position > 0) {
        // Closed once no sync can still be using it, as the spool's segment writer does.
        const full = fd;
        const fullName = path.join(directory, `bare-${fileNumber - 1}.bin`);
        setTimeout(() => {
          fs.closeSync(full);
          if (settings.confirm) fs.rmSync(fullName);
        }, 10 * Math.max(1, settings.fsyncIntervalMs));
        fd = openNext();
        position = 0;
      }
      const before = process.hrtime.bigint();
      fs.writeSync(fd, record, 0, record.length, position);
      latenciesNs[i] = Number(process.hrtime.bigint() - before);
      position += record.length;
      if ((i + 1) % settings.batch === 0) await new Promise((resolve) => setImmediate(resolve));
    }
  } finally {
    clearInterval(syncs);
    await new Promise((resolve) => setTimeout(resolve, 20 * Math.max(1, settings.fsyncIntervalMs)));
    fs.closeSync(fd);
  }
  return latenciesNs;
}

function summarize(latenciesNs: Float64Array): Record<string, number> {
  const sorted = latenciesNs.slice().sort();
  const us = (ns: number) => round(ns / 1000, 2);
  return {
    p50: us(percentile(sorted, 50)),
    p90: us(percentile(sorted, 90)),
    p99: us(percentile(sorted, 99)),
    'p99.9': us(percentile(sorted, 99.9)),
    max: us(sorted[sorted.length - 1] as number),
    mean: us(latenciesNs.reduce((sum, ns) => sum + ns, 0) / latenciesNs.length),
  };
}

const line = (latency: Record<string, number>) =>
  `p50 ${latency.p50}  p90 ${latency.p90}  p99 ${latency.p99}  p99.9 ${latency['p99.9']}  max ${latency.max}  (mean ${latency.mean})`;

function report(
  settings: Settings,
  latenciesNs: Float64Array,
  elapsedS: number,
  stats: object,
  startedAt: Date,
  baselineNs: Float64Array | undefined,
): void {
  const appendTotalS = latenciesNs.reduce((sum, ns) => sum + ns, 0) / 1e9;
  const latencyUs = summarize(latenciesNs);
  const baselineUs = baselineNs === undefined ? null : summarize(baselineNs);
  const throughput = {
    recordsPerSecond: Math.round(settings.records / elapsedS),
    mebibytesPerSecond: round((settings.records * settings.payloadBytes) / elapsedS / 2 ** 20, 1),
    /** Were append() the only work: records per second of time spent inside it. */
    recordsPerSecondInAppend: Math.round(settings.records / appendTotalS),
  };
  const lines = [
    `spool append: ${settings.records.toLocaleString('en')} records of ${settings.payloadBytes} B, fsync every ${settings.fsyncIntervalMs} ms, ${settings.confirm ? 'confirmed as it goes' : 'never confirmed'}`,
    `  latency µs  ${line(latencyUs)}`,
    ...(baselineUs === null ? [] : [`  bare write  ${line(baselineUs)}  (µs, the OS alone)`]),
    `  throughput  ${throughput.recordsPerSecond.toLocaleString('en')} records/s, ${throughput.mebibytesPerSecond} MiB/s over ${round(elapsedS, 2)} s`,
    `  goal        p99 < ${GOAL_P99_US} µs: ${(latencyUs.p99 as number) < GOAL_P99_US ? 'met' : 'MISSED'}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const result = {
    benchmark: 'spool-append',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    settings: {
      records: settings.records,
      payloadBytes: settings.payloadBytes,
      fsyncIntervalMs: settings.fsyncIntervalMs,
      segmentBytes: settings.segmentBytes,
      yieldEveryAppends: settings.batch,
      confirmEachBatch: settings.confirm,
      baseline: settings.baseline,
      directoryParent: settings.parentDirectory,
    },
    host: {
      node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`,
      cpus: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      memoryGiB: round(os.totalmem() / 2 ** 30, 1),
      gitCommit: gitCommit(),
    },
    latencyUs,
    bareWriteLatencyUs: baselineUs,
    goal: { maxP99Us: GOAL_P99_US, met: (latencyUs.p99 as number) < GOAL_P99_US },
    throughput,
    elapsedS: round(elapsedS, 3),
    spoolStats: stats,
  };
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, 'spool-append-latest.json');
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`  written     ${path.relative(REPO_ROOT, file)}\n`);
}

await main();
