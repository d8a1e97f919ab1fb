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
import { latencyColumns, type MicroResult, microBench } from './support/micro-bench.ts';
import { commandLine, flag, integer, onOff, type Settings as SettingsOf, text } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  publishResults,
  round,
  table,
} from './support/report.ts';
import { handleSignals, runMain } from './support/settings.ts';

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

async function appends(settings: Settings, directory: string) {
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
  let offset = 0;
  try {
    const result = await microBench(
      'spool append',
      (i) => {
        offset = spool.append(payloads[i & 63] as Buffer);
        return offset >= 0;
      },
      {
        iterations: settings.records,
        batch: settings.batch,
        afterBatch: () => settings.noConfirm || spool.confirm(offset),
      },
    );
    return { result, stats: { ...spool.stats(), wakeUps, droppedSeen: result.failed } };
  } finally {
    await spool.close();
  }
}

/**
 * The same writes without the spool, as the spool makes them: positional, to files of `segment-bytes` in
 * the same directory, with the same yields and an fdatasync in the threadpool on the same interval, each
 * file deleted once full when the spool run confirmed. What the OS alone costs.
 */
async function bareWrites(settings: Settings, directory: string): Promise<MicroResult> {
  const record = randomBytes(settings.payloadBytes + 20);
  const intervalMs = Math.max(1, settings.fsyncIntervalMs);
  let fileNumber = 0;
  const fileName = (n: number) => path.join(directory, `bare-${n}.bin`);
  let fd = fs.openSync(fileName(fileNumber), 'wx');
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
    const [full, fullName] = [fd, fileName(fileNumber)];
    setTimeout(() => {
      fs.closeSync(full);
      if (!settings.noConfirm) fs.rmSync(fullName);
    }, 10 * intervalMs);
    fd = fs.openSync(fileName(++fileNumber), 'wx');
    position = 0;
  };
  try {
    return await microBench(
      'bare write',
      () => {
        fs.writeSync(fd, record, 0, record.length, position);
        position += record.length;
        if (position + record.length > settings.segmentBytes) nextFile();
      },
      { iterations: settings.records, batch: settings.batch },
    );
  } finally {
    clearInterval(syncs);
    await new Promise((resolve) => setTimeout(resolve, 20 * intervalMs));
    fs.closeSync(fd);
  }
}

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const directory = fs.mkdtempSync(path.join(settings.dir ?? os.tmpdir(), 'spool-bench-'));
  try {
    const { result, stats } = await appends(settings, directory);
    const baseline = settings.noBaseline ? undefined : await bareWrites(settings, directory);
    const rows = [{ name: 'spool append', ...result }];
    if (baseline !== undefined) rows.push({ name: 'bare write (the OS alone)', ...baseline });
    const mebibytesPerSecond = (row: MicroResult) =>
      round((row.callsPerSec * settings.payloadBytes) / 2 ** 20, 1);
    await publishResults({
      name: 'spool-append',
      title: 'Spool append',
      startedAt,
      goals: {
        title: 'Goals',
        goals: [
          judge(
            { name: 'spool append p99 (1 KiB payload)', threshold: 10, comparison: '<', unit: 'µs' },
            result.latencyUs.p99,
            `${settings.payloadBytes} B payloads, fsync every ${settings.fsyncIntervalMs} ms`,
          ),
        ],
      },
      sections: [
        table(
          `Latency per call (µs) and throughput: ${formatNumber(settings.records)} records of ${settings.payloadBytes} B, fsync every ${settings.fsyncIntervalMs} ms, ${settings.noConfirm ? 'never confirmed' : 'confirmed as it goes'}`,
          rows,
          {
            call: (row) => row.name,
            ...latencyColumns,
            'MiB/s': (row) => formatNumber(mebibytesPerSecond(row), 1),
            'wall s': (row) => formatNumber(row.wallS, 2),
          },
        ),
      ],
      notes: { settings: [...cli.settingsBlock(settings), environmentText(environment())], checks: [] },
      command: invocation('bench:spool-append'),
      report: {
        settings,
        environment: environment(),
        latencyUs: result.latencyUs,
        bareWriteLatencyUs: baseline?.latencyUs ?? null,
        throughput: {
          recordsPerSecond: result.callsPerSec,
          mebibytesPerSecond: mebibytesPerSecond(result),
          recordsPerSecondInAppend: result.callsPerSecInCall,
        },
        elapsedS: result.wallS,
        spoolStats: stats,
      },
    });
    return 0;
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

runMain('spool-append', cli.help(), main);
