/**
 * Linux /proc readings for the CPU figures (cpu-per-event.ts): a process's ticks, the machine's, and the
 * RabbitMQ node's pid. Everything is undefined where /proc is not there.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface Ticks {
  user: number;
  system: number;
}

interface ProcStat extends Ticks {
  comm: string;
  ppid: number;
  /** What its reaped children had used (cutime, cstime). */
  children: Ticks;
}

export function readStat(pid: number | string): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state (3) is at 0, ppid (4) at 1, utime (14) … cstime (17) at 11 … 14.
    const fields = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    return {
      comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      ppid: fields[1] as number,
      user: fields[11] as number,
      system: fields[12] as number,
      children: { user: fields[13] as number, system: fields[14] as number },
    };
  } catch {
    return undefined;
  }
}

export const processTicks = (pid: number | undefined): Ticks | undefined =>
  pid === undefined ? undefined : readStat(pid);

/** Every pid in /proc ([] where there is none). */
export function pids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number);
  } catch {
    return [];
  }
}

export function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
    // cpu  user nice system idle iowait irq softirq steal …
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = ticks.reduce((sum, value) => sum + value, 0);
    return { busy: total - (ticks[3] ?? 0) - (ticks[4] ?? 0), total };
  } catch {
    return undefined;
  }
}

/** The RabbitMQ node's Erlang VM (beam.smp running `rabbit boot`), not a rabbitmqctl one; undefined if none. */
export function findRabbitmqPid(): number | undefined {
  return pids().find((pid) => {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmdline.includes('beam.smp') && cmdline.includes('rabbit\0boot');
    } catch {
      return false; // Gone meanwhile, or not ours to read.
    }
  });
}

/**
 * Cores used by every process but `measured` (names in `cpu.processes`), from the machine's busy share:
 * the machine is shared, and a high figure means a disturbed run.
 */
export function othersCores(
  cpu: { machineBusy: number | null; processes: Record<string, { cores: number | null }> },
  cpus: number,
  measured: readonly string[],
): string {
  const known = measured.map((name) => cpu.processes[name]?.cores);
  if (cpu.machineBusy === null || known.some((cores) => cores == null)) return 'n/a';
  return Math.max(
    0,
    cpu.machineBusy * cpus - known.reduce((sum: number, cores) => sum + (cores ?? 0), 0),
  ).toFixed(2);
}
