/**
 * The metrics benchmark: the metrics consumer's throughput against a bare INSERT loop (bench/consumers.ts
 * as a child), and GET /metrics latency over generated rollups. Method: bench/README.md ("bench:metrics").
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { migrate } from '../src/db/migrate.ts';
import { buildApp } from '../src/http/app.ts';
import { HISTOGRAM_LAYOUT } from '../src/log-linear-histogram.ts';
import { createServices } from '../src/services.ts';
import { createDatabase, dropDatabase, PG_SERVER_OPTION, withClient } from './support/databases.ts';
import { judge } from './support/goals.ts';
import { commandLine, flag, integer, onOff, type Settings as SettingsOf } from './support/options.ts';
import {
  environment,
  environmentText,
  formatNumber,
  commandLine as invocation,
  progress,
  publishResults,
  REPO_ROOT,
  RESULTS_DIR,
  round,
  table,
} from './support/report.ts';
import { handleSignals, runMain } from './support/settings.ts';
import { distribution } from './support/stats.ts';

const NAME = 'metrics';

const cli = commandLine({
  script: 'bench:metrics',
  summary:
    'The metrics consumer against a bare INSERT loop (bench/consumers.ts as a child), and GET /metrics\nlatency over generated rollups.',
  options: {
    events: flag('events', '100000', integer(1), 'events in the queue for the throughput part'),
    batch: flag('batch', '250', integer(1), 'consumer batch size'),
    days: flag('days', '30', integer(1, 60), 'days of generated rollups for the read part (at most 60)'),
    requests: flag('requests', '200', integer(1), 'GET /metrics requests per scenario'),
    skipConsumer: onOff('skip-consumer', 'only the read part'),
    pgServerUrl: PG_SERVER_OPTION,
  },
});
type Settings = SettingsOf<typeof cli.options>;

/** Part 1: bench/consumers.ts --consumers metrics as a child; its run's figures, from its JSON. */
async function throughput(settings: Settings) {
  const args = [
    '--consumers',
    'metrics',
    '--events',
    String(settings.events),
    '--batch',
    String(settings.batch),
  ];
  const script = join(REPO_ROOT, 'bench/consumers.ts');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', script, ...args, '--name', 'metrics-consumer', '--pg-url', settings.pgServerUrl],
    { stdio: 'inherit' },
  );
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`bench/consumers.ts --consumers metrics exited with ${code}`);
  const date = new Date().toISOString().slice(0, 10);
  const { runs } = JSON.parse(readFileSync(`${RESULTS_DIR}metrics-consumer-${date}.json`, 'utf8')) as {
    runs: Array<{
      run: { eventsPerSec: number; seconds: number };
      bare: { rowsPerSec: number };
      ratio: number;
      problems: string[];
    }>;
  };
  const run = runs[0];
  if (run === undefined) throw new Error('bench/consumers.ts reported no run');
  return {
    eventsPerSec: run.run.eventsPerSec,
    bareRowsPerSec: run.bare.rowsPerSec,
    ratio: run.ratio,
    seconds: run.run.seconds,
    problems: run.problems,
    report: 'bench/results/metrics-consumer-latest.md',
  };
}

// Part 2: reads over generated rollups.

/** Model reads in a minute: 40 for each of these vendors' tiers. */
const READ_TIERS: Array<[string, number[]]> = [
  ['OpenAI', [1, 2, 3]],
  ['Anthropic', [1, 2, 3]],
  ['Google', [1, 2]],
  ['Meta', [3, 4]],
  ['Mistral', [3, 4]],
];

/**
 * The keys a minute holds, as the consumer would write them: model reads for 12 vendor/tier pairs,
 * filters (none, by vendor, by tier), lifecycle events, four kinds of error, two other routes. `base`
 * is the first histogram bucket of the key's latencies (bucket 705 ≈ 1 ms; 64 buckets per doubling).
 */
const KEYS_SQL = `
  SELECT * FROM (VALUES
    ${READ_TIERS.flatMap(([vendor, tiers]) =>
      tiers.map(
        (tier) =>
          `('model.queried', 'GET', '/models/:model_id', '${vendor}', 'Tier_${tier}', 2, '', 40, 640)`,
      ),
    ).join(',\n    ')},
    ('filter.executed', 'GET', '/models', '', '', 2, '', 30, 660),
    ('filter.executed', 'GET', '/models', 'OpenAI', '', 2, '', 8, 670),
    ('filter.executed', 'GET', '/models', '', 'Tier_1', 2, '', 8, 670),
    ('model.registered', 'POST', '/models', 'OpenAI', 'Tier_1', 2, '', 1, 830),
    ('model.updated', 'PATCH', '/models/:model_id', 'OpenAI', 'Tier_1', 2, '', 2, 830),
    ('model.deactivated', 'POST', '/models/:model_id/deactivate', 'Meta', 'Tier_4', 2, '', 1, 830),
    ('api.error', 'GET', '/models/:model_id', '', '', 4, 'MODEL_NOT_FOUND', 10, 600),
    ('api.error', 'POST', '/models', '', '', 4, 'VALIDATION_FAILED', 2, 560),
    ('api.error', 'GET', '/models', '', '', 5, 'INTERNAL_ERROR', 1, 900),
    ('api.error', 'GET', '', '', '', 4, 'ROUTE_NOT_FOUND', 2, 500),
    ('api.request', 'GET', '/livez', '', '', 2, '', 6, 400),
    ('api.request', 'GET', '/metrics', '', '', 2, '', 1, 900)
  ) AS k(event_type, method, route, vendor_id, capability_tier, status_class, error_type, per_minute, base)`;

/** A histogram of `width` consecutive buckets from `base`, random counts: packed as the consumer stores it. */
const histogram = (base: string, width: number) =>
  `ARRAY(SELECT ((b::bigint) << ${HISTOGRAM_LAYOUT.countBits}) | (1 + floor(random() * 4))::bigint
         FROM generate_series(${base}, ${base} + ${width} - 1) AS b)`;

/** `days` of minute, hour and day rollups up to `now`, as the consumer and compactor would leave them. */
async function generateRollups(
  client: pg.Client,
  days: number,
  now: number,
): Promise<Record<string, number>> {
  const end = new Date(Math.floor(now / 60_000) * 60_000 + 60_000).toISOString();
  const start = new Date(Math.floor(now / 86_400_000) * 86_400_000 - days * 86_400_000).toISOString();
  // Histogram widths grow with the bucket: a minute of one key fills a couple of dozen buckets, a day a
  // few hundred (the consumer's real figures for a log-normal latency at these rates).
  const tiers = [
    ['1m', '1 minute', 1, 24],
    ['1h', '1 hour', 60, 120],
    ['1d', '1 day', 1440, 260],
  ] as const;
  for (const [granularity, interval, minutes, width] of tiers) {
    progress(`  generating ${granularity} rollups`);
    const times = `generate_series(date_bin('${interval}', $1::timestamptz, 'epoch'), $2::timestamptz - interval '1 minute', interval '${interval}') AS t`;
    const perMinute = (requests: string) =>
      granularity === '1h' ? `array_fill(${requests}, ARRAY[60])` : 'NULL';
    const cache = `CASE WHEN k.event_type = 'model.queried' THEN k.per_minute * ${minutes} / 2 ELSE 0 END`;
    await client.query(
      `INSERT INTO metrics_rollups
         (granularity, bucket_start, event_type, method, route, vendor_id, capability_tier, status_class,
          error_type, requests, cache_hits, cache_misses, request_latency, processing_latency, minute_requests)
       SELECT '${granularity}', t, k.event_type, k.method, k.route, k.vendor_id, k.capability_tier,
              k.status_class, k.error_type, k.per_minute * ${minutes}, ${cache}, ${cache},
              ${histogram('k.base', width)}, ${histogram('1100', width)}, ${perMinute('k.per_minute')}
       FROM ${times}, (${KEYS_SQL}) AS k`,
      [start, end],
    );
    await client.query(
      `INSERT INTO metrics_rollup_totals (granularity, bucket_start, requests, errors, request_latency, processing_latency, minute_requests)
       SELECT '${granularity}', t, 160 * ${minutes}, 15 * ${minutes}, ${histogram('400', width * 3)},
              ${histogram('1100', width)}, ${perMinute('160')}
       FROM ${times}`,
      [start, end],
    );
  }
  // As the compactor would leave it: every minute up to 5 minutes ago (its default lag) counted in its
  // hours and days, so a request reads the last few minutes from minute rows.
  const watermark = new Date(Math.floor(now / 60_000) * 60_000 - 5 * 60_000).toISOString();
  await client.query('UPDATE metrics_compaction SET watermark = $1', [watermark]);
  await client.query('VACUUM ANALYZE metrics_rollups');
  await client.query('VACUUM ANALYZE metrics_rollup_totals');
  const { rows } = await client.query<{ granularity: string; rows: string; size: string }>(
    `SELECT granularity, count(*) AS rows, pg_size_pretty(pg_total_relation_size('metrics_rollups')) AS size
     FROM metrics_rollups GROUP BY granularity ORDER BY granularity`,
  );
  progress(
    `  metrics_rollups: ${rows.map((row) => `${row.granularity} ${row.rows} rows`).join(', ')}; ${rows[0]?.size}`,
  );
  return Object.fromEntries(rows.map((row) => [row.granularity, Number(row.rows)]));
}

/** Part 2: each scenario's GET /metrics requests, one at a time, through the app in this process. */
async function reads(settings: Settings) {
  const database = `tb_bench_metrics_${Math.random().toString(16).slice(2, 10)}`;
  const databaseUrl = await createDatabase(settings.pgServerUrl, database);
  const dataDir = mkdtempSync(join(tmpdir(), 'tb-bench-metrics-'));
  try {
    await migrate(databaseUrl);
    const rows = await withClient(databaseUrl, async (client) => {
      const generated = await generateRollups(client, settings.days, Date.now());
      await client.query(
        `INSERT INTO models (model_id, vendor_id, capability_tier, context_window, cost_in_per_mil,
                             cost_out_per_mil, function_call_support, is_active, created_at, updated_at)
         SELECT 'bench/' || i, (ARRAY['OpenAI','Anthropic','Google','Meta','Mistral'])[1 + i % 5],
                'Tier_' || (1 + i % 4), 128000, 1, 2, true, i % 7 <> 0, now(), now()
         FROM generate_series(1, 1000) AS i`,
      );
      return generated;
    });
    const config = {
      DATABASE_URL: databaseUrl,
      DATA_DIR: dataDir,
      TELEMETRY_ENABLED: 'false',
      LOG_LEVEL: 'silent',
    };
    const services = createServices(loadConfig(config));
    const app = await buildApp(services);
    try {
      const key = (await services.apiKeys.create('bench', 'reader')).key;
      const [last, from] = [`last ${settings.days} days`, `from=-${settings.days}d`];
      const scenarios: Array<[string, string]> = [
        ['last 24 h (1h buckets)', 'from=-24h'],
        ['last 24 h, 1m buckets', 'from=-24h&bucket=1m'],
        [`${last} (1d buckets)`, from],
        [`${last}, 1h buckets`, `${from}&bucket=1h`],
        [`${last}, vendor_id=OpenAI`, `${from}&vendor_id=OpenAI`],
        [`${last}, capability_tier=Tier_1`, `${from}&capability_tier=Tier_1`],
        [`${last}, route=/models/:model_id`, `${from}&route=%2Fmodels%2F%3Amodel_id`],
        [`${last}, 1h buckets, vendor_id=OpenAI`, `${from}&bucket=1h&vendor_id=OpenAI`],
      ];
      const results = [];
      for (const [name, query] of scenarios) {
        progress(`  GET /metrics?${query}: ${settings.requests} requests`);
        const samples: number[] = [];
        let body: { bucket: string; series: unknown[] } | undefined;
        let coldMs = Number.NaN;
        for (let i = 0; i < settings.requests + 10; i++) {
          const started = performance.now();
          const response = await app.inject({ url: `/metrics?${query}`, headers: { 'x-api-key': key } });
          const elapsed = performance.now() - started;
          if (response.statusCode !== 200)
            throw new Error(`GET /metrics?${query}: ${response.statusCode} ${response.body}`);
          // The first 10 warm the pool, the plan cache, the shared buffers and the cache of closed periods.
          if (i === 0) coldMs = elapsed;
          if (i >= 10) samples.push(elapsed);
          body = response.json();
        }
        const latency = distribution(samples, 1, 2);
        const [bucket, points] = [body?.bucket ?? '?', body?.series.length ?? 0];
        // coldMs: the first request of the scenario, nothing of it in the cache of closed periods yet.
        results.push({
          name,
          query,
          coldMs,
          latency: { ...latency, mean: round(latency.mean, 2) },
          bucket,
          points,
        });
      }
      return { scenarios: results, rows };
    } finally {
      await app.close();
      await services.close();
    }
  } finally {
    await dropDatabase(settings.pgServerUrl, database).catch((error: unknown) =>
      progress(`could not drop ${database}: ${String(error)}`),
    );
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  let consumer: Awaited<ReturnType<typeof throughput>> | undefined;
  if (!settings.skipConsumer) {
    progress(`part 1: the metrics consumer, ${formatNumber(settings.events)} events (bench/consumers.ts)`);
    consumer = await throughput(settings);
  }
  progress(`part 2: GET /metrics over ${settings.days} days of generated rollups`);
  const { scenarios, rows } = await reads(settings);
  const throughputTable = table(
    'Throughput (queue pre-filled; bare = INSERT … ON CONFLICT DO NOTHING of the same events, same run)',
    consumer === undefined ? [] : [consumer],
    {
      consumer: () => 'metrics',
      batch: () => String(settings.batch),
      events: () => formatNumber(settings.events),
      seconds: (run) => formatNumber(run.seconds, 2),
      'events/s': (run) => formatNumber(run.eventsPerSec),
      'bare rows/s': (run) => formatNumber(run.bareRowsPerSec),
      'consumer / bare': (run) => `${formatNumber(100 * run.ratio)}%`,
    },
  );
  const ms = (value: number) => formatNumber(value, 2);
  const latencyTable = table(
    'GET /metrics latency (inject, one at a time, after 10 warm-up requests; first = the first request of the scenario, before its closed periods are cached; ms)',
    scenarios,
    {
      range: (scenario) => scenario.name,
      bucket: (scenario) => scenario.bucket,
      points: (scenario) => String(scenario.points),
      first: (scenario) => ms(scenario.coldMs),
      requests: (scenario) => String(scenario.latency.count),
      p50: (scenario) => ms(scenario.latency.p50),
      p90: (scenario) => ms(scenario.latency.p90),
      p99: (scenario) => ms(scenario.latency.p99),
      max: (scenario) => ms(scenario.latency.max),
    },
  );
  const thirtyDays = scenarios.find((scenario) => scenario.query === `from=-${settings.days}d`);
  const goals = [
    judge(
      { name: 'metrics events applied', threshold: 10_000, comparison: '>=', unit: 'events/s' },
      consumer?.eventsPerSec,
      consumer === undefined
        ? 'not run (--skip-consumer)'
        : `${formatNumber(100 * consumer.ratio)}% of the bare INSERT loop's ${formatNumber(consumer.bareRowsPerSec)} rows/s`,
    ),
    judge(
      {
        name: 'GET /metrics p99 over 30 days of per-minute rollups',
        threshold: 50,
        comparison: '<',
        unit: 'ms',
      },
      thirtyDays?.latency.p99,
      `over ${settings.days} days, default bucket, unfiltered`,
    ),
  ];
  const rowCounts = Object.entries(rows).map(
    ([granularity, count]) => `${granularity} ${formatNumber(count)}`,
  );
  const settingsText = [
    ...cli.settingsBlock(settings),
    `throughput: bench/consumers.ts --consumers metrics --events ${settings.events} --batch ${settings.batch} (its full report: bench/results/metrics-consumer-latest.md)`,
    `reads: ${settings.days} days of rollups ending now, 25 keys per bucket (12 vendor/tier pairs of model reads, 3 filter keys, 3 lifecycle, 4 errors, 2 other routes), histograms 24 / 120 / 260 buckets wide per minute / hour / day row; rows ${rowCounts.join(', ')}; 1,000 models in the registry`,
    'reads: the Fastify app in this process (telemetry off), app.inject, requests one after another; latency includes routing, validation, the queries in one REPEATABLE READ snapshot, adding up in memory and serialisation',
    'reads: compaction watermark 5 minutes before now (the compactor\'s default lag): the last minutes are read from minute rows by every request; closed days, hours and minutes come from the in-process cache after the first request that reads them (the "first" column)',
    environmentText(env, ' (shared machine: other sessions ran their own work; see the load average)'),
  ];
  const problems = consumer?.problems ?? [];
  await publishResults({
    name: NAME,
    title: 'Metrics benchmark',
    startedAt,
    goals: { title: 'Goals', goals },
    sections: consumer === undefined ? [latencyTable] : [throughputTable, latencyTable],
    notes: {
      settings: settingsText,
      checks:
        consumer === undefined
          ? []
          : [
              `consumer run: ${problems.length === 0 ? 'ok (counts checked by bench/consumers.ts)' : `PROBLEMS: ${problems.join('; ')}`}`,
            ],
    },
    command: invocation('bench:metrics'),
    report: { settings, environment: env, consumer: consumer ?? null, reads: { rows, scenarios } },
  });
  return problems.length === 0 ? 0 : 1;
}

runMain(NAME, cli.help(), main);
