/**
 * `telemetry-bus bench [options]`: the end-to-end benchmark, the same script as `npm run bench`
 * (bench/e2e.ts, which documents what it runs and measures), in a child process with this terminal.
 * Its options pass through untouched (`telemetry-bus bench --quick`, `telemetry-bus bench --help`).
 * The benchmark lives in the repository's bench/ folder: it needs a checkout with its dev dependencies.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CliError } from './cli-error.ts';

const SCRIPT = fileURLToPath(new URL('../../bench/e2e.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function bench(args: readonly string[]): Promise<void> {
  if (!existsSync(SCRIPT)) {
    throw new CliError(`the benchmark needs a checkout of the repository (${SCRIPT} is missing)`, {
      exitCode: 2,
    });
  }
  const passed = args[0] === '--' ? args.slice(1) : args;
  const child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, ...passed], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  // Ctrl-C reaches the benchmark too (same process group): it stops its run and cleans up; this process
  // only waits for it, so the cleanup is never cut short.
  const ignore = () => {};
  process.on('SIGINT', ignore);
  process.on('SIGTERM', ignore);
  const code = await new Promise<number>((resolve) => {
    child.once('error', () => resolve(1));
    child.once('exit', (exitCode, signal) => resolve(exitCode ?? (signal === null ? 1 : 128 + 2)));
  });
  process.exitCode = code;
}
