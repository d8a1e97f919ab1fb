/**
 * CPU per event: what each process of the pipeline spent on a phase, from Linux /proc, divided by the
 * events of the phase, in µs of CPU per event. So a figure says which part of the pipeline to cut, where
 * a rate alone only says that the machine was full.
 *
 * Measured over a phase (`CpuMeter.start()` … `stop(events)`):
 * - processes by the name the report gives them (`api`, `worker`, `rabbitmq` …): utime + stime of
 *   /proc/<pid>/stat (all threads);
 * - `postgres`: the backends connected to the benchmark's database (postgres-cpu.ts), and
 *   `postgres (server)`: the whole server, other databases of a shared machine included;
 * - `load generator`: this process (process.cpuUsage());
 * - per thread of the processes named in `threadsOf` (the API): /proc/<pid>/task/<tid>/stat, the main
 *   thread (tid = pid: the request thread) apart from every helper thread (libuv pool, V8 platform,
 *   worker_threads: Node 20 names them all `node`, so they are told apart by tid).
 *
 * The figures are whole-process CPU over the phase's wall time, so a process's idle background work
 * (timers, pollers) counts too, as it should: it is part of what the machine pays per event.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { machineTicks, processTicks, type Ticks } from './cpu.ts';
import { databaseTicks, type PostgresTicks, postgresTicks } from './postgres-cpu.ts';

const CLOCK_TICK_US = 10_000; // USER_HZ is 100 on Linux

export interface ThreadTicks {
  tid: number;
  name: string;
  ticks: Ticks;
}

/** Every thread of `pid`, or [] where /proc is not there. */
export function threadTicks(pid: number): ThreadTicks[] {
  const threads: ThreadTicks[] = [];
  try {
    for (const entry of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${entry}/stat`, 'utf8');
        const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        threads.push({
          tid: Number(entry),
          name,
          ticks: { user: Number(fields[11]), system: Number(fields[12]) },
        });
      } catch {
        // The thread ended meanwhile.
      }
    }
  } catch {
    // No /proc, or the process is gone.
  }
  return threads;
}

export interface CpuFigure {
  /** µs of CPU (user + system) over the phase; null where it could not be read. */
  cpuUs: number | null;
  /** Share of one core over the phase. */
  cores: number | null;
  /** cpuUs ÷ events. */
  usPerEvent: number | null;
}

export interface ThreadFigure extends CpuFigure {
  tid: number;
  name: string;
  /** 'main (request thread)' for tid = pid, else 'helper'. */
  role: 'main' | 'helper';
}

export interface CpuPerEvent {
  elapsedS: number;
  events: number;
  /** By process name, plus `postgres`, `postgres (server)` and `load generator`. */
  processes: Record<string, CpuFigure>;
  /** Per thread, for the processes in `threadsOf`; threads that used no CPU are left out. */
  threads: Record<string, ThreadFigure[]>;
  /** Sum of the pipeline's processes (all but `postgres (server)`), per event. */
  totalUsPerEvent: number | null;
  /** Busy share of all the machine's cores, whoever used them. */
  machineBusy: number | null;
}

export interface CpuMeterOptions {
  processes: Record<string, number | undefined>;
  postgres?: { postmaster: number | undefined; database: string };
  /** Names (keys of `processes`) whose threads are read apart. */
  threadsOf?: readonly string[];
  /** Leave the load generator (this process) out of the total, e.g. when it is not part of the system. */
  loadGenerator?: boolean;
}

interface Reading {
  at: number;
  processes: Record<string, Ticks | undefined>;
  threads: Record<string, ThreadTicks[]>;
  postgres: PostgresTicks | undefined;
  self: NodeJS.CpuUsage;
  machine: ReturnType<typeof machineTicks>;
}

export class CpuMeter {
  readonly #options: CpuMeterOptions;
  #before: Reading | undefined;

  constructor(options: CpuMeterOptions) {
    this.#options = options;
  }

  #read(): Reading {
    const processes: Record<string, Ticks | undefined> = {};
    for (const [name, pid] of Object.entries(this.#options.processes)) processes[name] = processTicks(pid);
    const threads: Record<string, ThreadTicks[]> = {};
    for (const name of this.#options.threadsOf ?? []) {
      const pid = this.#options.processes[name];
      threads[name] = pid === undefined ? [] : threadTicks(pid);
    }
    const pg = this.#options.postgres;
    return {
      at: performance.now(),
      processes,
      threads,
      postgres: pg === undefined ? undefined : postgresTicks(pg.postmaster, pg.database),
      self: process.cpuUsage(),
      machine: machineTicks(),
    };
  }

  start(): void {
    this.#before = this.#read();
  }

  /** The phase's CPU since start(), per `events` events. */
  stop(events: number): CpuPerEvent {
    const before = this.#before;
    if (before === undefined) throw new Error('CpuMeter.stop() before start()');
    const after = this.#read();
    const elapsedUs = (after.at - before.at) * 1000;
    const figure = (cpuUs: number | null): CpuFigure => ({
      cpuUs,
      cores: cpuUs === null ? null : Math.round((100 * cpuUs) / elapsedUs) / 100,
      usPerEvent: cpuUs === null || events <= 0 ? null : Math.round((10 * cpuUs) / events) / 10,
    });
    const ticksUs = (start: Ticks | undefined, end: Ticks | undefined) =>
      start === undefined || end === undefined
        ? null
        : (end.user + end.system - start.user - start.system) * CLOCK_TICK_US;
    const processes: Record<string, CpuFigure> = {};
    for (const name of Object.keys(this.#options.processes)) {
      processes[name] = figure(ticksUs(before.processes[name], after.processes[name]));
    }
    if (this.#options.postgres !== undefined) {
      const db = databaseTicks(before.postgres, after.postgres);
      processes.postgres = figure(db === undefined ? null : (db.user + db.system) * CLOCK_TICK_US);
      processes['postgres (server)'] = figure(ticksUs(before.postgres?.server, after.postgres?.server));
    }
    processes['load generator'] = figure(
      after.self.user + after.self.system - before.self.user - before.self.system,
    );
    const threads: Record<string, ThreadFigure[]> = {};
    for (const name of this.#options.threadsOf ?? []) {
      const pid = this.#options.processes[name];
      const earlier = new Map((before.threads[name] ?? []).map((thread) => [thread.tid, thread.ticks]));
      threads[name] = (after.threads[name] ?? [])
        .map((thread) => ({
          tid: thread.tid,
          name: thread.name,
          role: thread.tid === pid ? ('main' as const) : ('helper' as const),
          ...figure(ticksUs(earlier.get(thread.tid) ?? { user: 0, system: 0 }, thread.ticks)),
        }))
        .filter((thread) => thread.role === 'main' || (thread.cpuUs ?? 0) > 0)
        .sort((a, b) => (a.role === b.role ? (b.cpuUs ?? 0) - (a.cpuUs ?? 0) : a.role === 'main' ? -1 : 1));
    }
    let total: number | null = 0;
    for (const [name, value] of Object.entries(processes)) {
      if (name === 'postgres (server)') continue;
      if (name === 'load generator' && this.#options.loadGenerator === false) continue;
      total = value.usPerEvent === null || total === null ? null : total + value.usPerEvent;
    }
    const machineBusy =
      before.machine === undefined || after.machine === undefined
        ? null
        : Math.round(
            (100 * (after.machine.busy - before.machine.busy)) / (after.machine.total - before.machine.total),
          ) / 100;
    return {
      elapsedS: Math.round(elapsedUs / 1000) / 1000,
      events,
      processes,
      threads,
      totalUsPerEvent: total === null ? null : Math.round(total * 10) / 10,
      machineBusy,
    };
  }
}

/** `123.4` or `n/a`. */
export const formatUs = (value: number | null | undefined): string =>
  value === null || value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(1);

/** The per-process table's columns (cpuCells gives a row's cells). */
export const CPU_COLUMNS = [
  'API',
  'API request thread',
  'API other threads',
  'worker',
  'RabbitMQ',
  'PostgreSQL',
  'load generator',
  'total',
  'machine busy',
];

/** µs per event of the API (and its request thread, and the rest of its threads), worker, … and the total. */
export function cpuCells(cpu: CpuPerEvent): string[] {
  const threads = cpu.threads.api ?? [];
  const of = (name: string) =>
    cpu.processes[name] === undefined ? '' : formatUs(cpu.processes[name].usPerEvent);
  return [
    of('api'),
    formatUs(threads.find((t) => t.role === 'main')?.usPerEvent),
    formatUs(threads.filter((t) => t.role === 'helper').reduce((sum, t) => sum + (t.usPerEvent ?? 0), 0)),
    of('worker'),
    of('rabbitmq'),
    of('postgres'),
    of('load generator'),
    formatUs(cpu.totalUsPerEvent),
    cpu.machineBusy === null ? 'n/a' : `${Math.round(cpu.machineBusy * 100)}%`,
  ];
}
