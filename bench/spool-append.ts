/**
 * Latency of Spool.append(), the one cost every API request pays for telemetry, against bare write
 * syscalls of the same size. Method: bench/README.md ("bench:spool-append").
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Spool } from '../src/bus/spool/spool.ts';
import { judge } from './support/goals.ts';
import { type MicroResult, microBench } from './support/micro-bench.ts';
import { commandLine, flag, integer, onOff, type Settings as SettingsOf, text } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  publishResults,
  round,
} from './support/report.ts';
import { handleSignals, runMain } from './support/settings.ts';

/** The target: append must stay well under this at p99 for a 1 KiB payload. */
const GOAL_P99_US = 10;

const cli = commandLine({
  script: 'bench:spool-append',
  summary: 'Latency of Spool.append() per call, against bare write syscalls of the same size.',
  options: {
    records: flag('records', '1000000', integer(1), 'appends timed'),
    payloadBytes: flag('payload-bytes', '1024', integer(0), 'bytes per payload'),
    fsyncIntervalMs: flag('fsync-interval-ms', '50', integer(0), 'the spool’s fdatasync interval (ms)'),
    segmentBytes: flag('segment-bytes', String(64 * 1024 * 1024), integer(1), 'bytes per segment file'),
    batch: flag('batch', '1000', integer(1), 'appends between yields to the event loop (and confirms)'),
    noConfirm: onOff('no-confirm', 'never confirm (every record stays on disk)'),
    noBaseline: onOff('no-baseline', 'skip the bare-write baseline'),
    dir: flag('dir', '', text, 'parent of the temporary spool directory (default: the OS temp dir)', {
      arg: '<path>',
    }),
  },
});
type Settings = SettingsOf<typeof cli.options>;

/** Every `batch` calls: confirm what was appended (unless --no-confirm) and let the event loop run. */
function everyBatch(settings: Settings, confirm: () => void): () => Promise<void> | undefined {
  let calls = 0;
  return () => {
    if (++calls % settings.batch !== 0) return undefined;
    confirm();
    return new Promise((resolve) => setImmediate(resolve));
  };
}

async function appends(settings: Settings, directory: string) {
  const spool = Spool.open({
    directory,
    segmentBytes: settings.segmentBytes,
    fsyncIntervalMs: settings.fsyncIntervalMs,
    // Without confirms every record stays on disk; leave room for all of them.
    maxBytes: Math.max(1024 ** 3, 2 * settings.records * (settings.payloadBytes + 64)),
  });
  try {
    // The publisher always listens; its wake-up is part of what an append costs.
    let wakeUps = 0;
    spool.onAppend(() => wakeUps++);
    // Distinct payloads, so no layer below can profit from identical data.
    const payloads = Array.from({ length: 64 }, () => randomBytes(settings.payloadBytes));
    let i = 0;
    let offset = 0;
    let dropped = 0;
    const result = await microBench(
      'spool append',
      () => {
        offset = spool.append(payloads[i++ & 63] as Buffer);
        if (offset < 0) dropped++;
      },
      {
        iterations: settings.records,
        afterEach: everyBatch(settings, () => {
          if (!settings.noConfirm) spool.confirm(offset);
        }),
      },
    );
    return { result, stats: { ...spool.stats(), wakeUps, droppedSeen: dropped } };
  } finally {
    await spool.close();
  }
}

/**
 * The same writes without the spool: the same number of the same size, positional, to files of
 * `segment-bytes` in the same directory, with the same yields and an fdatasync on the same interval (in
 * the threadpool, as the spool's), each file deleted once full when the spool run confirmed as it went.
 * What the OS alone costs, so the spool's own share of each percentile can be told apart from the
 * machine's.
 */
async function bareWrites(settings: Settings, directory: string): Promise<MicroResult> {
  const record = randomBytes(settings.payloadBytes + 20);
  const intervalMs = Math.max(1, settings.fsyncIntervalMs);
  let fileNumber = 0;
  const openNext = () => fs.openSync(path.join(directory, `bare-${fileNumber++}.bin`), 'wx');
  let fd = openNext();
  let position = 0;
  let syncing = false;
  const syncs = setInterval(() => {
    if (syncing) return;
    syncing = true;
    fs.fdatasync(fd, () => {
      syncing = false;
    });
  }, intervalMs);
  const nextFile = () => {
    // Closed once no sync can still be using it, as the spool's segment writer does.
    const full = fd;
    const fullName = path.join(directory, `bare-${fileNumber - 1}.bin`);
    setTimeout(() => {
      fs.closeSync(full);
      if (!settings.noConfirm) fs.rmSync(fullName);
    }, 10 * intervalMs);
    fd = openNext();
    position = 0;
  };
  const yieldEveryBatch = everyBatch(settings, () => {});
  try {
    return await microBench(
      'bare write',
      () => {
        fs.writeSync(fd, record, 0, record.length, position);
        position += record.length;
      },
      {
        iterations: settings.records,
        afterEach: () => {
          if (position + record.length > settings.segmentBytes) nextFile();
          return yieldEveryBatch();
        },
      },
    );
  } finally {
    clearInterval(syncs);
    await new Promise((resolve) => setTimeout(resolve, 20 * intervalMs));
    fs.closeSync(fd);
  }
}

const latencyRow = (name: string, { latencyUs: l }: MicroResult) => [
  name,
  ...[l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean].map((value) => formatNumber(value, 2)),
];

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const directory = fs.mkdtempSync(path.join(settings.dir ?? os.tmpdir(), 'spool-bench-'));
  try {
    const { result, stats } = await appends(settings, directory);
    const baseline = settings.noBaseline ? undefined : await bareWrites(settings, directory);
    const throughput = {
      recordsPerSecond: Math.round(settings.records / result.elapsedS),
      mebibytesPerSecond: round((settings.records * settings.payloadBytes) / result.elapsedS / 2 ** 20, 1),
      /** Were append() the only work: records per second of time spent inside it. */
      recordsPerSecondInAppend: Math.round(settings.records / result.timedS),
    };
    const goal = judge(
      { name: 'spool append p99 (1 KiB payload)', threshold: GOAL_P99_US, comparison: '<', unit: 'µs' },
      result.latencyUs.p99,
      `${settings.payloadBytes} B payloads, fsync every ${settings.fsyncIntervalMs} ms`,
    );
    await publishResults({
      name: 'spool-append',
      title: 'Spool append',
      startedAt,
      goals: { title: 'Goals', goals: [goal] },
      sections: [
        {
          title: `Latency per call (µs): ${formatNumber(settings.records)} records of ${settings.payloadBytes} B, fsync every ${settings.fsyncIntervalMs} ms, ${settings.noConfirm ? 'never confirmed' : 'confirmed as it goes'}`,
          columns: ['call', 'p50', 'p90', 'p99', 'p99.9', 'max', 'mean'],
          rows: [
            latencyRow('spool append', result),
            ...(baseline === undefined ? [] : [latencyRow('bare write (the OS alone)', baseline)]),
          ],
        },
        {
          title: 'Throughput',
          columns: ['records/s', 'MiB/s', 'records/s in append alone', 'seconds'],
          rows: [
            [
              formatNumber(throughput.recordsPerSecond),
              formatNumber(throughput.mebibytesPerSecond, 1),
              formatNumber(throughput.recordsPerSecondInAppend),
              formatNumber(result.elapsedS, 2),
            ],
          ],
        },
      ],
      verdicts: [],
      notes: { settings: [...cli.settingsBlock(settings), environmentText(environment())], checks: [] },
      command: invocation('bench:spool-append'),
      report: {
        benchmark: 'spool-append',
        settings,
        environment: environment(),
        latencyUs: result.latencyUs,
        bareWriteLatencyUs: baseline?.latencyUs ?? null,
        throughput,
        elapsedS: round(result.elapsedS, 3),
        spoolStats: stats,
      },
    });
    return 0;
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

runMain('spool-append', cli.help(), main);
