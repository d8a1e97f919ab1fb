/**
 * CPU accounting from Linux /proc, as in bench/registry-api.ts: which process had the cores during a run.
 * On a shared 2-core machine the process under test, the load generator, PostgreSQL and RabbitMQ compete,
 * so a rate alone does not say where the limit was. Everything is null where /proc is not there.
 */
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICK_US = 10_000; // USER_HZ is 100 on Linux

export interface Ticks {
  user: number;
  system: number;
}

export function processTicks(pid: number | undefined): Ticks | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]), system: Number(fields[12]) };
  } catch {
    return undefined;
  }
}

export interface MachineTicks {
  busy: number;
  total: number;
  steal: number;
}

export function machineTicks(): MachineTicks | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
    // cpu  user nice system idle iowait irq softirq steal …
    const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    const total = ticks.reduce((sum, value) => sum + value, 0);
    return { busy: total - idle, total, steal: ticks[7] ?? 0 };
  } catch {
    return undefined;
  }
}

/** The RabbitMQ node's Erlang VM (beam.smp running `rabbit boot`), not a rabbitmqctl one; undefined if none. */
export function findRabbitmqPid(): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (cmdline.includes('beam.smp') && cmdline.includes('rabbit\0boot')) return Number(entry);
      } catch {
        // Gone meanwhile, or not ours to read.
      }
    }
  } catch {
    // No /proc.
  }
  return undefined;
}

export interface CpuSnapshot {
  processes: Record<string, Ticks | undefined>;
  self: NodeJS.CpuUsage;
  machine: MachineTicks | undefined;
  at: number;
}

/** `pids` by the name the report gives them (e.g. `{ server: 1234, rabbitmq: 99 }`); this process is `self`. */
export function cpuSnapshot(pids: Record<string, number | undefined>): CpuSnapshot {
  const processes: Record<string, Ticks | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) processes[name] = processTicks(pid);
  return { processes, self: process.cpuUsage(), machine: machineTicks(), at: performance.now() };
}

export interface ProcessCpu {
  /** Share of one core, 1 = a whole core. */
  cores: number;
  userUs: number;
  systemUs: number;
}

export interface CpuUse {
  elapsedS: number;
  /** The named processes; null where /proc could not be read. */
  processes: Record<string, ProcessCpu | null>;
  /** This benchmark process. */
  self: ProcessCpu;
  /** Busy share of all cores, whoever used them (steal = taken by the hypervisor); 1 = every core busy. */
  machine: { busy: number; steal: number } | null;
}

export function cpuUse(before: CpuSnapshot, after: CpuSnapshot): CpuUse {
  const elapsedUs = (after.at - before.at) * 1000;
  const share = (us: number) => Math.round((100 * us) / elapsedUs) / 100;
  const of = (userUs: number, systemUs: number): ProcessCpu => ({
    cores: share(userUs + systemUs),
    userUs,
    systemUs,
  });
  const processes: Record<string, ProcessCpu | null> = {};
  for (const [name, start] of Object.entries(before.processes)) {
    const end = after.processes[name];
    processes[name] =
      start === undefined || end === undefined
        ? null
        : of((end.user - start.user) * CLOCK_TICK_US, (end.system - start.system) * CLOCK_TICK_US);
  }
  const machine =
    before.machine === undefined || after.machine === undefined
      ? null
      : (() => {
          const total = after.machine.total - before.machine.total;
          return {
            busy: Math.round((100 * (after.machine.busy - before.machine.busy)) / total) / 100,
            steal: Math.round((100 * (after.machine.steal - before.machine.steal)) / total) / 100,
          };
        })();
  return {
    elapsedS: Math.round(elapsedUs / 1000) / 1000,
    processes,
    self: of(after.self.user - before.self.user, after.self.system - before.self.system),
    machine,
  };
}

/** `0.93` or `n/a`. */
export const formatCores = (cpu: ProcessCpu | null | undefined): string =>
  cpu === null || cpu === undefined ? 'n/a' : cpu.cores.toFixed(2);

/** Cores used by every process not named in the snapshot nor this one: the noise on a shared machine. */
export function othersCores(cpu: CpuUse, cpus: number): string {
  if (cpu.machine === null) return 'n/a';
  let known = cpu.self.cores;
  for (const process of Object.values(cpu.processes)) {
    if (process === null) return 'n/a';
    known += process.cores;
  }
  return Math.max(0, cpu.machine.busy * cpus - known).toFixed(2);
}
