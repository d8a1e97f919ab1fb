/**
 * Test support: `telemetry-bus worker` as a child process of its own — what the fault tests kill — with
 * its output kept for assertions, and killed after the test file if still running.
 */
import { randomUUID } from 'node:crypto';
import type { BusEnvironment } from '../helper.ts';
import { type CliProcess, spawnCli } from './cli-process.ts';

export type WorkerProcess = CliProcess;

export function startWorkerProcess(
  consumers: string,
  databaseUrl: string,
  bus: BusEnvironment,
  env: Record<string, string> = {},
): WorkerProcess {
  return spawnCli(['worker', '--consumers', consumers], {
    DATABASE_URL: databaseUrl,
    ...bus.env,
    // A data directory per process, as the spool's lock requires.
    DATA_DIR: `${bus.env.DATA_DIR}/${randomUUID()}`,
    CONSUMER_PREFETCH: '500',
    CONSUMER_BATCH_SIZE: '250',
    ...env,
  });
}
