/**
 * Test-only fault injection for the publisher thread (test/faults/fault-matrix.test.ts, scenario 11):
 * the environment variable {@link CRASH_SWITCH} set to `<confirms>:<threads>` makes each of the first
 * `<threads>` starts of the thread crash once it has `<confirms>` confirms, before reporting the last of
 * them. Never set in production; it is not a configuration variable.
 */
export const CRASH_SWITCH = 'TELEMETRY_TEST_PUBLISHER_THREAD_CRASH';

/** The number of confirms after which thread start `incarnation` (from 0) crashes, or undefined. */
export function crashAfter(value: string | undefined, incarnation: number): number | undefined {
  const match = /^(\d+):(\d+)$/.exec(value ?? '');
  if (match === null || incarnation >= Number(match[2])) return undefined;
  return Number(match[1]);
}
