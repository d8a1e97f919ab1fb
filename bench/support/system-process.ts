/**
 * The system under test as separate processes: `bin/telemetry-bus.js <command>` (start, worker, keys …)
 * started exactly as an operator would, with an environment of the benchmark's own. Each is a process
 * group of its own (a terminal's Ctrl-C reaches only the benchmark, which stops them with SIGTERM) and is
 * SIGKILLed if the benchmark exits without stopping it. Log lines (pino JSON on stdout) at warn or above,
 * and anything on stderr, are kept as warnings and echoed with the process's name; the last 30 lines are
 * kept to explain an early exit.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { progress, REPO_ROOT } from './report.ts';
import { bounded, interruptible } from './settings.ts';

export const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));

type Exit = { code: number | null; signal: NodeJS.Signals | null };
type LogEntry = Record<string, unknown>;

export interface SystemProcess {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Log lines at warn or above, and stderr lines. */
  warnings: string[];
  /** The last 30 lines of output. */
  tail: string[];
  exited: Promise<Exit>;
  /** Resolves when a stdout line (seen already or to come) satisfies `match`. */
  waitForLine(match: (entry: LogEntry) => boolean, timeoutMs: number): Promise<void>;
}

export interface ProcessExit extends Exit {
  /** Exit code 0 within the grace period, not killed. */
  clean: boolean;
  stopMs: number;
}

/** A free TCP port on 127.0.0.1 right now (for PORT=; the race with another process is accepted). */
export async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Runs a CLI command to completion (e.g. `keys create`); resolves with its stdout. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const options = { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: timeoutMs };
    execFile(process.execPath, [CLI, ...args], options, (error, stdout, stderr) =>
      error === null
        ? resolve(stdout)
        : reject(new Error(`telemetry-bus ${args.join(' ')}: ${error.message}\n${stderr}`)),
    );
  });
}

/**
 * Starts `telemetry-bus <args>` with `env` added to this process's environment. `isOutput` tells the
 * process's own output (e.g. the error log the logging consumer also writes to stdout) from its warnings;
 * `launch.nodeArgs` go before the CLI's path, `launch.ipc` opens an IPC channel (for a preloaded probe).
 */
export function startCli(
  name: string,
  args: string[],
  env: Record<string, string>,
  isOutput: (entry: LogEntry) => boolean = () => false,
  /** Node options before the CLI's path, an IPC channel (for a preloaded probe), another entry point. */
  launch: { nodeArgs?: string[]; ipc?: boolean; script?: string } = {},
): SystemProcess {
  const child = spawn(process.execPath, [...(launch.nodeArgs ?? []), launch.script ?? CLI, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', ...(launch.ipc ? (['ipc'] as const) : [])],
    detached: true,
  });
  if (child.pid === undefined) throw new Error(`could not start ${name}`);
  const running = () => child.exitCode === null && child.signalCode === null;
  const killOnExit = () => running() && child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = once(child, 'exit').then(([code, signal]): Exit => {
    process.removeListener('exit', killOnExit);
    return { code, signal };
  });
  const warnings: string[] = [];
  const tail: string[] = [];
  const seen: LogEntry[] = [];
  const watchers = new Set<(entry: LogEntry) => void>();
  const keep = (line: string) => tail.push(line) > 30 && tail.shift();
  const warn = (line: string) => {
    warnings.push(line);
    if (warnings.length <= 20) process.stderr.write(`[${name}] ${line}\n`);
    else if (warnings.length === 21) process.stderr.write(`[${name}] (more warnings: see the results)\n`);
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    keep(line);
    try {
      const entry = JSON.parse(line) as LogEntry;
      if (typeof entry.level === 'number' && entry.level >= 40 && !isOutput(entry)) warn(line);
      if (seen.length < 200) seen.push(entry);
      for (const watcher of watchers) watcher(entry);
    } catch {
      // Not a log line.
    }
  });
  createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (line) => {
    keep(line);
    warn(line);
  });
  const waitForLine = (match: (entry: LogEntry) => boolean, timeoutMs: number) =>
    bounded(
      new Promise<void>((resolve, reject) => {
        if (seen.some(match)) return resolve();
        const watcher = (entry: LogEntry) => match(entry) && resolve();
        watchers.add(watcher);
        void exited.then(() => reject(new Error(`${name} exited before it was ready:\n${tail.join('\n')}`)));
      }),
      timeoutMs / 1000,
      `${name} getting ready`,
    );
  return { name, child, pid: child.pid, warnings, tail, exited, waitForLine };
}

/** SIGTERM (a graceful shutdown), then SIGKILL after `graceMs`. */
export async function stopProcess(process_: SystemProcess, graceMs = 30_000): Promise<ProcessExit> {
  const started = Date.now();
  const { child } = process_;
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  let killed = false;
  const timer = setTimeout(() => {
    killed = child.exitCode === null && child.signalCode === null;
    if (killed) progress(`${process_.name} did not stop within ${graceMs / 1000} s: SIGKILL`);
    if (killed) child.kill('SIGKILL');
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
  const { name, child, tail } = process_;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`${name} exited before it answered:\n${tail.join('\n')}`);
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) }).catch(() => undefined); // Not up yet.
    await response?.arrayBuffer();
    if (response?.status === 200) return;
    if (Date.now() > deadline)
      throw new Error(`${name} did not answer ${url} within ${timeoutMs / 1000} s:\n${tail.join('\n')}`);
    await interruptible(new Promise((resolve) => setTimeout(resolve, everyMs)));
  }
}
