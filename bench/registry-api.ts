/**
 * Load benchmark of the Model Registry API: each scenario at each connection count with autocannon,
 * against the API as a child process on a throw-away database (bench/README.md has the method).
 */
import { randomBytes } from 'node:crypto';
import type { Request } from 'autocannon';
import { CpuMeter, type CpuPerEvent, formatUs } from './support/cpu-per-event.ts';
import { createDatabase, dropDatabase, withClient } from './support/databases.ts';
import { judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { commandLine, flag, integer, list, someOf, text, url } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
} from './support/report.ts';
import { createdModel, seedModels } from './support/seed-models.ts';
import { handleSignals, interruptible, runMain } from './support/settings.ts';
import {
  type Api,
  cpuProfArgs,
  type ProcessExit,
  startApi,
  stopSystem,
} from './support/system-under-test.ts';

const NAME = 'registry-api';
const FILTER_QUERIES = [
  '/models?limit=50',
  '/models?vendor_id=Anthropic&is_active=true&limit=20',
  '/models?capability_tier=Tier_1&function_call_support=true&sort=-context_window&limit=50',
  '/models?min_context_window=128000&max_cost_in_per_mil=5&sort=cost_in_per_mil&limit=100',
];
const SCENARIO_NAMES = ['get-model', 'filter-models', 'create-model'] as const;
type ScenarioName = (typeof SCENARIO_NAMES)[number];

const cli = commandLine({
  script: 'bench:registry',
  summary: 'Model Registry API throughput and latency per scenario and connection count (autocannon).',
  options: {
    durationS: flag('duration', '10', integer(1), 'measured seconds per run', { arg: '<s>' }),
    warmupS: flag('warmup', '3', integer(0), 'unmeasured seconds before each run', { arg: '<s>' }),
    connections: flag('connections', '10,50', list(integer(1)), 'connection counts', { arg: '<list>' }),
    models: flag('models', '1000', integer(1), 'models seeded before the runs'),
    scenarios: someOf('scenario', SCENARIO_NAMES, 'scenarios'),
    serverCpuProfDir: flag('server-cpu-prof', '', text, 'run the API under --cpu-prof into <dir>', {
      arg: '<dir>',
    }),
    pgServerUrl: flag('pg-url', 'postgres://root@127.0.0.1:5432', url, 'PostgreSQL server', { arg: '<url>' }),
  },
});

/** Issue 13's registry goal: the single-model read at 50 connections. */
const GOAL_RATE = {
  name: 'GET /models/:id at 50 connections, req/s',
  threshold: 15_000,
  comparison: '>=',
  unit: 'req/s',
} as const;
const GOAL_P99 = {
  name: 'GET /models/:id at 50 connections, p99',
  threshold: 10,
  comparison: '<',
  unit: 'ms',
} as const;

const LABELS: Record<ScenarioName, string> = {
  'get-model': 'GET /models/:id',
  'filter-models': 'GET /models?…',
  'create-model': 'POST /models',
};

interface Context {
  modelIds: string[];
  /** Unique per run, so created model ids never collide with seeded or earlier ones. */
  runTag: string;
  /** Models created so far, shared by every create run and warm-up. */
  created: { next: number };
}

/** The request sequence of connection `lane` of `lanes`. */
function scenarioRequests(scenario: ScenarioName, context: Context, lane: number, lanes: number): Request[] {
  if (scenario === 'get-model') {
    // Each connection starts at its own offset: in lockstep, every connection would load the same cold
    // id at once; spread out, the warm-up fills the cache with every id.
    const ids = context.modelIds;
    const offset = Math.floor(((lane % lanes) * ids.length) / lanes);
    return [...ids.slice(offset), ...ids.slice(0, offset)].map((id) => ({
      method: 'GET',
      path: `/models/${encodeURIComponent(id)}`,
    }));
  }
  if (scenario === 'filter-models') return FILTER_QUERIES.map((path) => ({ method: 'GET', path }));
  return [
    {
      method: 'POST',
      path: '/models',
      headers: { 'content-type': 'application/json' },
      // setupRequest, not idReplacement: autocannon 8.0.0 sizes Content-Length wrongly for a replaced id
      // (mcollina/autocannon#539), so the server would wait for body bytes that never come.
      setupRequest: (request: Request) => {
        const n = context.created.next++;
        request.body = JSON.stringify(createdModel(`bench-${context.runTag}/created-${n}`, n));
        return request;
      },
    },
  ];
}

interface Run {
  scenario: ScenarioName;
  connections: number;
  result: LoadResult;
  warmup: LoadResult | null;
  cpu: CpuPerEvent;
}

const non2xx = (result: LoadResult | null) =>
  Object.entries(result?.statusCodes ?? {}).reduce(
    (sum, [code, n]) => sum + (code.startsWith('2') ? 0 : n),
    0,
  );
const problemsOf = (result: LoadResult | null) => (result === null ? 0 : result.errors + non2xx(result));
const cores = (value: number | null | undefined) => (value == null ? 'n/a' : value.toFixed(2));
const problems = (run: Run) => problemsOf(run.result) + problemsOf(run.warmup);

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const database = `tb_bench_${randomBytes(6).toString('hex')}`;
  const runs: Run[] = [];
  const exits: Record<string, ProcessExit> = {};
  let api: Api | undefined;
  let created = false;
  let rowCheck: { seeded: number; created201: number; rows: number; ok: boolean } | undefined;
  let postgresVersion = 'unknown';
  try {
    const databaseUrl = await interruptible(createDatabase(settings.pgServerUrl, database));
    created = true;
    postgresVersion = await withClient(
      databaseUrl,
      async (c) => (await c.query('SHOW server_version')).rows[0].server_version,
    );
    // CONSUMERS=all: the API as `telemetry-bus start` runs it by default, consumers beside it.
    api = await startApi({
      label: 'api',
      databaseUrl,
      env: { CONSUMERS: 'all' },
      nodeArgs: cpuProfArgs(settings.serverCpuProfDir, 'api'),
    });
    const modelIds = await seedModels(api.url, api.key, settings.models);
    progress(`seeded ${modelIds.length} models`);
    const context: Context = { modelIds, runTag: randomBytes(4).toString('hex'), created: { next: 0 } };
    for (const scenario of settings.scenarios) {
      for (const connections of settings.connections) {
        progress(
          `${LABELS[scenario]}, ${connections} connections: ${settings.warmupS} s warm-up + ${settings.durationS} s`,
        );
        const load = (durationS: number) =>
          runLoad({
            url: api?.url as string,
            key: api?.key as string,
            durationS,
            connections,
            label: `${scenario} c=${connections}`,
            requests: (lane, lanes) => scenarioRequests(scenario, context, lane, lanes),
          });
        const warmup = settings.warmupS > 0 ? await load(settings.warmupS) : null;
        const meter = new CpuMeter({ processes: { server: api.pid } });
        meter.start();
        const result = await load(settings.durationS);
        runs.push({
          scenario,
          connections,
          result,
          warmup,
          cpu: meter.stop(result.responses),
        });
        progress(
          `  ${formatNumber(result.requestsPerSec)} req/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms`,
        );
      }
    }
    const created201 = runs
      .filter((run) => run.scenario === 'create-model')
      .reduce(
        (sum, run) => sum + (run.result.statusCodes['201'] ?? 0) + (run.warmup?.statusCodes['201'] ?? 0),
        0,
      );
    const rows = await withClient(
      databaseUrl,
      async (c) => (await c.query('SELECT count(*)::int AS n FROM models')).rows[0].n as number,
    );
    // A POST cut off when a run stops may still commit: more rows than 201s is fine, fewer is not.
    rowCheck = { seeded: modelIds.length, created201, rows, ok: rows >= modelIds.length + created201 };
  } finally {
    if (api !== undefined) await stopSystem([api.process], exits);
    if (created)
      await dropDatabase(settings.pgServerUrl, database).catch((error) =>
        progress(`could not drop ${database}: ${error}`),
      );
  }

  const goalRun = runs.find((run) => run.scenario === 'get-model' && run.connections === 50);
  const goalNote = goalRun === undefined ? 'not run' : `${problems(goalRun)} errors/non-2xx`;
  const goals = [
    judge(GOAL_RATE, goalRun?.result.requestsPerSec, goalNote),
    judge(GOAL_P99, goalRun?.result.latencyMs.p99, goalNote),
  ];
  const totalProblems = runs.reduce((sum, run) => sum + problems(run), 0);
  const label = (run: Pick<Run, 'scenario' | 'connections'>) => [
    LABELS[run.scenario],
    String(run.connections),
  ];
  const serverExit = exits.api;
  await publishResults({
    name: NAME,
    title: 'Registry API benchmark',
    startedAt,
    goals: { title: 'Goal (registry read path)', goals },
    sections: [
      {
        title: 'Runs (latency from the send, ms)',
        columns: ['scenario', 'connections', 'req/s', 'p50 ms', 'p99 ms', 'errors/non-2xx'],
        rows: runs.map((run) => [
          ...label(run),
          formatNumber(run.result.requestsPerSec),
          formatNumber(run.result.latencyMs.p50, 2),
          formatNumber(run.result.latencyMs.p99, 2),
          `${problemsOf(run.result)}${run.warmup && problemsOf(run.warmup) > 0 ? `; warm-up ${problemsOf(run.warmup)}` : ''}`,
        ]),
      },
      {
        title: 'CPU during the measured runs',
        columns: [
          'scenario',
          'connections',
          'server cores',
          'server µs/req',
          'load generator cores',
          'machine busy (2 = all)',
        ],
        rows: runs.map(({ cpu, ...run }) => [
          ...label(run),
          cores(cpu.processes.server?.cores),
          formatUs(cpu.processes.server?.usPerEvent),
          cores(cpu.processes['load generator']?.cores),
          cores(cpu.machineBusy === null ? null : cpu.machineBusy * env.cpus),
        ]),
      },
    ],
    verdicts: [],
    notes: {
      settings: [
        ...cli.settingsBlock(settings),
        'API: `telemetry-bus start` as a child process (CONSUMERS=all, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn); autocannon in this process, percentiles exact from each response time',
        environmentText(env, `, PostgreSQL ${postgresVersion}`),
      ],
      checks: [
        `errors/non-2xx over all runs: ${totalProblems}${totalProblems === 0 ? '' : ' (must be 0)'}`,
        `server warnings/errors logged: ${api?.process.warnings.length ?? 0}`,
        rowCheck === undefined
          ? 'rows check: not run'
          : `rows check: ${rowCheck.rows} rows for ${rowCheck.seeded} seeded + ${rowCheck.created201} created (201): ${rowCheck.ok ? 'ok' : 'MISSING ROWS'}`,
        `server stop: exit code ${serverExit?.code ?? 'n/a'} after ${serverExit?.stopMs ?? 'n/a'} ms, ${serverExit?.clean ? 'clean' : 'NOT CLEAN'}`,
      ],
    },
    command: invocation('bench:registry'),
    report: {
      settings: { ...settings, filterQueries: FILTER_QUERIES },
      environment: { ...env, postgres: postgresVersion },
      runs,
      checks: {
        errorsAndNon2xx: totalProblems,
        serverWarnings: api?.process.warnings ?? [],
        rows: rowCheck ?? null,
      },
      serverExit: serverExit ?? null,
    },
  });
  return totalProblems === 0 && serverExit?.clean === true && rowCheck?.ok !== false ? 0 : 1;
}

runMain(NAME, cli.help(), main);
