/**
 * The system of the bus on/off comparisons (bench:api-bus, npm run bench): the bus-on API and its worker
 * on one database and vhost, the bus-off API (TELEMETRY_ENABLED=false) on a database of its own, all made
 * for the run; `close()` stops the processes and removes the databases, vhosts and directories, whatever
 * was started before a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type BusEnvironment, Environments } from './broker.ts';
import { createDatabase, dropDatabase } from './databases.ts';
import { progress } from './report.ts';
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
  readonly environments = new Environments();
  readonly processes: SystemProcess[] = [];
  readonly exits: Record<string, ProcessExit> = {};
  readonly databases: Record<Bus, string>;
  readonly #created: string[] = [];
  readonly #dirs: string[] = [];
  readonly #pgServerUrl: string;
  busEnv: BusEnvironment | undefined;

  constructor(pgServerUrl: string, tag: string) {
    this.#pgServerUrl = pgServerUrl;
    this.databases = { on: `tb_bench_${tag}_on`, off: `tb_bench_${tag}_off` };
  }

  /** Starts both APIs and, with `consumers`, the worker; `cpuProfDir` profiles both APIs. */
  async start(
    consumers: readonly string[],
    cpuProfDir?: string,
  ): Promise<{ on: Api; off: Api; worker?: Worker }> {
    const busEnv = await this.environments.create();
    this.busEnv = busEnv;
    for (const bus of ['on', 'off'] as const) {
      await createDatabase(this.#pgServerUrl, this.databases[bus]);
      this.#created.push(this.databases[bus]);
    }
    progress(`databases ${this.databases.on}, ${this.databases.off}; vhost ${busEnv.vhost.vhost}`);
    const dir = (name: string) => {
      this.#dirs.push(mkdtempSync(path.join(os.tmpdir(), `tb-bench-${name}-`)));
      return this.#dirs.at(-1) as string;
    };
    const api = (bus: Bus, env: Record<string, string>) =>
      startApi(
        {
          label: `api (bus ${bus})`,
          databaseUrl: `${this.#pgServerUrl}/${this.databases[bus]}`,
          env,
          nodeArgs: cpuProfArgs(cpuProfDir, `bus-${bus}`),
        },
        this.processes,
      );
    const on = await api('on', { ...busEnv.env, TELEMETRY_ENABLED: 'true' });
    const off = await api('off', {
      RABBITMQ_URL: busEnv.env.RABBITMQ_URL,
      DATA_DIR: dir('off'),
      TELEMETRY_ENABLED: 'false',
    });
    const worker =
      consumers.length === 0
        ? undefined
        : await startWorker(
            {
              label: 'worker',
              databaseUrl: on.databaseUrl,
              rabbitmqUrl: busEnv.env.RABBITMQ_URL,
              consumers,
              env: { DATA_DIR: dir('worker') },
            },
            this.processes,
          );
    const [onHealth, offHealth] = [await on.health(), await off.health()];
    if (onHealth.events === null || offHealth.events !== null) {
      throw new Error('the bus-on API must report events and the bus-off one none: check TELEMETRY_ENABLED');
    }
    progress(
      `bus-on API pid ${on.pid}, bus-off API pid ${off.pid}${worker === undefined ? ', no worker' : `, worker pid ${worker.pid}`}`,
    );
    return worker === undefined ? { on, off } : { on, off, worker };
  }

  /** Stops every process (recording its exit), drops the databases, removes the vhosts and directories. */
  async close(): Promise<void> {
    await stopSystem(this.processes, this.exits);
    for (const name of this.#created) {
      await dropDatabase(this.#pgServerUrl, name).catch((error) =>
        progress(`could not drop database ${name}: ${String(error)}`),
      );
    }
    await this.environments.removeAll();
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** `name code 0 after 120 ms, …`, NOT CLEAN where an exit was not. */
export const exitsText = (exits: Record<string, ProcessExit>): string =>
  Object.entries(exits)
    .map(
      ([name, exit]) =>
        `${name} code ${exit.code} after ${exit.stopMs} ms${exit.clean ? '' : ' (NOT CLEAN)'}`,
    )
    .join(', ');
