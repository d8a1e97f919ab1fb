/**
 * Start time and memory of the API process, from the compiled build (dist/, plain Node: what `npm start`
 * runs) against the TypeScript sources through tsx. Method: bench/README.md ("bench:startup").
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { Environments } from './support/broker.ts';
import { processTicks } from './support/cpu.ts';
import { createDatabase, dropDatabase } from './support/databases.ts';
import { statusKib } from './support/memory.ts';
import { commandLine, flag, integer, onOff } from './support/options.ts';
import {
  environment,
  environmentText,
  commandLine as invocation,
  progress,
  publishResults,
  REPO_ROOT,
  round,
} from './support/report.ts';
import { handleSignals, runMain, sleep, throwIfInterrupted } from './support/settings.ts';
import { median } from './support/stats.ts';
import { freePort } from './support/system-process.ts';

const cli = commandLine({
  script: 'bench:startup',
  summary: 'Start time and memory of the API: the compiled build (dist/, plain Node) against tsx.',
  options: {
    rounds: flag('rounds', '7', integer(1), 'starts of each runtime, in alternating order'),
    settleMs: flag('settle-ms', '3000', integer(0), 'ms after ready before the settled RSS is read'),
    noBuild: onOff('no-build', 'use dist/ as it is (no npm run build first)'),
  },
});
const SERVER = process.env.TEST_DATABASE_SERVER ?? 'postgres://root@127.0.0.1:5432';
const RUNTIMES = {
  dist: ['bin/telemetry-bus.js', 'start'],
  tsx: ['--import', 'tsx', 'src/cli/main.ts', 'start'],
} as const;
type Runtime = keyof typeof RUNTIMES;

interface Sample {
  runtime: Runtime;
  round: number;
  readyMs: number;
  cpuMsToReady: number | null;
  rssAtReadyMiB: number | null;
  rssSettledMiB: number | null;
  peakMiB: number | null;
}

const mib = (kib: number | undefined) => (kib === undefined ? null : round(kib / 1024, 1));

async function waitForHealth(child: ChildProcess, url: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the API exited with code ${child.exitCode} before ready`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(5);
  }
  throw new Error(`no 200 from ${url} within ${timeoutMs} ms`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

async function startOnce(runtime: Runtime, env: Record<string, string>, settleMs: number, roundNo: number) {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [...RUNTIMES[runtime]], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: 'ignore',
  });
  try {
    await waitForHealth(child, `http://127.0.0.1:${port}/health`, 60_000);
    const readyMs = performance.now() - started;
    const ticks = processTicks(child.pid);
    const rssAtReady = statusKib(child.pid, 'VmRSS');
    await sleep(settleMs);
    const sample: Sample = {
      runtime,
      round: roundNo,
      readyMs: round(readyMs, 0),
      cpuMsToReady: ticks === undefined ? null : (ticks.user + ticks.system) * 10,
      rssAtReadyMiB: mib(rssAtReady),
      rssSettledMiB: mib(statusKib(child.pid, 'VmRSS')),
      peakMiB: mib(statusKib(child.pid, 'VmHWM')),
    };
    return sample;
  } finally {
    await stop(child);
  }
}

async function main(): Promise<number> {
  const settings = cli.read();
  const { rounds, settleMs } = settings;
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  if (!settings.noBuild) {
    progress('building dist/ (npm run build)');
    execFileSync('npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, stdio: 'inherit' });
  }
  const database = `tb_bench_startup_${process.pid}`;
  const environments = new Environments();
  const samples: Sample[] = [];
  try {
    const bus = await environments.create();
    const appEnv = { ...bus.env, DATABASE_URL: await createDatabase(SERVER, database) };
    progress('untimed first start: database, migrations, admin key');
    await startOnce('dist', appEnv, 0, 0);
    for (let r = 1; r <= rounds; r++) {
      const order: Runtime[] = r % 2 === 1 ? ['tsx', 'dist'] : ['dist', 'tsx'];
      for (const runtime of order) {
        throwIfInterrupted();
        const sample = await startOnce(runtime, appEnv, settleMs, r);
        samples.push(sample);
        progress(
          `round ${r} ${runtime}: ready ${sample.readyMs} ms, CPU ${sample.cpuMsToReady} ms, RSS ${sample.rssAtReadyMiB} -> ${sample.rssSettledMiB} MiB, peak ${sample.peakMiB} MiB`,
        );
      }
    }
  } finally {
    await environments.removeAll();
    await dropDatabase(SERVER, database).catch(() => {});
  }
  const figure = (runtime: Runtime, key: keyof Omit<Sample, 'runtime' | 'round'>) => {
    const values = samples
      .filter((s) => s.runtime === runtime)
      .map((s) => s[key])
      .filter((v): v is number => v !== null);
    return values.length === 0
      ? 'n/a'
      : `${round(median(values), 1)} (${Math.min(...values)}–${Math.max(...values)})`;
  };
  const keys = ['readyMs', 'cpuMsToReady', 'rssAtReadyMiB', 'rssSettledMiB', 'peakMiB'] as const;
  const readyRatio =
    median(samples.filter((s) => s.runtime === 'dist').map((s) => s.readyMs)) /
    median(samples.filter((s) => s.runtime === 'tsx').map((s) => s.readyMs));
  await publishResults({
    name: 'startup',
    title: 'API start time and memory: dist (plain Node) against tsx',
    startedAt,
    sections: [
      {
        title: `median (min–max) of ${rounds} starts each`,
        columns: [
          'runtime',
          'ready ms',
          'CPU ms to ready',
          'RSS at ready MiB',
          'RSS settled MiB',
          'peak MiB',
        ],
        rows: (['tsx', 'dist'] as const).map((runtime) => [runtime, ...keys.map((k) => figure(runtime, k))]),
      },
    ],
    verdicts: [`dist is ready in ${round(readyRatio * 100, 0)}% of tsx's start time (medians)`],
    notes: {
      settings: [...cli.settingsBlock(settings), environmentText(env)],
      checks: [],
    },
    command: invocation('bench:startup'),
    report: { settings, environment: env, samples },
  });
  return 0;
}

runMain('startup', cli.help(), main);
