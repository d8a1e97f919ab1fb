/**
 * The system under test as separate processes: `bin/telemetry-bus.js <command>` (start, worker, keys …)
 * started exactly as an operator would, with an environment of the benchmark's own. Each is a process
 * group of its own (a terminal's Ctrl-C reaches only the benchmark, which stops them with SIGTERM) and is
 * SIGKILLed if the benchmark exits without stopping it, so none outlives a benchmark that died.
 *
 * Log lines (JSON on stdout, pino) at warn or above, and anything on stderr, are kept as warnings and
 * echoed to stderr with the process's name; the last lines are kept to explain an early exit.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { progress, REPO_ROOT } from './report.ts';
import { interruptible } from './settings.ts';

export const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));

export interface SystemProcess {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Log lines at warn or above, and stderr lines that are not JSON. */
  warnings: string[];
  /** The last 30 lines of output, for an early exit's error message. */
  tail: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when a stdout line satisfies `match` (checked on lines from now on and already seen). */
  waitForLine(match: (entry: Record<string, unknown>) => boolean, timeoutMs: number): Promise<void>;
}

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Exit code 0 within the grace period, not killed. */
  clean: boolean;
  stopMs: number;
}

/** A free TCP port on 127.0.0.1 right now (for PORT=; the race with another process is accepted). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null ? resolve(address.port) : reject(),
      );
    });
  });
}

/** Runs a CLI command to completion (e.g. `keys create`); resolves with its stdout. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: timeoutMs },
      (error, stdout, stderr) => {
        if (error !== null) reject(new Error(`telemetry-bus ${args.join(' ')}: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/**
 * Starts `telemetry-bus <args>` with `env` added to this process's environment. `isOutput` tells the
 * process's own output (e.g. the error log the logging consumer also writes to stdout, at level warn) from
 * its warnings.
 */
export function startCli(
  name: string,
  args: string[],
  env: Record<string, string>,
  isOutput: (entry: Record<string, unknown>) => boolean = () => false,
  launch: {
    /** Node options before the CLI's path (e.g. `--cpu-prof`, `--import` of a probe). */
    nodeArgs?: string[];
    /** An IPC channel (for a probe preloaded with `--import`). */
    ipc?: boolean;
    /** Another entry point than bin/telemetry-bus.js (e.g. src/cli/main.ts under tsx). */
    script?: string;
  } = {},
): SystemProcess {
  const child = spawn(process.execPath, [...(launch.nodeArgs ?? []), launch.script ?? CLI, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: launch.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      process.removeListener('exit', killOnExit);
      resolve({ code, signal });
    });
  });
  const warnings: string[] = [];
  const tail: string[] = [];
  const seen: Record<string, unknown>[] = [];
  const watchers = new Set<(entry: Record<string, unknown>) => void>();
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > 30) tail.shift();
  };
  const warn = (line: string) => {
    warnings.push(line);
    if (warnings.length <= 20) process.stderr.write(`[${name}] ${line}\n`);
    else if (warnings.length === 21) process.stderr.write(`[${name}] (more warnings: see the results)\n`);
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    keep(line);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof entry.level === 'number' && entry.level >= 40 && !isOutput(entry)) warn(line);
    if (seen.length < 200) seen.push(entry);
    for (const watcher of watchers) watcher(entry);
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    keep(line);
    warn(line);
  });
  const waitForLine = (match: (entry: Record<string, unknown>) => boolean, timeoutMs: number) =>
    interruptible(
      new Promise<void>((resolve, reject) => {
        if (seen.some(match)) return resolve();
        const timer = setTimeout(() => {
          watchers.delete(watcher);
          reject(new Error(`${name} not ready within ${timeoutMs / 1000} s:\n${tail.join('\n')}`));
        }, timeoutMs);
        const watcher = (entry: Record<string, unknown>) => {
          if (!match(entry)) return;
          clearTimeout(timer);
          watchers.delete(watcher);
          resolve();
        };
        watchers.add(watcher);
        void exited.then(({ code, signal }) => {
          clearTimeout(timer);
          watchers.delete(watcher);
          reject(
            new Error(
              `${name} exited (code ${code}, signal ${signal}) before it was ready:\n${tail.join('\n')}`,
            ),
          );
        });
      }),
    );
  return { name, child, pid: child.pid, warnings, tail, exited, waitForLine };
}

/** SIGTERM (a graceful shutdown), then SIGKILL after `graceMs`. */
export async function stopProcess(process_: SystemProcess, graceMs = 30_000): Promise<ProcessExit> {
  const started = Date.now();
  const { child } = process_;
  const running = () => child.exitCode === null && child.signalCode === null;
  if (running()) child.kill('SIGTERM');
  let killed = false;
  const timer = setTimeout(() => {
    if (!running()) return;
    killed = true;
    progress(`${process_.name} did not stop within ${graceMs / 1000} s: SIGKILL`);
    child.kill('SIGKILL');
  }, graceMs);
  const { code, signal } = await process_.exited;
  clearTimeout(timer);
  return { code, signal, clean: code === 0 && !killed, stopMs: Date.now() - started };
}

/** Polls `url` every `everyMs` until it answers 200, for up to `timeoutMs`; fails at once if the process exits. */
export async function waitForHttp(
  process_: SystemProcess,
  url: string,
  timeoutMs: number,
  everyMs = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void process_.exited.then(() => {
    exited = true;
  });
  for (;;) {
    if (exited) throw new Error(`${process_.name} exited before it answered:\n${process_.tail.join('\n')}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${process_.name} did not answer ${url} within ${timeoutMs / 1000} s:\n${process_.tail.join('\n')}`,
      );
    }
    await interruptible(new Promise((resolve) => setTimeout(resolve, everyMs)));
  }
}
