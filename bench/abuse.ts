/**
 * `npm run bench:abuse`: what a hostile client with no key or a reader key can make one API process hold
 * in memory (issue 17): RSS before, at the peak and after a cache flood, a keyless flood and an SSE flood.
 * Method: bench/README.md ("bench:abuse").
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Environments } from './support/broker.ts';
import { createDatabase, dropDatabase } from './support/databases.ts';
import { type Goal, goal, judge } from './support/goals.ts';
import { PeakMemory, statusKib } from './support/memory.ts';
import { commandLine, flag, integer } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  round,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
import { handleSignals, interruptible, runMain, sleep, throwIfInterrupted } from './support/settings.ts';
import { runCli } from './support/system-process.ts';
import { type ProcessExit, type SystemProcess, startApi, stopSystem } from './support/system-under-test.ts';

/** This benchmark's variables are ABUSE_<FLAG>. */
const abuse = (name: string, arg = '<n>') => ({ env: `ABUSE_${name}`, arg });

const cli = commandLine({
  script: 'bench:abuse',
  summary:
    'What a hostile client (no key, or a reader key) can make one API process hold: RSS before, at the peak and\nafter a cache flood, a keyless flood and an SSE flood, against the goal of under 300 MiB above idle (issue 17).',
  options: {
    pages: flag(
      'pages',
      '10000',
      integer(1, 100_000),
      'distinct 200-model pages of the cache flood',
      abuse('PAGES'),
    ),
    keyless: flag(
      'keyless',
      '20000',
      integer(1, 200_000),
      'keyless requests of the keyless flood',
      abuse('KEYLESS'),
    ),
    streams: flag(
      'streams',
      '1000',
      integer(1, 4000),
      'dashboard streams of the SSE flood, open at once',
      abuse('STREAMS'),
    ),
    concurrency: flag(
      'concurrency',
      '32',
      integer(1, 1000),
      'requests in flight in the cache and keyless floods',
      abuse('CONCURRENCY'),
    ),
    holdSeconds: flag('hold', '10', integer(1, 600), 'seconds the streams stay open', abuse('HOLD', '<s>')),
    settleSeconds: flag(
      'settle',
      '35',
      integer(0, 600),
      'seconds of quiet before "after" is read (over CACHE_TTL_MS)',
      abuse('SETTLE', '<s>'),
    ),
    phaseTimeoutSeconds: flag(
      'phase-timeout',
      '180',
      integer(1, 3600),
      'a flood stops after this long',
      abuse('PHASE_TIMEOUT', '<s>'),
    ),
  },
});

const GOAL_MB_ABOVE_IDLE = 300;
const DATABASE_SERVER = process.env.TEST_DATABASE_SERVER ?? 'postgres://root@127.0.0.1:5432';
const MODELS = 200;

const mib = (kib: number | undefined) => (kib === undefined ? Number.NaN : round(kib / 1024, 1));

interface FloodResult {
  sent: number;
  statuses: Record<string, number>;
  seconds: number;
}

/** `count` requests made by `request(i)`, `concurrency` at a time, for at most `timeoutMs`. */
async function flood(
  count: number,
  concurrency: number,
  timeoutMs: number,
  request: (index: number) => Promise<number | string>,
): Promise<FloodResult> {
  const started = performance.now();
  const statuses: Record<string, number> = {};
  let next = 0;
  const worker = async () => {
    while (next < count && performance.now() - started < timeoutMs) {
      throwIfInterrupted();
      const index = next++;
      let status: number | string;
      try {
        status = await request(index);
      } catch (error) {
        status = (error as { cause?: { code?: string } }).cause?.code ?? 'error';
      }
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
  const requests: http.ClientRequest[] = [];
  let snapshots = 0;
  const opened = Array.from(
    { length: count },
    () =>
      new Promise<void>((resolve) => {
        const request = http.get(
          { host: '127.0.0.1', port, path: '/dashboard/stream', headers: { 'x-api-key': key }, agent: false },
          (response) => {
            statuses[response.statusCode ?? 0] = (statuses[response.statusCode ?? 0] ?? 0) + 1;
            response.on('data', (chunk: Buffer) => {
              snapshots += chunk.toString().split('event: snapshot').length - 1;
            });
            response.on('error', () => {});
            resolve();
          },
        );
        request.on('error', (error: NodeJS.ErrnoException) => {
          statuses[error.code ?? 'error'] = (statuses[error.code ?? 'error'] ?? 0) + 1;
          resolve();
        });
        requests.push(request);
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
  const env0 = environment();
  const environments = new Environments();
  const databaseName = `tb_bench_abuse_${randomUUID().slice(0, 8)}`;
  const databaseUrl = await createDatabase(DATABASE_SERVER, databaseName);
  const bus = await environments.create();
  const processes: SystemProcess[] = [];
  const exits: Record<string, ProcessExit> = {};
  try {
    const api = await startApi({ label: 'api', databaseUrl, env: bus.env }, processes);
    const base = api.url;
    const port = Number(new URL(base).port);
    const key = async (role: string) =>
      /(tb_[A-Za-z0-9_-]{43})/.exec(
        await runCli(['keys', 'create', '--role', role, '--name', `bench ${role}`], {
          DATABASE_URL: databaseUrl,
        }),
      )?.[1] ?? '';
    const writer = await key('writer');
    const reader = await key('reader');
    progress(`seeding ${MODELS} models`);
    await seedModels(base, writer, MODELS);
    await sleep(5000);
    const idleKib = statusKib(api.pid, 'VmRSS') ?? 0;
    progress(`idle RSS ${mib(idleKib)} MiB`);
    const timeoutMs = settings.phaseTimeoutSeconds * 1000;
    const userAgent = `abuse-bench ${'x'.repeat(488)}`;

    const phases: Array<{ name: string; what: string; run: () => Promise<FloodResult> }> = [
      {
        name: 'cache flood',
        what: `${formatNumber(settings.pages)} distinct GET /models?limit=200&max_cost_in_per_mil=<n>, reader key`,
        run: () =>
          flood(settings.pages, settings.concurrency, timeoutMs, async (i) => {
            const response = await fetch(`${base}/models?limit=200&max_cost_in_per_mil=${1000 + i}`, {
              headers: { 'x-api-key': reader },
            });
            await response.arrayBuffer();
            return response.status;
          }),
      },
      {
        name: 'keyless flood',
        what: `${formatNumber(settings.keyless)} keyless GET /no-such-route/<n>, 500-character user-agent`,
        run: () =>
          flood(settings.keyless, settings.concurrency, timeoutMs, async (i) => {
            const response = await fetch(`${base}/no-such-route/${i}`, {
              headers: { 'user-agent': userAgent },
            });
            await response.arrayBuffer();
            return response.status;
          }),
      },
      {
        name: 'SSE flood',
        what: `${formatNumber(settings.streams)} GET /dashboard/stream open for ${settings.holdSeconds} s, reader key`,
        run: () => streamFlood(port, reader, settings.streams, settings.holdSeconds * 1000),
      },
    ];

    const results = [];
    for (const phase of phases) {
      const beforeKib = statusKib(api.pid, 'VmRSS') ?? 0;
      progress(`${phase.name}: ${phase.what}`);
      const sampler = new PeakMemory({ processes: { api: api.pid } }, 100);
      const outcome = await phase.run();
      const peakMiB = sampler.stop().api ?? Number.NaN;
      progress(`${phase.name}: done in ${outcome.seconds} s; settling ${settings.settleSeconds} s`);
      await sleep(settings.settleSeconds * 1000);
      const afterKib = statusKib(api.pid, 'VmRSS') ?? 0;
      results.push({
        name: phase.name,
        what: phase.what,
        outcome,
        rss_mib: { before: mib(beforeKib), peak: peakMiB, after: mib(afterKib) },
        peak_above_idle_mib: round(peakMiB - mib(idleKib), 1),
        after_above_idle_mib: mib(afterKib - idleKib),
      });
    }
    await stopSystem(processes, exits);
    const exit = exits.api;

    const goals: Goal[] = results.map((result) =>
      judge(
        goal(17, '<', GOAL_MB_ABOVE_IDLE, 'MiB', `RSS peak above idle, ${result.name}`),
        result.peak_above_idle_mib,
        result.what,
      ),
    );
    await publishResults({
      name: 'abuse',
      title: 'Abuse floods: RSS of one API process',
      startedAt,
      goals: { title: 'Goals (issue 17: RSS under 300 MB above idle in each flood)', goals },
      sections: [
        {
          title: `RSS of the API process, MiB (idle after seeding: ${mib(idleKib)})`,
          columns: ['flood', 'sent', 'answers', 's', 'before', 'peak', 'after', 'peak − idle'],
          rows: results.map((result) => [
            result.name,
            formatNumber(result.outcome.sent),
            Object.entries(result.outcome.statuses)
              .map(([status, count]) => `${status}: ${count}`)
              .join(', '),
            String(result.outcome.seconds),
            String(result.rss_mib.before),
            String(result.rss_mib.peak),
            String(result.rss_mib.after),
            String(result.peak_above_idle_mib),
          ]),
        },
      ],
      verdicts: [],
      notes: {
        settings: [
          ...cli.settingsBlock(settings),
          `API: \`telemetry-bus start\` via bench/support/system-under-test.ts (CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn, other settings default); own database and vhost; ${MODELS} models`,
          `concurrency ${settings.concurrency} (fetch, keep-alive), streams on a connection each; "after" read ${settings.settleSeconds} s after each flood; RSS sampled every 100 ms`,
          environmentText(env0),
        ],
        checks: [`API exit: code ${exit?.code}, ${exit?.clean ? 'clean' : 'not clean'}`],
      },
      command: invocation('bench:abuse'),
      report: {
        started_at: startedAt.toISOString(),
        settings,
        environment: env0,
        idle_rss_mib: mib(idleKib),
        results,
        api_exit: exit,
      },
    });
    return 0;
  } finally {
    await stopSystem(processes, exits);
    await environments.removeAll();
    await dropDatabase(DATABASE_SERVER, databaseName).catch(() => undefined);
  }
}

runMain('abuse', cli.help(), main);
