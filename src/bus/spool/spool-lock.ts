/**
 * One process per spool directory: two writers would hand out the same offsets and delete each other's
 * segments.
 *
 * The lock is a file holding the owner's pid and, where /proc exists, the owner's start time. A lock
 * whose owner is gone is taken over, since a kill -9 must never leave the spool unopenable. The start
 * time matters in containers: every restart runs as the same low pid (often 1), and a recycled pid must
 * not pass for the owner, or the service would refuse to start forever. The file is written whole under
 * a temporary name and hard-linked into place, so nobody ever reads a half-written lock.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../errors.ts';

export const LOCK_FILE = 'spool.lock';
const STAGING_PATTERN = /^spool\.lock\.(\d+)\.[0-9a-f-]+\.tmp$/;
/** The configuration variable that names the spool's parent directory, for the error. */
const DIRECTORY_VARIABLE = 'DATA_DIR';
/** Directories this process holds, by real path: the lock file alone cannot tell this process from a
 * previous one that had the same pid. */
const heldHere = new Set<string>();

interface LockOwner {
  pid: number;
  startTime?: string;
}

export class SpoolLock {
  #released = false;

  private constructor(
    readonly lockPath: string,
    private readonly key: string,
    private readonly owner: LockOwner,
  ) {}

  /** Throws a ConfigError naming the directory and the pid when a live process (or this one) holds it. */
  static acquire(directory: string): SpoolLock {
    const key = fs.realpathSync(directory);
    if (heldHere.has(key)) throw lockedError(directory, process.pid);
    const lockPath = path.join(directory, LOCK_FILE);
    const owner: LockOwner = { pid: process.pid };
    const startTime = processStartTime(process.pid);
    if (startTime !== undefined) owner.startTime = startTime;
    const staging = `${lockPath}.${process.pid}.${randomUUID()}.tmp`;
    fs.writeFileSync(staging, `${JSON.stringify(owner)}\n`);
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        if (place(staging, lockPath)) {
          heldHere.add(key);
          removeStrayStagingFiles(directory);
          return new SpoolLock(lockPath, key, owner);
        }
        const holder = readOwner(lockPath);
        if (holder === 'missing') continue;
        if (holder !== 'unreadable' && isAlive(holder)) throw lockedError(directory, holder.pid);
        try {
          fs.unlinkSync(lockPath);
        } catch (error) {
          if (!isCode(error, 'ENOENT')) throw error;
        }
      }
    } finally {
      fs.rmSync(staging, { force: true });
    }
    throw new ConfigError(
      DIRECTORY_VARIABLE,
      `could not lock spool directory ${directory}: ${lockPath} keeps changing`,
    );
  }

  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    heldHere.delete(this.key);
    const holder = readOwner(this.lockPath);
    if (
      typeof holder === 'object' &&
      holder.pid === this.owner.pid &&
      holder.startTime === this.owner.startTime
    ) {
      fs.rmSync(this.lockPath, { force: true });
    }
  }
}

/** Staging files of processes killed while taking the lock: nobody else would ever remove them. */
function removeStrayStagingFiles(directory: string): void {
  for (const name of fs.readdirSync(directory)) {
    const match = STAGING_PATTERN.exec(name);
    if (match === null) continue;
    const pid = Number(match[1]);
    if (pid > 0 && pid !== process.pid && !isAlive({ pid }))
      fs.rmSync(path.join(directory, name), { force: true });
  }
}

/** False when a lock file is already there. */
function place(staging: string, lockPath: string): boolean {
  try {
    fs.linkSync(staging, lockPath);
    return true;
  } catch (error) {
    if (isCode(error, 'EEXIST')) return false;
    if (!isCode(error, 'EPERM') && !isCode(error, 'ENOTSUP') && !isCode(error, 'EXDEV')) throw error;
  }
  // A file system without hard links: exclusive create, then write (a reader may briefly see it empty).
  try {
    fs.writeFileSync(lockPath, fs.readFileSync(staging), { flag: 'wx' });
    return true;
  } catch (error) {
    if (isCode(error, 'EEXIST')) return false;
    throw error;
  }
}

function readOwner(lockPath: string): LockOwner | 'missing' | 'unreadable' {
  let text: string;
  try {
    text = fs.readFileSync(lockPath, 'utf8');
  } catch (error) {
    if (isCode(error, 'ENOENT')) return 'missing';
    throw error;
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return 'unreadable';
    const { pid, startTime } = parsed as Record<string, unknown>;
    // pid 0 and negative pids would signal process groups: never pass them to process.kill.
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return 'unreadable';
    return typeof startTime === 'string' ? { pid, startTime } : { pid };
  } catch {
    return 'unreadable';
  }
}

function isAlive(owner: LockOwner): boolean {
  // This process holds no lock on the directory (checked first), so this is an earlier one with our pid.
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    // EPERM: alive, but another user's.
    if (isCode(error, 'ESRCH')) return false;
  }
  if (owner.startTime === undefined) return true;
  const startTime = processStartTime(owner.pid);
  return startTime === undefined || startTime === owner.startTime;
}

/** Field 22 of /proc/<pid>/stat (clock ticks after boot); undefined where there is no /proc. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields from its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

function lockedError(directory: string, pid: number): ConfigError {
  const who = pid === process.pid ? `this process (pid ${pid})` : `process ${pid}`;
  return new ConfigError(
    DIRECTORY_VARIABLE,
    `spool directory ${directory} is locked by ${who}, which is still running; give each process its own directory`,
  );
}

function isCode(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}
