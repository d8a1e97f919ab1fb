/**
 * The OS identity of the calling thread, so that the publisher thread can be told apart from the
 * process's other threads in `top -H`, `/proc/<pid>/task/` and per-thread CPU figures: Node 20 names
 * every thread `node` and gives a worker no way to learn its kernel thread id.
 *
 * On Linux, `/proc/thread-self` is a link to `<pid>/task/<tid>` of the thread that reads it, and a
 * synchronous fs call runs on the calling thread (not on libuv's pool), so reading it from a worker gives
 * the worker's tid. Its `comm` file is the name `top -H` and `ps -L` show (at most 15 bytes).
 */
import fs from 'node:fs';

/**
 * Names the calling thread `name` (best effort) and returns its tid; null where there is no
 * `/proc/thread-self` (not Linux, or /proc not mounted).
 */
export function identifyThread(name: string): number | null {
  let link: string;
  try {
    link = fs.readlinkSync('/proc/thread-self');
  } catch {
    return null;
  }
  const tid = Number(link.slice(link.lastIndexOf('/') + 1));
  if (!Number.isSafeInteger(tid) || tid <= 0) return null;
  try {
    fs.writeFileSync('/proc/thread-self/comm', name.slice(0, 15));
  } catch {
    // Only the name is lost: the tid is what the figures need.
  }
  return tid;
}
