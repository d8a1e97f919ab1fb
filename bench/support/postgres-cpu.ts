/**
 * CPU of the PostgreSQL server from Linux /proc, for bench/support/cpu.ts's snapshots: PostgreSQL is a
 * postmaster and one process per connection (plus its background workers), so no single pid tells what
 * it used. A reading adds up every process whose parent is the postmaster, the postmaster itself, and the
 * postmaster's `cutime`/`cstime` (what its children that exited and were reaped had used), so a backend
 * ending between two readings is still counted. Everything is undefined where /proc is not there.
 *
 * It is the whole server: backends of other databases (the machine is shared) are in it too. The backends
 * connected to one database are also read apart (`databaseTicks`), from their process titles
 * (`postgres: 15/main: root <database> 127.0.0.1(…) …`), which PostgreSQL sets by default.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Ticks } from './cpu.ts';

interface ProcStat {
  comm: string;
  ppid: number;
  user: number;
  system: number;
  childUser: number;
  childSystem: number;
}

function readStat(pid: number | string): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    // Fields after "(comm) ": state (3) is at 0, ppid (4) at 1, utime (14) … cstime (17) at 11 … 14.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return {
      comm,
      ppid: Number(fields[1]),
      user: Number(fields[11]),
      system: Number(fields[12]),
      childUser: Number(fields[13]),
      childSystem: Number(fields[14]),
    };
  } catch {
    return undefined;
  }
}

/** The postmaster: a `postgres` process whose parent is not one. Undefined if there is none (or no /proc). */
export function findPostmasterPid(): number | undefined {
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = readStat(entry);
      if (stat?.comm !== 'postgres') continue;
      if (readStat(stat.ppid)?.comm !== 'postgres') return Number(entry);
    }
  } catch {
    // No /proc.
  }
  return undefined;
}

export interface PostgresTicks {
  /** The whole server. */
  server: Ticks;
  /** Per live backend pid, the ticks of backends connected to the database asked for. */
  database: Map<number, Ticks>;
}

/** One reading of the server's ticks, and of the backends of `database` (if given). */
export function postgresTicks(postmaster: number | undefined, database?: string): PostgresTicks | undefined {
  if (postmaster === undefined) return undefined;
  const main = readStat(postmaster);
  if (main === undefined) return undefined;
  const server: Ticks = {
    user: main.user + main.childUser,
    system: main.system + main.childSystem,
  };
  const ofDatabase = new Map<number, Ticks>();
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = readStat(entry);
      if (stat === undefined || stat.ppid !== postmaster) continue;
      server.user += stat.user;
      server.system += stat.system;
      if (database === undefined) continue;
      try {
        const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
        // "postgres: 15/main: <user> <database> <host>(<port>) <state>"
        const words = title.split(/\s+/);
        if (words.length > 3 && words[3] === database) {
          ofDatabase.set(Number(entry), { user: stat.user, system: stat.system });
        }
      } catch {
        // Gone meanwhile.
      }
    }
  } catch {
    return undefined;
  }
  return { server, database: ofDatabase };
}

/**
 * Ticks the backends of a database used between two readings: a backend that started in between counts
 * whole, one that ended in between is left out (the benchmark's connections live through a run).
 */
export function databaseTicks(
  before: PostgresTicks | undefined,
  after: PostgresTicks | undefined,
): Ticks | undefined {
  if (before === undefined || after === undefined) return undefined;
  const ticks: Ticks = { user: 0, system: 0 };
  for (const [pid, end] of after.database) {
    const start = before.database.get(pid) ?? { user: 0, system: 0 };
    ticks.user += end.user - start.user;
    ticks.system += end.system - start.system;
  }
  return ticks;
}
