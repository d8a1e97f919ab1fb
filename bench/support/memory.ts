/**
 * Resident memory of the processes under test, from Linux /proc: a field of /proc/<pid>/status, and the
 * peak RSS of processes sampled every `intervalMs` (a peak shorter than the interval can be missed; a
 * process's own lifetime peak is VmHWM).
 */
import { readFileSync } from 'node:fs';

/** `VmRSS`, `VmHWM`, `RssAnon` … of /proc/<pid>/status, in KiB; undefined if unreadable. */
export function statusKib(pid: number | undefined, field: string): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** The same field in MiB (one decimal); null if unreadable. */
export function statusMiB(pid: number | undefined, field: string): number | null {
  const kib = statusKib(pid, field);
  return kib === undefined ? null : Math.round(kib / 102.4) / 10;
}

/** Peak RSS (MiB) of each process, by the name the report gives it, while it runs. */
export class PeakMemory {
  readonly #pids: Record<string, number | undefined>;
  readonly #peaksKib: Record<string, number> = {};
  readonly #timer: NodeJS.Timeout;

  constructor(targets: { processes: Record<string, number | undefined> }, intervalMs = 250) {
    this.#pids = targets.processes;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs).unref();
  }

  #sample(): void {
    for (const [name, pid] of Object.entries(this.#pids)) {
      const kib = statusKib(pid, 'VmRSS');
      if (kib !== undefined) this.#peaksKib[name] = Math.max(this.#peaksKib[name] ?? 0, kib);
    }
  }

  /** Stops sampling; the peaks in MiB (null where nothing could be read). */
  stop(): Record<string, number | null> {
    clearInterval(this.#timer);
    this.#sample();
    return Object.fromEntries(
      Object.keys(this.#pids).map((name) => {
        const kib = this.#peaksKib[name];
        return [name, kib === undefined ? null : Math.round(kib / 102.4) / 10];
      }),
    );
  }
}
