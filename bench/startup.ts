/**
 * Start time and memory of the API process, from the compiled build (dist/, plain Node: what `npm start`
 * runs) against the TypeScript sources through tsx. Method: bench/README.md ("bench:startup").
 */
import { execFileSync } from 'node:child_process';
import { Environments } from './support/broker.ts';
import { processTicks } from './support/cpu.ts';
import { createDatabase, dropDatabase, PG_SERVER_OPTION } from './support/databases.ts';
import { statusMiB } from './support/memory.ts';
import { commandLine, flag, integer, onOff } from './support/options.ts';
import {
  environment,
  environmentText,
  commandLine as invocation,
  progress,
  publishResults,
  REPO_ROOT,
  round,
  table,
} from './support/report.ts';
import { handleSignals, runMain, sleep, throwIfInterrupted } from './support/settings.ts';
import { median } from './support/stats.ts';
import { freePort, startCli, stopProcess, waitForHttp } from './support/system-process.ts';

const cli = commandLine({
  script: 'bench:startup',
  summary: 'Start time and memory of the API: the compiled build (dist/, plain Node) against tsx.',
  options: {
    rounds: flag('rounds', '7', integer(1), 'starts of each runtime, in alternating order'),
    settleMs: flag('settle-ms', '3000', integer(0), 'ms after ready before the settled RSS is read'),
    noBuild: onOff('no-build', 'use dist/ as it is (no npm run build first)'),
    pgServerUrl: PG_SERVER_OPTION,
  },
});
/**
 * How each runtime starts. dist/ directly, not through bin/telemetry-bus.js, which runs the sources under
 * tsx when a source file is newer than the build (after a pull with --no-build): "dist" would be tsx.
 */
const RUNTIMES = {
  tsx: { nodeArgs: ['--import', 'tsx'], script: 'src/cli/main.ts' },
  dist: { script: 'dist/cli/main.js' },
};
type Runtime = keyof typeof RUNTIMES;

async function startOnce(runtime: Runtime, env: Record<string, string>, settleMs: number, roundNo: number) {
  const port = await freePort();
  const started = performance.now();
  const api = startCli(
    `api (${runtime})`,
    ['start'],
    { ...env, PORT: String(port) },
    undefined,
    RUNTIMES[runtime],
  );
  try {
    // Polled every 5 ms: the start time's resolution.
    await waitForHttp(api, `http://127.0.0.1:${port}/health`, 60_000, 5);
    const readyMs = round(performance.now() - started, 0);
    const ticks = processTicks(api.pid);
    const rssAtReadyMiB = statusMiB(api.pid, 'VmRSS');
    await sleep(settleMs);
    return {
      runtime,
      round: roundNo,
      readyMs,
      cpuMsToReady: ticks === undefined ? null : (ticks.user + ticks.system) * 10,
      rssAtReadyMiB,
      rssSettledMiB: statusMiB(api.pid, 'VmRSS'),
      peakMiB: statusMiB(api.pid, 'VmHWM'),
    };
  } finally {
    await stopProcess(api);
  }
}

type Sample = Awaited<ReturnType<typeof startOnce>>;
type Figure = Exclude<keyof Sample, 'runtime' | 'round'>;

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
    const appEnv = { ...bus.env, DATABASE_URL: await createDatabase(settings.pgServerUrl, database) };
    progress('untimed first start: database, migrations, admin key');
    await startOnce('dist', appEnv, 0, 0);
    for (let r = 1; r <= rounds; r++) {
      for (const runtime of r % 2 === 1 ? (['tsx', 'dist'] as const) : (['dist', 'tsx'] as const)) {
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
    await dropDatabase(settings.pgServerUrl, database).catch(() => {});
  }
  const values = (runtime: Runtime, key: Figure) =>
    samples.flatMap((s) => (s.runtime === runtime && s[key] !== null ? [s[key] as number] : []));
  const figure = (key: Figure) => (runtime: Runtime) => {
    const of = values(runtime, key);
    return of.length === 0 ? 'n/a' : `${round(median(of), 1)} (${Math.min(...of)}–${Math.max(...of)})`;
  };
  const readyRatio = median(values('dist', 'readyMs')) / median(values('tsx', 'readyMs'));
  await publishResults({
    name: 'startup',
    title: 'API start time and memory: dist (plain Node) against tsx',
    startedAt,
    sections: [
      table(`median (min–max) of ${rounds} starts each`, ['tsx', 'dist'] as const, {
        runtime: (runtime) => runtime,
        'ready ms': figure('readyMs'),
        'CPU ms to ready': figure('cpuMsToReady'),
        'RSS at ready MiB': figure('rssAtReadyMiB'),
        'RSS settled MiB': figure('rssSettledMiB'),
        'peak MiB': figure('peakMiB'),
      }),
    ],
    verdicts: [`dist is ready in ${round(readyRatio * 100, 0)}% of tsx's start time (medians)`],
    notes: { settings: [...cli.settingsBlock(settings), environmentText(env)], checks: [] },
    command: invocation('bench:startup'),
    report: { settings, environment: env, samples },
  });
  return 0;
}

runMain('startup', cli.help(), main);
