/**
 * Test support: `telemetry-bus <command>` as a child process of its own, with everything it writes kept
 * for assertions, and killed after the test file if still running — what the API and worker process
 * helpers start.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));

export interface CliProcess {
  child: ChildProcess;
  /** What it has written to stdout and stderr so far. */
  output(): string;
}

/** Runs the CLI with `args` and exactly `env` (plus PATH and LOG_LEVEL=info unless given). */
export function spawnCli(args: readonly string[], env: Record<string, string>): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output += chunk;
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return { child, output: () => output };
}
