/**
 * `npm run bench:abuse`: what a hostile client with no key or a reader key can make one API process hold
 * in memory (issue 17: 10,000 distinct pages took RSS from 418 MB to 1.88 GB, and it stayed).
 *
 * The service as an operator runs it (`telemetry-bus start`, consumers included, every setting at its
 * default) on a database and vhost of its own, 200 models seeded, then three floods, one after another,
 * each bounded in count and time, all to 127.0.0.1:
 *
 * - cache flood: `--pages` distinct `GET /models?limit=200&max_cost_in_per_mil=<n>` pages with a reader key;
 * - keyless flood: `--keyless` requests without a key to an unknown route, each with a 500-character
 *   user-agent;
 * - SSE flood: `--streams` dashboard live feeds (`GET /dashboard/stream`) open at once for `--hold-s`.
 *
 * For each: the API process's RSS before, at its peak (sampled every 100 ms) and after `--settle-s` of
 * quiet (longer than CACHE_TTL_MS, so that what the caches hold has expired). Goal: the peak stays under
 * 300 MB above the idle RSS measured after seeding, in each case.
 *
 *   npm run bench:abuse -- [--pages 10000] [--keyless 20000] [--streams 1000] [--concurrency 32]
 *                          [--hold-s 10] [--settle-s 35] [--phase-timeout-s 180]
 */

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Environments } from './support/broker.ts';
import { createDatabase, dropDatabase } from './support/databases.ts';
import { statusKib } from './support/memory.ts';
import {
  commandLine,
  environment,
  environmentText,
  formatNumber,
  progress,
  publishResults,
  round,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
import {
  handleSignals,
  interruptible,
  pick,
  positiveInteger,
  runMain,
  sleep,
  throwIfInterrupted,
  UsageError,
} from './support/settings.ts';
import { freePort, runCli, startCli, stopProcess, waitForHttp } from './support/system-process.ts';

const HELP = `npm run bench:abuse -- [options]
  --pages N            distinct 200-model pages of the cache flood (ABUSE_PAGES, default 10000)
  --keyless N          keyless requests of the keyless flood (ABUSE_KEYLESS, default 20000)
  --streams N          dashboard streams of the SSE flood (ABUSE_STREAMS, default 1000)
  --concurrency N      requests in flight in the floods (ABUSE_CONCURRENCY, default 32)
  --hold-s N           seconds the streams stay open (default 10)
  --settle-s N         seconds of quiet before "after" is read (default 35: over CACHE_TTL_MS)
  --phase-timeout-s N  a flood stops after this long, whatever it has sent (default 180)
`;

const GOAL_MB_ABOVE_IDLE = 300;
const DATABASE_SERVER = process.env.TEST_DATABASE_SERVER ?? 'postgres://root@127.0.0.1:5432';
const MODELS = 200;

const mib = (kib: number | undefined) => (kib === undefined ? Number.NaN : round(kib / 1024, 1));

/** RSS of `pid`, sampled every 100 ms until stopped: the peak, in KiB. */
function sampleRss(pid: number): { stop(): number } {
  let peak = statusKib(pid, 'VmRSS') ?? 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, statusKib(pid, 'VmRSS') ?? 0);
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, statusKib(pid, 'VmRSS') ?? 0);
    },
  };
}

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
  const { values } = parseArgs({
    options: {
      pages: { type: 'string' },
      keyless: { type: 'string' },
      streams: { type: 'string' },
      concurrency: { type: 'string' },
      'hold-s': { type: 'string' },
      'settle-s': { type: 'string' },
      'phase-timeout-s': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const settings = {
    pages: positiveInteger('--pages', pick(values.pages, 'ABUSE_PAGES', '10000')),
    keyless: positiveInteger('--keyless', pick(values.keyless, 'ABUSE_KEYLESS', '20000')),
    streams: positiveInteger('--streams', pick(values.streams, 'ABUSE_STREAMS', '1000')),
    concurrency: positiveInteger('--concurrency', pick(values.concurrency, 'ABUSE_CONCURRENCY', '32')),
    holdSeconds: positiveInteger('--hold-s', values['hold-s'] ?? '10'),
    settleSeconds: positiveInteger('--settle-s', values['settle-s'] ?? '35', true),
    phaseTimeoutSeconds: positiveInteger('--phase-timeout-s', values['phase-timeout-s'] ?? '180'),
  };
  if (settings.pages > 100_000 || settings.keyless > 200_000 || settings.streams > 4000) {
    throw new UsageError('bounded: at most 100,000 pages, 200,000 keyless requests and 4,000 streams');
  }
  handleSignals();
  const startedAt = new Date();
  const env0 = environment();
  const environments = new Environments();
  const databaseName = `tb_bench_abuse_${randomUUID().slice(0, 8)}`;
  const databaseUrl = await createDatabase(DATABASE_SERVER, databaseName);
  const bus = await environments.create();
  const port = await freePort();
  const env = {
    ...bus.env,
    DATABASE_URL: databaseUrl,
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'warn',
    BOOTSTRAP_ADMIN_KEY: 'false',
  };
  const api = startCli('api', ['start'], env, (entry) => entry.component === 'logging-consumer');
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(api, `${base}/livez`, 60_000);
    const key = async (role: string) =>
      /(tb_[A-Za-z0-9_-]{43})/.exec(
        await runCli(['keys', 'create', '--role', role, '--name', `bench ${role}`], env),
      )?.[1] ?? '';
    const writer = await key('writer');
    const reader = await key('reader');
    progress(`seeding ${MODELS} models`);
    await seedModels(base, writer, MODELS, { throwIfInterrupted, interruptible });
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
      const sampler = sampleRss(api.pid);
      const outcome = await phase.run();
      const peakKib = sampler.stop();
      progress(`${phase.name}: done in ${outcome.seconds} s; settling ${settings.settleSeconds} s`);
      await sleep(settings.settleSeconds * 1000);
      const afterKib = statusKib(api.pid, 'VmRSS') ?? 0;
      const aboveIdle = mib(peakKib - idleKib);
      results.push({
        name: phase.name,
        what: phase.what,
        outcome,
        rss_mib: { before: mib(beforeKib), peak: mib(peakKib), after: mib(afterKib) },
        peak_above_idle_mib: aboveIdle,
        after_above_idle_mib: mib(afterKib - idleKib),
        goal: { measured_mib: aboveIdle, goal_mib: GOAL_MB_ABOVE_IDLE, met: aboveIdle < GOAL_MB_ABOVE_IDLE },
      });
    }
    const exit = await stopProcess(api);

    const goals = Object.fromEntries(
      results.map((result) => [
        result.name.replace(' ', '_'),
        {
          what: `RSS peak above idle during the ${result.name}, MiB`,
          goal: `< ${GOAL_MB_ABOVE_IDLE}`,
          measured: result.peak_above_idle_mib,
          met: result.goal.met,
        },
      ]),
    );
    await publishResults({
      name: 'abuse',
      title: 'Abuse floods: RSS of one API process',
      startedAt,
      sections: [
        {
          title: `RSS of the API process, MiB (idle after seeding: ${mib(idleKib)})`,
          columns: ['flood', 'sent', 'answers', 's', 'before', 'peak', 'after', 'peak − idle', 'goal', 'met'],
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
            `< ${GOAL_MB_ABOVE_IDLE}`,
            result.goal.met ? 'yes' : 'NO',
          ]),
        },
      ],
      verdicts: results.map(
        (result) =>
          `${result.name}: goal RSS peak < ${GOAL_MB_ABOVE_IDLE} MiB above idle; measured ${result.peak_above_idle_mib} MiB; ${result.goal.met ? 'met' : 'NOT met'}`,
      ),
      notes: {
        settings: [
          `API: \`telemetry-bus start\` (consumers included), every setting at its default but LOG_LEVEL=warn and BOOTSTRAP_ADMIN_KEY=false; own database and vhost; ${MODELS} models`,
          `concurrency ${settings.concurrency} (fetch, keep-alive), streams on a connection each; "after" read ${settings.settleSeconds} s after each flood; RSS sampled every 100 ms`,
          environmentText(env0),
        ],
        checks: [`API exit: code ${exit.code}, ${exit.clean ? 'clean' : 'not clean'}`],
      },
      command: commandLine('bench:abuse'),
      report: {
        started_at: startedAt.toISOString(),
        settings,
        environment: env0,
        idle_rss_mib: mib(idleKib),
        goals,
        results,
        api_exit: exit,
      },
    });
    return 0;
  } finally {
    await stopProcess(api, 15_000).catch(() => undefined);
    await environments.removeAll();
    await dropDatabase(DATABASE_SERVER, databaseName).catch(() => undefined);
  }
}

runMain('abuse', HELP, main);
