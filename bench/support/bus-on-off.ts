/**
 * The system of the bus on/off comparisons (bench:api-bus, npm run bench): the bus-on API and its worker
 * on one database and vhost, the bus-off API (TELEMETRY_ENABLED=false) on a database of its own, all made
 * for the run and seeded alike; `phase(bus)` measures one phase of either; `close()` stops the processes
 * and removes the databases, vhosts and directories, whatever was started before a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type BrokerInfo, type BusEnvironment, brokerAlarms, Environments, waitForBroker } from './broker.ts';
import { findRabbitmqPid } from './cpu.ts';
import { CpuMeter } from './cpu-per-event.ts';
import { createDatabase, dropDatabase } from './databases.ts';
import { findPostmasterPid } from './postgres-cpu.ts';
import { environment, environmentText, progress } from './report.ts';
import { seedModels } from './seed-models.ts';
import { serviceHistograms } from './service-histograms.ts';
import {
  type Api,
  cpuProfArgs,
  type ProcessExit,
  type SystemProcess,
  startApi,
  startWorker,
  stopSystem,
  type Worker,
} from './system-under-test.ts';

export type Bus = 'on' | 'off';

export class BusOnOff {
  readonly env = environment();
  readonly environments = new Environments();
  readonly processes: SystemProcess[] = [];
  readonly exits: Record<string, ProcessExit> = {};
  readonly databases: Record<Bus, string>;
  readonly #dirs: string[] = [];
  readonly #created: string[] = [];
  readonly #pgServerUrl: string;
  readonly rabbitmqPid = findRabbitmqPid();
  readonly postmasterPid = findPostmasterPid();
  broker: BrokerInfo | undefined;
  busEnv: BusEnvironment | undefined;
  apis = {} as Record<Bus, Api>;
  worker: Worker | undefined;
  /** The ids of the models seeded in each database. */
  seeded = {} as Record<Bus, string[]>;
  alarmsAfter: string[] = [];

  constructor(pgServerUrl: string, tag: string) {
    this.#pgServerUrl = pgServerUrl;
    this.databases = { on: `tb_bench_${tag}_on`, off: `tb_bench_${tag}_off` };
  }

  /** Starts both APIs and, with `consumers`, the worker, and seeds `models` in each database. */
  async start(options: { consumers: readonly string[]; models: number; cpuProfDir?: string }): Promise<void> {
    this.broker = await waitForBroker();
    const busEnv = await this.environments.create();
    this.busEnv = busEnv;
    for (const bus of ['on', 'off'] as const) {
      await createDatabase(this.#pgServerUrl, this.databases[bus]);
      this.#created.push(this.databases[bus]);
    }
    progress(`databases ${this.databases.on}, ${this.databases.off}; vhost ${busEnv.vhost.vhost}`);
    const dir = (name: string) =>
      this.#dirs[this.#dirs.push(mkdtempSync(path.join(os.tmpdir(), `tb-bench-${name}-`))) - 1] as string;
    const api = (bus: Bus, env: Record<string, string>) =>
      startApi(
        {
          label: `api (bus ${bus})`,
          databaseUrl: `${this.#pgServerUrl}/${this.databases[bus]}`,
          env,
          nodeArgs: cpuProfArgs(options.cpuProfDir, `bus-${bus}`),
        },
        this.processes,
      );
    const rabbitmqUrl = busEnv.env.RABBITMQ_URL;
    this.apis.on = await api('on', { ...busEnv.env, TELEMETRY_ENABLED: 'true' });
    this.apis.off = await api('off', {
      RABBITMQ_URL: rabbitmqUrl,
      DATA_DIR: dir('off'),
      TELEMETRY_ENABLED: 'false',
    });
    if (options.consumers.length > 0) {
      const { consumers } = options;
      const env = { DATA_DIR: dir('worker') };
      const databaseUrl = this.apis.on.databaseUrl;
      this.worker = await startWorker(
        { label: 'worker', databaseUrl, rabbitmqUrl, consumers, env },
        this.processes,
      );
    }
    const [on, off] = [await this.apis.on.health(), await this.apis.off.health()];
    if (on.events === null || off.events !== null) {
      throw new Error('the bus-on API must report events and the bus-off one none: check TELEMETRY_ENABLED');
    }
    const seeded = await Promise.all(
      [this.apis.on, this.apis.off].map((a) => seedModels(a.url, a.key, options.models)),
    );
    this.seeded = { on: seeded[0] as string[], off: seeded[1] as string[] };
    progress(
      `bus-on API pid ${this.apis.on.pid}, bus-off ${this.apis.off.pid}, worker ${this.worker?.pid ?? 'none'}; ${options.models} models seeded in each`,
    );
  }

  /**
   * Starts measuring a phase of `bus`: CPU per event of its API (per thread), the worker (bus on),
   * RabbitMQ, the backends of its database and this process; bus on, the service's histograms too.
   */
  async phase(bus: Bus) {
    const api = this.apis[bus];
    const worker = bus === 'on' ? this.worker : undefined;
    const meter = new CpuMeter({
      processes: {
        api: api.pid,
        ...(worker === undefined ? {} : { worker: worker.pid }),
        rabbitmq: this.rabbitmqPid,
      },
      postgres: { postmaster: this.postmasterPid, database: this.databases[bus] },
      threadsOf: ['api'],
    });
    const histograms = bus === 'on' ? await serviceHistograms(api, worker) : undefined;
    meter.start();
    return {
      /** The CPU since the start, per `events` (call it when the load ends). */
      cpu: (events: number) => meter.stop(events),
      /** The service's histograms since the start (call it once the phase has settled); null bus off. */
      service: async () => (await histograms?.()) ?? null,
    };
  }

  /** Stops every process (recording its exit), drops the databases, removes the vhosts and directories. */
  async close(): Promise<void> {
    this.alarmsAfter = await brokerAlarms().catch((error) => [String(error)]);
    await stopSystem(this.processes, this.exits);
    for (const name of this.#created) {
      await dropDatabase(this.#pgServerUrl, name).catch((error) =>
        progress(`could not drop database ${name}: ${error}`),
      );
    }
    await this.environments.removeAll();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }

  /** The settings lines every on/off report ends with: the shared machine and the host. */
  notes(): string[] {
    const { env, broker } = this;
    return [
      `SHARED MACHINE: other sessions use the same ${env.cpus} cores; load average at start ${env.loadAverageAtStart.join(' ')}`,
      environmentText(env, broker === undefined ? '' : `, RabbitMQ ${broker.version}`),
    ];
  }

  /** The check lines: process exits, warnings logged, broker alarms. */
  checks(): string[] {
    const exits = Object.entries(this.exits).map(
      ([name, exit]) =>
        `${name} code ${exit.code} after ${exit.stopMs} ms${exit.clean ? '' : ' (NOT CLEAN)'}`,
    );
    return [
      `process exits: ${exits.join(', ')}`,
      `warnings logged: ${this.processes.map((p) => `${p.name} ${p.warnings.length}`).join(', ')}`,
      `broker alarms after the run: ${this.alarmsAfter.length === 0 ? 'none' : this.alarmsAfter.join('; ')}`,
    ];
  }

  /** Whether every process exited cleanly. */
  get clean(): boolean {
    return Object.values(this.exits).every((exit) => exit.clean);
  }

  /** The report's fields about the system: environment, warnings, exits, alarms. */
  report() {
    return {
      environment: { ...this.env, rabbitmq: this.broker ?? null, sharedMachine: true },
      warnings: Object.fromEntries(this.processes.map((p) => [p.name, p.warnings.slice(0, 50)])),
      processExits: this.exits,
      brokerAlarmsAfter: this.alarmsAfter,
    };
  }
}
