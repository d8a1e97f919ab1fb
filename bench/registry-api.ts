/**
 * Load benchmark of the Model Registry API: each scenario at each connection count with autocannon,
 * against the API as a child process on a throw-away database. Method: bench/README.md.
 */
import { randomBytes } from 'node:crypto';
import type { Request } from 'autocannon';
import { CpuMeter, type CpuPerEvent, formatUs } from './support/cpu-per-event.ts';
import { createDatabase, dropDatabase, PG_SERVER_OPTION, withClient } from './support/databases.ts';
import { goal, judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { commandLine, flag, integer, list, someOf, text } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  table,
} from './support/report.ts';
import { createdModel, seedModels } from './support/seed-models.ts';
import { handleSignals, interruptible, runMain } from './support/settings.ts';
import {
  cpuProfArgs,
  type ProcessExit,
  type SystemProcess,
  startApi,
  stopSystem,
} from './support/system-under-test.ts';

const FILTER_QUERIES = [
  '/models?limit=50',
  '/models?vendor_id=Anthropic&is_active=true&limit=20',
  '/models?capability_tier=Tier_1&function_call_support=true&sort=-context_window&limit=50',
  '/models?min_context_window=128000&max_cost_in_per_mil=5&sort=cost_in_per_mil&limit=100',
];
const LABELS = {
  'get-model': 'GET /models/:id',
  'filter-models': 'GET /models?…',
  'create-model': 'POST /models',
};
type ScenarioName = keyof typeof LABELS;

const cli = commandLine({
  script: 'bench:registry',
  summary: 'Model Registry API throughput and latency per scenario and connection count (autocannon).',
  options: {
    durationS: flag('duration', '10', integer(1), 'measured seconds per run', { arg: '<s>' }),
    warmupS: flag('warmup', '3', integer(0), 'unmeasured seconds before each run', { arg: '<s>' }),
    connections: flag('connections', '10,50', list(integer(1)), 'connection counts', { arg: '<list>' }),
    models: flag('models', '1000', integer(1), 'models seeded before the runs'),
    scenarios: someOf('scenario', Object.keys(LABELS) as ScenarioName[], 'scenarios'),
    serverCpuProfDir: flag('server-cpu-prof', '', text, 'run the API under --cpu-prof into <dir>', {
      arg: '<dir>',
    }),
    pgServerUrl: PG_SERVER_OPTION,
  },
});

/** Issue 13's registry goals: the single-model read at 50 connections. */
const GOAL_RATE = goal(13, '>=', 15_000, 'req/s', 'GET /models/:id at 50 connections, req/s');
const GOAL_P99 = goal(13, '<', 10, 'ms', 'GET /models/:id at 50 connections, p99');

/** Each scenario's request sequence for connection `lane` of `lanes`. */
function scenarioRequests(
  modelIds: string[],
): Record<ScenarioName, (lane: number, lanes: number) => Request[]> {
  // Unique per run, so created model ids never collide with seeded or earlier ones.
  const runTag = randomBytes(4).toString('hex');
  let created = 0;
  return {
    // Each connection starts at its own offset: in lockstep, every connection would load the same cold id
    // at once; spread out, the warm-up fills the cache with every id.
    'get-model': (lane, lanes) => {
      const offset = Math.floor(((lane % lanes) * modelIds.length) / lanes);
      return [...modelIds.slice(offset), ...modelIds.slice(0, offset)].map((id) => ({
        method: 'GET',
        path: `/models/${encodeURIComponent(id)}`,
      }));
    },
    'filter-models': () => FILTER_QUERIES.map((path) => ({ method: 'GET', path })),
    'create-model': () => [
      {
        method: 'POST',
        path: '/models',
        headers: { 'content-type': 'application/json' },
        // setupRequest, not idReplacement: autocannon 8.0.0 sizes Content-Length wrongly for a replaced id
        // (mcollina/autocannon#539), so the server would wait for body bytes that never come.
        setupRequest: (request: Request) => {
          const n = created++;
          request.body = JSON.stringify(createdModel(`bench-${runTag}/created-${n}`, n));
          return request;
        },
      },
    ],
  };
}

interface Run {
  scenario: ScenarioName;
  connections: number;
  result: LoadResult;
  warmup: LoadResult | null;
  cpu: CpuPerEvent;
}

/** Errors and non-2xx answers. */
const problemsOf = (result: LoadResult | null) =>
  Object.entries(result?.statusCodes ?? {}).reduce(
    (sum, [code, n]) => sum + (code.startsWith('2') ? 0 : n),
    result?.errors ?? 0,
  );
const cores = (value: number | null | undefined) => (value == null ? 'n/a' : value.toFixed(2));

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const database = `tb_bench_${randomBytes(6).toString('hex')}`;
  const databaseUrl = await interruptible(createDatabase(settings.pgServerUrl, database));
  const firstRow = (sql: string) => withClient(databaseUrl, async (c) => (await c.query(sql)).rows[0]);
  const processes: SystemProcess[] = [];
  const exits: Record<string, ProcessExit> = {};
  try {
    const postgresVersion = (await firstRow('SHOW server_version')).server_version as string;
    // CONSUMERS=all: the API as `telemetry-bus start` runs it by default, consumers beside it.
    const api = await startApi(
      {
        label: 'api',
        databaseUrl,
        env: { CONSUMERS: 'all' },
        nodeArgs: cpuProfArgs(settings.serverCpuProfDir, 'api'),
      },
      processes,
    );
    const modelIds = await seedModels(api.url, api.key, settings.models);
    progress(`seeded ${modelIds.length} models`);
    const requests = scenarioRequests(modelIds);
    const runs: Run[] = [];
    for (const scenario of settings.scenarios) {
      for (const connections of settings.connections) {
        const label = `${LABELS[scenario]}, ${connections} connections`;
        progress(`${label}: ${settings.warmupS} s warm-up + ${settings.durationS} s`);
        const load = (durationS: number) =>
          runLoad({
            url: api.url,
            key: api.key,
            durationS,
            connections,
            label,
            requests: requests[scenario],
          });
        const warmup = settings.warmupS > 0 ? await load(settings.warmupS) : null;
        const meter = new CpuMeter({ processes: { server: api.pid } });
        meter.start();
        const result = await load(settings.durationS);
        runs.push({ scenario, connections, result, warmup, cpu: meter.stop(result.responses) });
        const { p50, p99 } = result.latencyMs;
        progress(`  ${formatNumber(result.requestsPerSec)} req/s, p50 ${p50} ms, p99 ${p99} ms`);
      }
    }
    const created201 = runs
      .filter((run) => run.scenario === 'create-model')
      .reduce(
        (sum, run) => sum + (run.result.statusCodes['201'] ?? 0) + (run.warmup?.statusCodes['201'] ?? 0),
        0,
      );
    const rows = (await firstRow('SELECT count(*)::int AS n FROM models')).n as number;
    // A POST cut off when a run stops may still commit: more rows than 201s is fine, fewer is not.
    const rowCheck = { seeded: modelIds.length, created201, rows, ok: rows >= modelIds.length + created201 };
    await stopSystem(processes, exits);
    const goalRun = runs.find((run) => run.scenario === 'get-model' && run.connections === 50);
    const problems = (run: Run) => problemsOf(run.result) + problemsOf(run.warmup);
    const goalNote = goalRun === undefined ? 'not run' : `${problems(goalRun)} errors/non-2xx`;
    const totalProblems = runs.reduce((sum, run) => sum + problems(run), 0);
    const serverExit = exits.api;
    const label = {
      scenario: (run: Run) => LABELS[run.scenario],
      connections: (run: Run) => String(run.connections),
    };
    await publishResults({
      name: 'registry-api',
      title: 'Registry API benchmark',
      startedAt,
      goals: {
        title: 'Goal (registry read path)',
        goals: [
          judge(GOAL_RATE, goalRun?.result.requestsPerSec, goalNote),
          judge(GOAL_P99, goalRun?.result.latencyMs.p99, goalNote),
        ],
      },
      sections: [
        table('Runs (latency from the send, ms)', runs, {
          ...label,
          'req/s': (run) => formatNumber(run.result.requestsPerSec),
          'p50 ms': (run) => formatNumber(run.result.latencyMs.p50, 2),
          'p99 ms': (run) => formatNumber(run.result.latencyMs.p99, 2),
          'errors/non-2xx': ({ result, warmup }) =>
            `${problemsOf(result)}${problemsOf(warmup) > 0 ? `; warm-up ${problemsOf(warmup)}` : ''}`,
        }),
        table('CPU during the measured runs', runs, {
          ...label,
          'server cores': ({ cpu }) => cores(cpu.processes.server?.cores),
          'server µs/req': ({ cpu }) => formatUs(cpu.processes.server?.usPerEvent),
          'load generator cores': ({ cpu }) => cores(cpu.processes['load generator']?.cores),
          'machine busy (2 = all)': ({ cpu }) =>
            cores(cpu.machineBusy === null ? null : cpu.machineBusy * env.cpus),
        }),
      ],
      notes: {
        settings: [
          ...cli.settingsBlock(settings),
          'API: `telemetry-bus start` as a child process (CONSUMERS=all, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn); autocannon in this process, percentiles exact from each response time',
          environmentText(env, `, PostgreSQL ${postgresVersion}`),
        ],
        checks: [
          `errors/non-2xx over all runs: ${totalProblems}${totalProblems === 0 ? '' : ' (must be 0)'}`,
          `server warnings/errors logged: ${api.process.warnings.length}`,
          `rows check: ${rows} rows for ${rowCheck.seeded} seeded + ${created201} created (201): ${rowCheck.ok ? 'ok' : 'MISSING ROWS'}`,
          `server stop: exit code ${serverExit?.code ?? 'n/a'} after ${serverExit?.stopMs ?? 'n/a'} ms, ${serverExit?.clean ? 'clean' : 'NOT CLEAN'}`,
        ],
      },
      command: invocation('bench:registry'),
      report: {
        settings: { ...settings, filterQueries: FILTER_QUERIES },
        environment: { ...env, postgres: postgresVersion },
        runs,
        checks: { errorsAndNon2xx: totalProblems, serverWarnings: api.process.warnings, rows: rowCheck },
        serverExit: serverExit ?? null,
      },
    });
    return totalProblems === 0 && serverExit?.clean === true && rowCheck.ok ? 0 : 1;
  } finally {
    await stopSystem(processes, exits);
    await dropDatabase(settings.pgServerUrl, database).catch((error) =>
      progress(`could not drop ${database}: ${error}`),
    );
  }
}

runMain('registry-api', cli.help(), main);
