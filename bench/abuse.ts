/**
 * `npm run bench:abuse`: what a hostile client with no key or a reader key can make one API process hold
 * in memory (issue 17): RSS before, at the peak and after a cache flood, a keyless flood and an SSE flood.
 * Method: bench/README.md ("bench:abuse").
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Environments } from './support/broker.ts';
import { createDatabase, dropDatabase, PG_SERVER_OPTION } from './support/databases.ts';
import { goal, judge } from './support/goals.ts';
import { PeakMemory, statusMiB } from './support/memory.ts';
import { commandLine, flag, integer } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  table,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
import { handleSignals, interruptible, runMain, sleep, throwIfInterrupted } from './support/settings.ts';
import { runCli } from './support/system-process.ts';
import { type ProcessExit, type SystemProcess, startApi, stopSystem } from './support/system-under-test.ts';

const cli = commandLine({
  script: 'bench:abuse',
  summary:
    'What a hostile client (no key, or a reader key) can make one API process hold: RSS before, at the peak and\nafter a cache flood, a keyless flood and an SSE flood, against the goal of under 300 MiB above idle (issue 17).',
  options: {
    pages: flag('pages', '10000', integer(1, 100_000), 'distinct 200-model pages of the cache flood'),
    keyless: flag('keyless', '20000', integer(1, 200_000), 'keyless requests of the keyless flood'),
    streams: flag('streams', '1000', integer(1, 4000), 'dashboard streams of the SSE flood, open at once'),
    concurrency: flag('concurrency', '32', integer(1, 1000), 'requests in flight in the other floods'),
    holdSeconds: flag('hold', '10', integer(1, 600), 'seconds the streams stay open', { arg: '<s>' }),
    settleSeconds: flag('settle', '35', integer(0, 600), 'quiet seconds before "after" (> CACHE_TTL_MS)', {
      arg: '<s>',
    }),
    phaseTimeoutSeconds: flag('phase-timeout', '180', integer(1, 3600), 'a flood stops after this long', {
      arg: '<s>',
    }),
    pgServerUrl: PG_SERVER_OPTION,
  },
});

const GOAL_MIB_ABOVE_IDLE = 300;
const MODELS = 200;

interface FloodResult {
  sent: number;
  /** Answers by HTTP status or error code. */
  statuses: Record<string, number>;
  seconds: number;
}

/** `count` GETs of `url(i)`, `concurrency` in flight, for at most `timeoutMs`. */
async function flood(
  count: number,
  concurrency: number,
  timeoutMs: number,
  url: (i: number) => string,
  headers: Record<string, string>,
): Promise<FloodResult> {
  const started = performance.now();
  const statuses: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() - started < timeoutMs) {
      throwIfInterrupted();
      const status = await fetch(url(next++), { headers })
        .then(async (response) => {
          await response.arrayBuffer();
          return response.status;
        })
        .catch((error) => error?.cause?.code ?? 'error');
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  await interruptible(Promise.all(Array.from({ length: concurrency }, worker)));
  return { sent: next, statuses, seconds: round((performance.now() - started) / 1000, 1) };
}

/** Opens `count` dashboard streams, holds them `holdMs`, then closes them; counts what they received. */
async function streamFlood(port: number, key: string, count: number, holdMs: number): Promise<FloodResult> {
  const started = performance.now();
  const statuses: Record<string, number> = {};
  let snapshots = 0;
  const add = (status: string | number) => {
    statuses[status] = (statuses[status] ?? 0) + 1;
  };
  const requests = Array.from({ length: count }, () =>
    http.get({
      host: '127.0.0.1',
      port,
      path: '/dashboard/stream',
      headers: { 'x-api-key': key },
      agent: false,
    }),
  );
  const opened = requests.map(
    (request) =>
      new Promise<void>((resolve) => {
        request.on('response', (response) => {
          add(response.statusCode ?? 0);
          response.on('data', (chunk: Buffer) => {
            snapshots += chunk.toString().split('event: snapshot').length - 1;
          });
          response.on('error', () => {});
          resolve();
        });
        request.on('error', (error: NodeJS.ErrnoException) => {
          add(error.code ?? 'error');
          resolve();
        });
      }),
  );
  await interruptible(Promise.all(opened));
  await sleep(holdMs);
  for (const request of requests) request.destroy();
  statuses.snapshots_received = snapshots;
  return { sent: count, statuses, seconds: round((performance.now() - started) / 1000, 1) };
}

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const environments = new Environments();
  const databaseName = `tb_bench_abuse_${randomUUID().slice(0, 8)}`;
  const databaseUrl = await createDatabase(settings.pgServerUrl, databaseName);
  const processes: SystemProcess[] = [];
  const exits: Record<string, ProcessExit> = {};
  try {
    const bus = await environments.create();
    const api = await startApi({ label: 'api', databaseUrl, env: bus.env }, processes);
    const reader = /(tb_[A-Za-z0-9_-]{43})/.exec(
      await runCli(['keys', 'create', '--role', 'reader', '--name', 'bench reader'], {
        DATABASE_URL: databaseUrl,
      }),
    )?.[1] as string;
    progress(`seeding ${MODELS} models`);
    await seedModels(api.url, api.key, MODELS);
    await sleep(5000);
    const rss = () => statusMiB(api.pid, 'VmRSS') ?? Number.NaN;
    const idle = rss();
    progress(`idle RSS ${idle} MiB`);
    const timeoutMs = settings.phaseTimeoutSeconds * 1000;
    const { pages, keyless, streams, concurrency, holdSeconds } = settings;
    const userAgent = `abuse-bench ${'x'.repeat(488)}`;
    const floods = {
      'cache flood': {
        what: `${formatNumber(pages)} distinct GET /models?limit=200&max_cost_in_per_mil=<n>, reader key`,
        run: () =>
          flood(
            pages,
            concurrency,
            timeoutMs,
            (i) => `${api.url}/models?limit=200&max_cost_in_per_mil=${1000 + i}`,
            {
              'x-api-key': reader,
            },
          ),
      },
      'keyless flood': {
        what: `${formatNumber(keyless)} keyless GET /no-such-route/<n>, 500-character user-agent`,
        run: () =>
          flood(keyless, concurrency, timeoutMs, (i) => `${api.url}/no-such-route/${i}`, {
            'user-agent': userAgent,
          }),
      },
      'SSE flood': {
        what: `${formatNumber(streams)} GET /dashboard/stream open for ${holdSeconds} s, reader key`,
        run: () => streamFlood(Number(new URL(api.url).port), reader, streams, holdSeconds * 1000),
      },
    };
    const results = [];
    for (const [name, { what, run }] of Object.entries(floods)) {
      const before = rss();
      progress(`${name}: ${what}`);
      const sampler = new PeakMemory({ processes: { api: api.pid } }, 100);
      const outcome = await run();
      const peak = sampler.stop().api ?? Number.NaN;
      progress(`${name}: done in ${outcome.seconds} s; settling ${settings.settleSeconds} s`);
      await sleep(settings.settleSeconds * 1000);
      const after = rss();
      results.push({
        name,
        what,
        outcome,
        rss_mib: { before, peak, after },
        peak_above_idle_mib: round(peak - idle, 1),
        after_above_idle_mib: round(after - idle, 1),
      });
    }
    await stopSystem(processes, exits);
    await publishResults({
      name: 'abuse',
      title: 'Abuse floods: RSS of one API process',
      startedAt,
      goals: {
        title: 'Goals (issue 17: RSS under 300 MB above idle in each flood)',
        goals: results.map(({ name, what, peak_above_idle_mib }) =>
          judge(
            goal(17, '<', GOAL_MIB_ABOVE_IDLE, 'MiB', `RSS peak above idle, ${name}`),
            peak_above_idle_mib,
            what,
          ),
        ),
      },
      sections: [
        table(`RSS of the API process, MiB (idle after seeding: ${idle})`, results, {
          flood: (row) => row.name,
          sent: (row) => formatNumber(row.outcome.sent),
          answers: (row) =>
            Object.entries(row.outcome.statuses)
              .map(([status, count]) => `${status}: ${count}`)
              .join(', '),
          s: (row) => String(row.outcome.seconds),
          before: (row) => String(row.rss_mib.before),
          peak: (row) => String(row.rss_mib.peak),
          after: (row) => String(row.rss_mib.after),
          'peak − idle': (row) => String(row.peak_above_idle_mib),
        }),
      ],
      notes: {
        settings: [
          ...cli.settingsBlock(settings),
          `API: \`telemetry-bus start\` via bench/support/system-under-test.ts (CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn, other settings default); own database and vhost; ${MODELS} models`,
          `concurrency ${concurrency} (fetch, keep-alive), streams on a connection each; "after" read ${settings.settleSeconds} s after each flood; RSS sampled every 100 ms`,
          environmentText(env),
        ],
        checks: [`API exit: code ${exits.api?.code}, ${exits.api?.clean ? 'clean' : 'not clean'}`],
      },
      command: invocation('bench:abuse'),
      report: { settings, environment: env, idle_rss_mib: idle, results, api_exit: exits.api },
    });
    return 0;
  } finally {
    await stopSystem(processes, exits);
    await environments.removeAll();
    await dropDatabase(settings.pgServerUrl, databaseName).catch(() => undefined);
  }
}

runMain('abuse', cli.help(), main);
