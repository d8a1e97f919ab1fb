/**
 * Test support: `telemetry-bus start` as a child process of its own — what the fault tests kill -9 and
 * restart on the same data directory — with its output kept for assertions, and killed after the test
 * file if still running.
 */
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnCli } from './cli-process.ts';

/** How the first start of a database prints the admin key it made (indented on a line of its own). */
const ADMIN_KEY_LINE = /^ {4}(tb_[A-Za-z0-9_-]{43})$/m;

export interface ApiProcess {
  child: ChildProcess;
  /** Where it listens, e.g. http://127.0.0.1:41234. */
  url: string;
  /** The admin key printed on the first start of a database; undefined on later starts. */
  adminKey: string | undefined;
  /** What it has written to stdout and stderr so far. */
  output(): string;
}

export interface ApiProcessOptions {
  /** Give up if it has not said where it listens after this long, in ms. @default 30_000 */
  startTimeoutMs?: number;
}

/** Starts the API on an ephemeral port with `env` (DATABASE_URL, RABBITMQ_URL, DATA_DIR, …). */
export async function startApiProcess(
  env: Record<string, string>,
  options: ApiProcessOptions = {},
): Promise<ApiProcess> {
  const { child, output } = spawnCli(['start'], { PORT: '0', ...env });
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  for (;;) {
    const url = /"url":"(http:[^"]+)"/.exec(output())?.[1];
    if (url !== undefined) {
      return { child, url, adminKey: ADMIN_KEY_LINE.exec(output())?.[1], output };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the API did not start:\n${output()}`);
    }
    await sleep(50);
  }
}
