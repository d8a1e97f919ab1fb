/**
 * Peak resident memory of the processes under test, sampled from Linux /proc every `intervalMs` (a peak
 * shorter than the interval can be missed; a process's own lifetime peak is also in VmHWM, read apart).
 *
 * PostgreSQL is a process per connection: its figure is the sum over the backends connected to one
 * database (found by their process titles, as bench/support/postgres-cpu.ts does) of their private memory
 * (RssAnon). Their RSS would also count the shared buffers each has touched, many times over.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** `VmRSS`, `VmHWM`, `RssAnon` … of /proc/<pid>/status, in KiB; undefined if unreadable. */
export function statusKib(pid: number | undefined, field: string): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** The pids of the backends of `database` (children of the postmaster whose title names it). */
export function databaseBackends(postmaster: number | undefined, database: string): number[] {
  if (postmaster === undefined) return [];
  const pids: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        if (ppid !== postmaster) continue;
        // "postgres: 15/main: <user> <database> <host>(<port>) <state>"
        const words = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').split(/\s+/);
        if (words[3] === database) pids.push(Number(entry));
      } catch {
        // Gone meanwhile.
      }
    }
  } catch {
    // No /proc.
  }
  return pids;
}

export interface MemoryTargets {
  /** Single processes, by the name the report gives them. */
  processes: Record<string, number | undefined>;
  /** PostgreSQL: the postmaster and the database whose backends are summed (as `postgres`). */
  postgres?: { postmaster: number | undefined; database: string };
}

/** Peak RSS (MiB) of each target while it runs; `postgres` is the backends' private memory. */
export class PeakMemory {
  readonly #targets: MemoryTargets;
  readonly #peaksKib: Record<string, number> = {};
  #timer: NodeJS.Timeout | undefined;
  #backends: number[] = [];
  #samples = 0;

  constructor(targets: MemoryTargets, intervalMs = 250) {
    this.#targets = targets;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
    this.#timer.unref();
  }

  #sample(): void {
    this.#samples++;
    const record = (name: string, kib: number | undefined) => {
      if (kib !== undefined) this.#peaksKib[name] = Math.max(this.#peaksKib[name] ?? 0, kib);
    };
    for (const [name, pid] of Object.entries(this.#targets.processes)) record(name, statusKib(pid, 'VmRSS'));
    const postgres = this.#targets.postgres;
    if (postgres !== undefined) {
      // The backend list changes rarely (pools): refreshed every 8th sample, not every time.
      if (this.#samples % 8 === 1) this.#backends = databaseBackends(postgres.postmaster, postgres.database);
      let sum = 0;
      let any = false;
      for (const pid of this.#backends) {
        const kib = statusKib(pid, 'RssAnon');
        if (kib === undefined) continue;
        sum += kib;
        any = true;
      }
      if (any) record('postgres', sum);
    }
  }

  /** Stops sampling; the peaks in MiB (null where nothing could be read). */
  stop(): Record<string, number | null> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#sample();
    const names = [...Object.keys(this.#targets.processes), ...(this.#targets.postgres ? ['postgres'] : [])];
    return Object.fromEntries(
      names.map((name) => {
        const kib = this.#peaksKib[name];
        return [name, kib === undefined ? null : Math.round(kib / 102.4) / 10];
      }),
    );
  }
}
