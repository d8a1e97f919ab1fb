/**
 * Test support: polls a condition until it holds, or fails naming what it waited for — the one wait
 * the broker, spool and consumer tests all need.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** Time between checks, in ms. @default 25 */
  intervalMs?: number;
  /** Treat a check that throws as not yet true (e.g. while PostgreSQL restarts). @default false */
  ignoreErrors?: boolean;
}

export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  options: WaitOptions = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      if (!options.ignoreErrors) throw error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(options.intervalMs ?? 25);
  }
}
