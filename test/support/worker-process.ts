/**
 * Test support: `telemetry-bus worker` as a child process of its own — what the fault tests kill — with
 * its output kept for assertions, and killed after the test file if still running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { BusEnvironment } from '../helper.ts';

const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  /** What it has written to stdout and stderr so far. */
  output(): string;
}

export function startWorkerProcess(
  consumers: string,
  databaseUrl: string,
  bus: BusEnvironment,
  env: Record<string, string> = {},
): WorkerProcess {
  const child = spawn(process.execPath, [CLI, 'worker', '--consumers', consumers], {
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'info',
      DATABASE_URL: databaseUrl,
      ...bus.env,
      // A data directory per process, as the spool's lock requires.
      DATA_DIR: `${bus.env.DATA_DIR}/${randomUUID()}`,
      CONSUMER_PREFETCH: '500',
      CONSUMER_BATCH_SIZE: '250',
      ...env,
    },
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
