/**
 * CPU per event: what each process of the pipeline spent on a phase, from Linux /proc (utime + stime),
 * divided by the phase's events, in µs of CPU per event, so a figure says which part to cut. Processes by
 * the name the report gives them; `postgres`: the backends of the benchmark's database (postgres-cpu.ts),
 * `postgres (server)`: the whole server; `load generator`: this process; per thread for the processes in
 * `threadsOf` (the API: its main thread, tid = pid, serves requests). Method: bench/README.md.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { machineTicks, processTicks, type Ticks } from './cpu.ts';
import { databaseTicks, postgresTicks } from './postgres-cpu.ts';
import type { Columns } from './report.ts';

const CLOCK_TICK_US = 10_000; // USER_HZ is 100 on Linux

interface ThreadTicks {
  tid: number;
  name: string;
  ticks: Ticks;
}

/** Every thread of `pid` (Node 20 names them all `node`: told apart by tid), or [] without /proc. */
export function threadTicks(pid: number): ThreadTicks[] {
  const threads: ThreadTicks[] = [];
  try {
    for (const entry of readdirSync(`/proc/${pid}/task`)) {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${entry}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
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

interface CpuFigure {
  /** µs of CPU (user + system) over the phase; null where it could not be read. */
  cpuUs: number | null;
  /** Share of one core over the phase. */
  cores: number | null;
  usPerEvent: number | null;
}

interface ThreadFigure extends CpuFigure {
  tid: number;
  name: string;
  role: 'main' | 'helper';
}

export interface CpuPerEvent {
  elapsedS: number;
  events: number;
  /** By process name, plus `postgres`, `postgres (server)` and `load generator`. */
  processes: Record<string, CpuFigure>;
  /** Per thread of the processes in `threadsOf`, main first; helpers that used no CPU are left out. */
  threads: Record<string, ThreadFigure[]>;
  /** Sum of the pipeline's processes (all but `postgres (server)`), per event. */
  totalUsPerEvent: number | null;
  /** Busy share of all the machine's cores, whoever used them. */
  machineBusy: number | null;
}

interface CpuMeterOptions {
  processes: Record<string, number | undefined>;
  postgres?: { postmaster: number | undefined; database: string };
  /** Names (keys of `processes`) whose threads are read apart. */
  threadsOf?: readonly string[];
  /** Leave the load generator (this process) out of the total, when it is not part of the system. */
  loadGenerator?: boolean;
}

function reading({ processes, threadsOf = [], postgres }: CpuMeterOptions) {
  return {
    at: performance.now(),
    processes: Object.fromEntries(Object.entries(processes).map(([name, pid]) => [name, processTicks(pid)])),
    threads: Object.fromEntries(threadsOf.map((name) => [name, threadTicks(processes[name] ?? -1)])),
    postgres: postgres === undefined ? undefined : postgresTicks(postgres.postmaster, postgres.database),
    self: process.cpuUsage(),
    machine: machineTicks(),
  };
}

export class CpuMeter {
  readonly #options: CpuMeterOptions;
  #before: ReturnType<typeof reading> | undefined;

  constructor(options: CpuMeterOptions) {
    this.#options = options;
  }

  start(): void {
    this.#before = reading(this.#options);
  }

  /** The phase's CPU since start(), per `events` events. */
  stop(events: number): CpuPerEvent {
    const before = this.#before;
    if (before === undefined) throw new Error('CpuMeter.stop() before start()');
    const after = reading(this.#options);
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
    const self = (usage: NodeJS.CpuUsage) => usage.user + usage.system;
    processes['load generator'] = figure(self(after.self) - self(before.self));
    const threads: Record<string, ThreadFigure[]> = {};
    for (const name of this.#options.threadsOf ?? []) {
      const earlier = new Map((before.threads[name] ?? []).map((thread) => [thread.tid, thread.ticks]));
      threads[name] = (after.threads[name] ?? [])
        .map(({ tid, name: threadName, ticks }) => ({
          tid,
          name: threadName,
          role: tid === this.#options.processes[name] ? ('main' as const) : ('helper' as const),
          ...figure(ticksUs(earlier.get(tid) ?? { user: 0, system: 0 }, ticks)),
        }))
        .filter((thread) => thread.role === 'main' || (thread.cpuUs ?? 0) > 0)
        .sort((a, b) => (a.role === b.role ? (b.cpuUs ?? 0) - (a.cpuUs ?? 0) : a.role === 'main' ? -1 : 1));
    }
    const counted = Object.entries(processes).filter(
      ([name]) =>
        name !== 'postgres (server)' && (name !== 'load generator' || this.#options.loadGenerator !== false),
    );
    const total = counted.some(([, value]) => value.usPerEvent === null)
      ? null
      : counted.reduce((sum, [, value]) => sum + (value.usPerEvent ?? 0), 0);
    const [m0, m1] = [before.machine, after.machine];
    return {
      elapsedS: Math.round(elapsedUs / 1000) / 1000,
      events,
      processes,
      threads,
      totalUsPerEvent: total === null ? null : Math.round(total * 10) / 10,
      machineBusy:
        m0 === undefined || m1 === undefined
          ? null
          : Math.round((100 * (m1.busy - m0.busy)) / (m1.total - m0.total)) / 100,
    };
  }
}

/** `123.4` or `n/a`. */
export const formatUs = (value: number | null | undefined): string =>
  value == null || Number.isNaN(value) ? 'n/a' : value.toFixed(1);

/**
 * The per-process table's columns over rows that have a CpuPerEvent: µs per event of the API (its request
 * thread and its other threads apart), worker, RabbitMQ, PostgreSQL, load generator, the total.
 */
export function cpuColumns<R>(cpuOf: (row: R) => CpuPerEvent): Columns<R> {
  const of = (name: string) => (row: R) => {
    const figure = cpuOf(row).processes[name];
    return figure === undefined ? '' : formatUs(figure.usPerEvent);
  };
  const threads = (row: R) => cpuOf(row).threads.api ?? [];
  return {
    API: of('api'),
    'API request thread': (row) => formatUs(threads(row).find((t) => t.role === 'main')?.usPerEvent),
    'API other threads': (row) =>
      formatUs(threads(row).reduce((sum, t) => sum + (t.role === 'helper' ? (t.usPerEvent ?? 0) : 0), 0)),
    worker: of('worker'),
    RabbitMQ: of('rabbitmq'),
    PostgreSQL: of('postgres'),
    'load generator': of('load generator'),
    total: (row) => formatUs(cpuOf(row).totalUsPerEvent),
    'machine busy': (row) => {
      const busy = cpuOf(row).machineBusy;
      return busy === null ? 'n/a' : `${Math.round(busy * 100)}%`;
    },
  };
}
