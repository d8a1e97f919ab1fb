/**
 * CPU of the PostgreSQL server from Linux /proc: a postmaster and one process per connection (plus its
 * background workers), so no single pid tells what it used. A reading adds up the postmaster, every
 * process whose parent it is, and what its reaped children had used (cutime, cstime), so a backend ending
 * between two readings still counts. It is the whole server, other databases of a shared machine
 * included; the backends connected to one database are also read apart, by their process titles
 * (`postgres: 15/main: root <database> 127.0.0.1(…) …`, which PostgreSQL sets by default).
 */
import { readFileSync } from 'node:fs';
import { pids, readStat, type Ticks } from './cpu.ts';

/** The postmaster: a `postgres` process whose parent is not one. Undefined if there is none (or no /proc). */
export const findPostmasterPid = (): number | undefined =>
  pids().find((pid) => {
    const stat = readStat(pid);
    return stat?.comm === 'postgres' && readStat(stat.ppid)?.comm !== 'postgres';
  });

export interface PostgresTicks {
  /** The whole server. */
  server: Ticks;
  /** Per live backend pid, the ticks of backends connected to the database asked for. */
  database: Map<number, Ticks>;
}

/** One reading of the server's ticks, and of the backends of `database` (if given). */
export function postgresTicks(postmaster: number | undefined, database?: string): PostgresTicks | undefined {
  const main = postmaster === undefined ? undefined : readStat(postmaster);
  if (main === undefined) return undefined;
  const server = { user: main.user + main.children.user, system: main.system + main.children.system };
  const ofDatabase = new Map<number, Ticks>();
  for (const pid of pids()) {
    const stat = readStat(pid);
    if (stat === undefined || stat.ppid !== postmaster) continue;
    server.user += stat.user;
    server.system += stat.system;
    try {
      // "postgres: 15/main: <user> <database> <host>(<port>) <state>"
      const title = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split(/[\s\0]+/);
      if (database !== undefined && title[3] === database) ofDatabase.set(pid, stat);
    } catch {
      // Gone meanwhile.
    }
  }
  return { server, database: ofDatabase };
}

/**
 * Ticks the backends of a database used between two readings: one that started in between counts whole,
 * one that ended in between is left out (the benchmark's connections live through a run).
 */
export function databaseTicks(before?: PostgresTicks, after?: PostgresTicks): Ticks | undefined {
  if (before === undefined || after === undefined) return undefined;
  const ticks: Ticks = { user: 0, system: 0 };
  for (const [pid, end] of after.database) {
    const start = before.database.get(pid) ?? { user: 0, system: 0 };
    ticks.user += end.user - start.user;
    ticks.system += end.system - start.system;
  }
  return ticks;
}
