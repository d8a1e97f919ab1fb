/**
 * Exit codes and Ctrl-C handling shared by the benchmarks (their options: options.ts): a bad value is a
 * usage error (exit 2); the first Ctrl-C stops the current run and falls through to the cleanup, a second
 * exits at once.
 */

export class UsageError extends Error {}

class Interrupted extends Error {}

const interruption = new AbortController();
const stoppers = new Set<() => void>();

export const interruptSignal: AbortSignal = interruption.signal;

export function handleSignals(): void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruption.signal.aborted) {
      process.stderr.write(`\n${signal} again: exiting without cleanup\n`);
      process.exit(130);
    }
    process.stderr.write(`\n${signal}: stopping, cleaning up (again to exit at once)\n`);
    interruption.abort(new Interrupted(`interrupted by ${signal}`));
    for (const stop of stoppers) stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

export function throwIfInterrupted(): void {
  interruption.signal.throwIfAborted();
}

/** Calls `stop` on Ctrl-C while `action` runs (e.g. to end an autocannon run early). */
export async function stoppable<T>(stop: () => void, action: () => Promise<T>): Promise<T> {
  stoppers.add(stop);
  try {
    return await action();
  } finally {
    stoppers.delete(stop);
  }
}

/** Settles with `promise`, or rejects as soon as the run is interrupted. */
export function interruptible<T>(promise: Promise<T>): Promise<T> {
  throwIfInterrupted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(interruption.signal.reason);
    interruption.signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => interruption.signal.removeEventListener('abort', onAbort));
  });
}

/** `ms` of waiting that Ctrl-C cuts short (with a rejection). */
export const sleep = (ms: number): Promise<void> =>
  interruptible(new Promise((resolve) => setTimeout(resolve, ms)));

/** Runs `main`: exit code its own, 2 on a usage error (with the help), 130 when interrupted, else 1. */
export function runMain(name: string, help: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const [code, message] =
        error instanceof UsageError
          ? [2, `${name} bench: ${error.message}\n\n${help}`]
          : error instanceof Interrupted
            ? [130, `[bench] ${error.message}; no results written\n`]
            : [
                1,
                `${name} bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
              ];
      process.stderr.write(message);
      process.exitCode = code;
    },
  );
}

/** Rejects if `promise` takes longer than `timeoutS` (naming `what`), or on Ctrl-C. */
export function bounded<T>(promise: Promise<T>, timeoutS: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${timeoutS} s`)), timeoutS * 1000);
  });
  return interruptible(Promise.race([promise, timeout]).finally(() => clearTimeout(timer)));
}

/** Polls `check` every `everyMs` until true: resolves with performance.now() then; rejects with its error. */
export function whenTrue(check: () => boolean, everyMs = 5): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      try {
        throwIfInterrupted();
        if (!check()) return;
        clearInterval(timer);
        resolve(performance.now());
      } catch (error) {
        clearInterval(timer);
        reject(error);
      }
    }, everyMs);
  });
}
