/**
 * What the telemetry bus costs the API: the same API with the bus on and off, in the same run, at the
 * same paced rate and at its maximum, with the CPU each costs per request; prints issue 14's goals table.
 * What runs and how each figure is measured: bench/README.md ("bench:api-bus").
 */
import { randomBytes } from 'node:crypto';
import type { Request } from 'autocannon';
import { applyTopology } from '../src/bus/apply-topology.ts';
import { connectToBroker } from '../src/bus/broker-connection.ts';
import { buildTopology, WORK_QUEUES } from '../src/bus/topology.ts';
import { CONSUMER_NAMES } from '../src/consumers/consumer-names.ts';
import { LEDGER_CONSUMERS } from '../src/ledger/ledger-summary.ts';
import { purgeQueues, queueDepths, waitForBroker } from './support/broker.ts';
import { type Bus, BusOnOff } from './support/bus-on-off.ts';
import { confirmPublish } from './support/confirm-publish.ts';
import { CpuMeter, cpuColumns, formatUs } from './support/cpu-per-event.ts';
import { PG_SERVER_OPTION } from './support/databases.ts';
import { mixRequests, StatusTally } from './support/e2e-mix.ts';
import { goal, judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { mixMessages } from './support/mix-messages.ts';
import { commandLine, flag, ifQuick, integer, onOff, seconds, someOf, text } from './support/options.ts';
import {
  formatDelta,
  formatMs,
  formatNumber,
  formatTriple,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  table,
} from './support/report.ts';
import { handleSignals, runMain, sleep } from './support/settings.ts';
import { mean } from './support/stats.ts';
import type { Api } from './support/system-under-test.ts';

const SCENARIOS = { 'get-model': 'GET /models/:id', mix: 'e2e mix' } as const;
type Scenario = keyof typeof SCENARIOS;
type Mode = 'rate' | 'max';

const consumerList = (raw: string) =>
  raw === 'all' ? [...CONSUMER_NAMES] : raw === 'none' ? [] : raw.split(',');
const cli = commandLine({
  script: 'bench:api-bus',
  summary:
    "The API with the telemetry bus on vs off, same run, same paced rate and at the maximum, with µs of CPU\nper request per process and per API thread; prints issue 14's goals table.",
  options: {
    quick: onOff('quick', 'a smoke run: 3 s runs, one round, 1 s warm-up, 200 models, 2 s raw loops'),
    rate: flag('rate', '1000', integer(1), 'paced arrival rate of the rate mode, req/s'),
    rateDurationS: seconds('rate-duration', ifQuick('3', '10'), 'measured seconds per rate-mode run'),
    rounds: flag('rounds', ifQuick('1', '2'), integer(1), 'on/off pairs per scenario, rate mode (max: one)'),
    maxConnections: flag('max-connections', '50', integer(1), 'autocannon connections of the max mode'),
    maxDurationS: seconds('max-duration', ifQuick('3', '10'), 'measured seconds per max-mode run'),
    warmupS: seconds('warmup', ifQuick('1', '3'), 'unmeasured seconds per API and scenario (paced)', 0),
    models: flag('models', ifQuick('200', '1000'), integer(20), 'models seeded in each database'),
    scenarios: someOf('scenario', Object.keys(SCENARIOS) as Scenario[], 'scenarios'),
    modes: someOf('mode', ['rate', 'max'] as const, 'modes (rate: paced; max: autocannon)'),
    consumers: flag('consumers', 'all', consumerList, 'the worker’s: all, none, or a list', {
      arg: '<list>',
    }),
    rawDurationS: seconds('raw-duration', ifQuick('2', '5'), 'seconds of the raw publish loop; 0 = none', 0),
    drainTimeoutS: seconds('drain-timeout', '60', 'wait after a bus-on run for every event consumed'),
    serverCpuProfDir: flag('server-cpu-prof', '', text, 'both APIs under --cpu-prof into <dir>', {
      arg: '<dir>',
    }),
    pgServerUrl: PG_SERVER_OPTION,
  },
});

/** Issue 14's goals, named as its table names them. */
const GOALS = {
  p50: goal(14, '<=', 0.2, 'ms', 'API p50 overhead at 1,000 req/s'),
  p99: goal(14, '<=', 1, 'ms', 'API p99 overhead at 1,000 req/s (spec: < 1 ms)'),
  requestThread: goal(14, '<=', 1.25, 'ratio', 'request-thread CPU per request, bus on ÷ bus off'),
  publisherThread: goal(14, '<=', 1.1, 'ratio', 'publisher thread CPU per message ÷ raw amqplib loop'),
  publishLatency: goal(
    14,
    '<',
    5,
    'ms',
    'publish latency (emit → confirm) p95 at 1,000 events/s (spec: < 10 ms)',
  ),
  maxRatio: goal(14, '>=', 0.5, 'ratio', 'bus-on maximum ÷ bus-off maximum, GET /models/:id'),
};

/** The requests of a scenario's lane, and its count of responses with a status it does not expect. */
function scenarioRun(scenario: Scenario, seededIds: string[], tag: string) {
  if (scenario === 'mix') {
    const mix = { seededIds, tag, tally: new StatusTally(), registered: { next: 0 } };
    return {
      requests: (lane: number, lanes: number) => mixRequests(mix, lane, lanes),
      unexpected: () => mix.tally.unexpected,
    };
  }
  return {
    // Each lane starts at its own offset of the seeded models.
    requests: (lane: number, lanes: number): Request[] => {
      const offset = Math.floor((lane * seededIds.length) / lanes);
      return [...seededIds.slice(offset), ...seededIds.slice(0, offset)].map((id) => ({
        method: 'GET',
        path: `/models/${encodeURIComponent(id)}`,
      }));
    },
    unexpected: (load: LoadResult) =>
      Object.entries(load.statusCodes).reduce((sum, [code, n]) => sum + (code === '200' ? 0 : n), 0),
  };
}

type Settings = ReturnType<typeof cli.read>;
type RunResult = Awaited<ReturnType<typeof measureRun>>;

/** Waits until the API has confirmed every event and the worker's queues are empty, then purges the rest. */
async function drain(api: Api, consumers: readonly string[], rabbitmqUrl: string, timeoutS: number) {
  const started = Date.now();
  const queues = consumers.flatMap((name) => LEDGER_CONSUMERS[name as keyof typeof LEDGER_CONSUMERS] ?? []);
  for (;;) {
    const { events } = await api.health();
    const unpublished = events?.unpublished ?? 0;
    const depths = unpublished === 0 ? await queueDepths(rabbitmqUrl, queues) : {};
    if (unpublished === 0 && Object.values(depths).every((depth) => depth === 0)) {
      const purged = await purgeQueues(rabbitmqUrl, WORK_QUEUES);
      return { confirmedAfterMs: Date.now() - started, emitted: events?.emitted ?? 0, unpublished, purged };
    }
    if (Date.now() - started > timeoutS * 1000) {
      throw new Error(
        `${api.label}: not drained within ${timeoutS} s (unpublished ${unpublished}, queues ${JSON.stringify(depths)})`,
      );
    }
    await sleep(200);
  }
}

/** The raw amqplib confirm-publish loop of the mix's messages, in a vhost of its own, paced at `rate` or not. */
async function rawLoop(system: BusOnOff, durationS: number, rate: number | undefined) {
  const env = await system.environments.create();
  const connection = await connectToBroker(env.env.RABBITMQ_URL, { name: 'telemetry-bus bench raw loop' });
  connection.on('error', () => {});
  try {
    await applyTopology(connection, buildTopology());
    const channel = await connection.createConfirmChannel();
    const messages = mixMessages(2000);
    const meter = new CpuMeter({
      processes: { client: process.pid, rabbitmq: system.rabbitmqPid },
      threadsOf: ['client'],
    });
    meter.start();
    const outcome = await confirmPublish(channel, {
      message: (index) => messages[index % messages.length],
      deadline: performance.now() + durationS * 1000,
      ...(rate === undefined ? {} : { rate }),
    });
    const cpu = meter.stop(outcome.published);
    await channel.close().catch(() => {});
    return {
      rate: rate ?? null,
      published: outcome.published,
      seconds: outcome.seconds,
      messagesPerSec: Math.round(outcome.published / outcome.seconds),
      nacked: outcome.nacked,
      cpu,
      clientUsPerMessage: cpu.processes['load generator']?.usPerEvent ?? null,
      /** Its publishing thread (this process's main thread): a publisher thread's like. */
      clientThreadUsPerMessage: cpu.threads.client?.find((t) => t.role === 'main')?.usPerEvent ?? null,
      rabbitmqUsPerMessage: cpu.processes.rabbitmq?.usPerEvent ?? null,
    };
  } finally {
    await connection.close().catch(() => {});
    await system.environments.remove(env);
  }
}

/** One run of `scenario` in `mode` against the bus-on or bus-off API: its load, CPU and histograms. */
async function measureRun(
  system: BusOnOff,
  settings: Settings,
  run: { scenario: Scenario; mode: Mode; bus: Bus; round: number },
  drainOn: () => ReturnType<typeof drain>,
) {
  const { scenario, mode, bus } = run;
  const api = system.apis[bus];
  await waitForBroker();
  const requests = scenarioRun(
    scenario,
    system.seeded[bus],
    `${system.databases.on}-${scenario}-${mode}-${bus}-${run.round}`,
  );
  const emitted = async () => (bus === 'on' ? ((await api.health()).events?.emitted ?? 0) : 0);
  const emittedBefore = await emitted();
  const measure = await system.phase(bus);
  await api.loopDelay();
  const load = await runLoad({
    url: api.url,
    key: api.key,
    durationS: mode === 'rate' ? settings.rateDurationS : settings.maxDurationS,
    requests: requests.requests,
    ...(mode === 'rate' ? { rate: settings.rate } : { connections: settings.maxConnections }),
    label: `${scenario} ${mode} ${bus}`,
  });
  const cpu = measure.cpu(load.responses);
  const loopDelayMs = await api.loopDelay();
  const messages = (await emitted()) - emittedBefore;
  const drained = bus === 'on' ? await drainOn() : null;
  const tid = bus === 'on' ? (await api.health()).publisher?.thread?.tid : undefined;
  // A thread that used no CPU is left out of the figures: 0 µs.
  const cpuUs = cpu.threads.api?.find((t) => t.tid === tid)?.cpuUs ?? 0;
  const result = {
    ...run,
    load,
    unexpected: requests.unexpected(load) + load.errors + load.timeouts,
    cpu,
    requestThreadUs: cpu.threads.api?.find((t) => t.role === 'main')?.usPerEvent ?? null,
    publisherThread:
      tid === undefined
        ? null
        : { tid, messages, cpuUs, usPerMessage: messages > 0 ? round(cpuUs / messages, 1) : null },
    loopDelayMs,
    service: await measure.service(),
    drain: drained,
  };
  const publish = result.service?.publishLatencyMs;
  progress(
    `  ${SCENARIOS[scenario]} ${mode} bus ${bus} #${run.round}: ${formatNumber(load.requestsPerSec)} req/s, p50 ${formatMs(load.latencyMs.p50, 3)} p99 ${formatMs(load.latencyMs.p99, 3)} ms, ${formatUs(cpu.totalUsPerEvent)} µs CPU/request${publish ? `, publish p95 ${formatMs(publish.p95, 3)} ms` : ''}`,
  );
  return result;
}

async function main(): Promise<number> {
  const settings: Settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const tag = randomBytes(5).toString('hex');
  const system = new BusOnOff(settings.pgServerUrl, tag);
  const runs: RunResult[] = [];
  const raw: Record<'paced' | 'unpaced', Awaited<ReturnType<typeof rawLoop>> | undefined> = {
    paced: undefined,
    unpaced: undefined,
  };
  let finalHealth: Awaited<ReturnType<Api['health']>> | undefined;

  try {
    await system.start({
      consumers: settings.consumers,
      models: settings.models,
      cpuProfDir: settings.serverCpuProfDir,
    });
    const { apis } = system;
    const rabbitmqUrl = system.busEnv?.env.RABBITMQ_URL as string;
    const drainOn = () => drain(apis.on, system.worker?.consumers ?? [], rabbitmqUrl, settings.drainTimeoutS);
    await drainOn();

    for (const scenario of settings.scenarios) {
      for (const bus of settings.warmupS > 0 ? (['on', 'off'] as const) : []) {
        progress(`${SCENARIOS[scenario]}: warm-up of ${apis[bus].label}, ${settings.warmupS} s`);
        const { requests } = scenarioRun(scenario, system.seeded[bus], `${tag}-warm-${scenario}-${bus}`);
        await runLoad({
          url: apis[bus].url,
          key: apis[bus].key,
          durationS: settings.warmupS,
          requests,
          rate: settings.rate,
        });
      }
      if (settings.warmupS > 0) await drainOn();
      for (const mode of settings.modes) {
        for (let r = 1; r <= (mode === 'rate' ? settings.rounds : 1); r++) {
          for (const bus of ['on', 'off'] as const)
            runs.push(await measureRun(system, settings, { scenario, mode, bus, round: r }, drainOn));
        }
      }
    }
    if (settings.rawDurationS > 0) {
      // Paced at the rate the bus-on runs emitted, the raw loop works as the publisher thread did (a few
      // messages per wake-up): the like-for-like baseline. Unpaced, it shows amqplib's floor.
      const pacedRuns = runs.filter((run) => run.bus === 'on' && run.mode === 'rate' && run.publisherThread);
      const eventRate = Math.round(
        mean(pacedRuns.map((run) => (run.publisherThread?.messages ?? 0) / run.cpu.elapsedS)),
      );
      for (const rate of eventRate > 0 ? [eventRate, undefined] : [undefined]) {
        progress(
          `raw amqplib confirm-publish loop, ${settings.rawDurationS} s, ${rate === undefined ? 'unpaced' : `paced at ${formatNumber(rate)}/s`}`,
        );
        const loop = await rawLoop(system, settings.rawDurationS, rate);
        raw[rate === undefined ? 'unpaced' : 'paced'] = loop;
        progress(
          `  ${formatNumber(loop.messagesPerSec)} msgs/s, its thread ${formatUs(loop.clientThreadUsPerMessage)} µs/msg`,
        );
      }
    }
    finalHealth = await apis.on.health();
  } finally {
    await system.close();
  }

  // Comparisons and goals.
  const avg = (values: Array<number | null>) =>
    values.some((value) => value === null) ? null : mean(values as number[]);
  const comparisons = settings.scenarios.flatMap((scenario) =>
    settings.modes.map((mode) => {
      const side = (bus: Bus) => {
        const list = runs.filter((run) => run.scenario === scenario && run.mode === mode && run.bus === bus);
        return {
          requestsPerSec: round(mean(list.map((run) => run.load.requestsPerSec)), 1),
          p50: round(mean(list.map((run) => run.load.latencyMs.p50)), 3),
          p99: round(mean(list.map((run) => run.load.latencyMs.p99)), 3),
          totalUsPerRequest: avg(list.map((run) => run.cpu.totalUsPerEvent)),
          requestThreadUs: avg(list.map((run) => run.requestThreadUs)),
        };
      };
      const [on, off] = [side('on'), side('off')];
      return {
        scenario,
        mode,
        on,
        off,
        p50OverheadMs: round(on.p50 - off.p50, 3),
        p99OverheadMs: round(on.p99 - off.p99, 3),
        requestThreadRatio: ratioOf(on.requestThreadUs, off.requestThreadUs),
        busCostUsPerEvent:
          on.totalUsPerRequest === null || off.totalUsPerRequest === null
            ? null
            : round(on.totalUsPerRequest - off.totalUsPerRequest, 1),
        maxRatio:
          mode === 'max' && off.requestsPerSec > 0 ? round(on.requestsPerSec / off.requestsPerSec, 3) : null,
      };
    }),
  );
  const rateRows = comparisons.filter((c) => c.mode === 'rate');
  const worst = (values: Array<number | null>) => {
    const known = values.filter((value): value is number => value !== null && !Number.isNaN(value));
    return known.length === 0 ? null : Math.max(...known);
  };
  const perScenario = (pick: (c: (typeof comparisons)[number]) => number | null, digits = 3) =>
    rateRows.map((c) => `${SCENARIOS[c.scenario]} ${formatMs(pick(c), digits)}`).join(', ');
  const onRateRuns = runs.filter((run) => run.mode === 'rate' && run.bus === 'on');
  const publishP95 = worst(onRateRuns.map((run) => run.service?.publishLatencyMs?.p95 ?? null));
  const publisherUs = avg(
    onRateRuns.length === 0 ? [null] : onRateRuns.map((run) => run.publisherThread?.usPerMessage ?? null),
  );
  const getMax = comparisons.find((c) => c.scenario === 'get-model' && c.mode === 'max');
  const at = `paced ${formatNumber(settings.rate)} req/s`;
  const overhead = (q: 'p50' | 'p99') => {
    const pick = (c: (typeof comparisons)[number]) => c[`${q}OverheadMs`];
    return judge(
      GOALS[q],
      worst(rateRows.map(pick)),
      `${at}, bus on − off, worst scenario: ${perScenario(pick)} ms`,
    );
  };
  const goals = [
    overhead('p50'),
    overhead('p99'),
    judge(
      GOALS.requestThread,
      worst(rateRows.map((c) => c.requestThreadRatio)),
      `main thread (tid = pid) µs per request, ${at}: ${perScenario((c) => c.requestThreadRatio, 2)}`,
    ),
    judge(
      GOALS.publisherThread,
      ratioOf(publisherUs, raw.paced?.clientThreadUsPerMessage),
      publisherUs === null
        ? 'not measured: GET /health names no publisher thread (publisher.thread.tid)'
        : `${formatUs(publisherUs)} µs per message (tid from GET /health, ÷ events emitted) vs the raw loop's thread paced at the same ${formatNumber(raw.paced?.rate ?? 0)} msgs/s: ${formatUs(raw.paced?.clientThreadUsPerMessage)} µs; vs the raw loop unpaced (full batches): ${formatUs(raw.unpaced?.clientThreadUsPerMessage)} µs, ratio ${formatMs(ratioOf(publisherUs, raw.unpaced?.clientThreadUsPerMessage), 2)}`,
    ),
    judge(
      GOALS.publishLatency,
      publishP95,
      publishP95 === null
        ? 'not measured: the API has no telemetry_publish_latency_seconds'
        : `telemetry_publish_latency_seconds over the bus-on ${at} runs, worst run`,
    ),
    judge(
      GOALS.maxRatio,
      getMax?.maxRatio ?? null,
      getMax === undefined
        ? 'not measured: run the max mode with the get-model scenario'
        : `${formatNumber(getMax.on.requestsPerSec)} vs ${formatNumber(getMax.off.requestsPerSec)} req/s, autocannon ${settings.maxConnections} connections`,
    ),
  ];

  // Tables.
  const load = (run: { mode: Mode }) =>
    run.mode === 'rate' ? `${formatNumber(settings.rate)}/s paced` : `max ${settings.maxConnections} conn`;
  const scenario = (row: { scenario: Scenario }) => SCENARIOS[row.scenario];
  const bus = (run: RunResult) => `${run.bus} #${run.round}`;
  const both = (c: (typeof comparisons)[number], value: (side: typeof c.on) => string) =>
    `${value(c.on)}/${value(c.off)}`;
  const ms = (value: number | null | undefined) => formatMs(value, 3);
  const ages = runs
    .filter((run) => run.bus === 'on')
    .flatMap((run) =>
      Object.entries(run.service?.eventAgeMs ?? { 'n/a (no histogram)': null }).map(([consumer, age]) => ({
        run,
        consumer,
        age,
      })),
    );
  const publishers = [
    ...[raw.paced, raw.unpaced].flatMap((loop) =>
      loop === undefined
        ? []
        : [
            {
              ...loop,
              who: 'raw amqplib loop',
              pacedAt: loop.rate === null ? 'unpaced' : `${formatNumber(loop.rate)}/s`,
            },
          ],
    ),
    ...onRateRuns.flatMap(({ publisherThread: thread, cpu, scenario: s, round: r }) =>
      thread === null
        ? []
        : [
            {
              who: `API publisher thread, ${SCENARIOS[s]} #${r}`,
              pacedAt: `${formatNumber(settings.rate)} req/s`,
              published: thread.messages,
              seconds: round(cpu.elapsedS, 2),
              messagesPerSec: thread.messages / cpu.elapsedS,
              clientUsPerMessage: null,
              clientThreadUsPerMessage: thread.usPerMessage,
              rabbitmqUsPerMessage: ratioOf(cpu.processes.rabbitmq?.cpuUs ?? null, thread.messages),
              nacked: null,
            },
          ],
    ),
  ];
  const sections = [
    table('Runs, in the order they ran (paced: latency from each intended send time; ms)', runs, {
      scenario,
      load,
      bus,
      'req/s': (run) => formatNumber(run.load.requestsPerSec),
      p50: (run) => ms(run.load.latencyMs.p50),
      p90: (run) => ms(run.load.latencyMs.p90),
      p99: (run) => ms(run.load.latencyMs.p99),
      'p99.9': (run) => ms(run.load.latencyMs.p99_9),
      'send lag p99': (run) => ms(run.load.sendLagMs?.p99),
      'loop delay p99': (run) => formatMs(run.loopDelayMs?.p99, 1),
      'publish p50/p95/p99': (run) => (run.bus === 'on' ? formatTriple(run.service?.publishLatencyMs) : ''),
      unexpected: (run) => String(run.unexpected),
    }),
    table(
      'Bus on − off (means of the rounds): latency (ms) and µs of CPU per request, all processes',
      comparisons,
      {
        scenario,
        load,
        'req/s on/off': (c) => both(c, (side) => formatNumber(side.requestsPerSec)),
        'p50 on/off': (c) => both(c, (side) => ms(side.p50)),
        'p50 overhead': (c) => formatDelta(c.p50OverheadMs, 3),
        'p99 on/off': (c) => both(c, (side) => ms(side.p99)),
        'p99 overhead': (c) => formatDelta(c.p99OverheadMs, 3),
        'CPU µs/req on/off': (c) => both(c, (side) => formatUs(side.totalUsPerRequest)),
        'bus cost µs/event': (c) => formatUs(c.busCostUsPerEvent),
        'request thread µs on/off': (c) => both(c, (side) => formatUs(side.requestThreadUs)),
      },
    ),
    table('µs of CPU per request, per process (PostgreSQL: backends of the run’s database)', runs, {
      scenario,
      load,
      bus,
      ...cpuColumns((run) => run.cpu),
    }),
    table('Event age per consumer, bus-on runs (event timestamp → commit; ms)', ages, {
      scenario: ({ run }) => SCENARIOS[run.scenario],
      load: ({ run }) => load(run),
      round: ({ run }) => `#${run.round}`,
      consumer: ({ consumer }) => consumer,
      events: ({ age }) => (age === null ? '' : formatNumber(age.count)),
      'p50/p95/p99': ({ age }) => (age === null ? '' : formatTriple(age)),
    }),
    table(
      'Raw amqplib confirm-publish loop (same run; the mix’s messages, window 1000, no consumers) against the publisher thread',
      publishers,
      {
        publisher: (p) => p.who,
        'paced at': (p) => p.pacedAt,
        messages: (p) => formatNumber(p.published),
        seconds: (p) => String(p.seconds),
        'msgs/s': (p) => formatNumber(p.messagesPerSec),
        'client µs/msg': (p) => (p.clientUsPerMessage === null ? '' : formatUs(p.clientUsPerMessage)),
        'its thread µs/msg': (p) => formatUs(p.clientThreadUsPerMessage),
        'RabbitMQ µs/msg': (p) => formatUs(p.rabbitmqUsPerMessage),
        nacked: (p) => (p.nacked === null ? '' : String(p.nacked)),
      },
    ),
  ];
  const totalUnexpected = runs.reduce((sum, run) => sum + run.unexpected, 0);
  const { events, publisher } = finalHealth ?? {};
  await publishResults({
    name: 'api-bus',
    title: 'API with the telemetry bus on vs off',
    startedAt,
    goals: { title: 'Goals (issue 14: the bus off the request path)', goals },
    sections,
    notes: {
      settings: [
        ...cli.settingsBlock(settings),
        `rate mode: the paced open-model generator at ${formatNumber(settings.rate)}/s over 10 lanes; max mode: autocannon, ${settings.maxConnections} connections; method: bench/README.md`,
        ...system.notes(),
      ],
      checks: [
        `errors, time-outs and unexpected statuses over all runs: ${totalUnexpected}${totalUnexpected === 0 ? '' : ' (must be 0)'}`,
        events && publisher
          ? `bus-on API at the end: emitted ${formatNumber(events.emitted)}, confirmed ${formatNumber(publisher.confirmed)}, unpublished ${events.unpublished}, dropped ${JSON.stringify(events.dropped)}, resent ${publisher.resent}, nacked ${publisher.nacked}`
          : 'bus-on API at the end: n/a',
        ...system.checks(),
      ],
    },
    command: invocation('bench:api-bus'),
    report: {
      settings,
      comparisons,
      runs,
      rawLoop: raw.unpaced ?? null,
      rawLoopPaced: raw.paced ?? null,
      finalHealth: finalHealth ?? null,
      ...system.report(),
    },
  });
  return totalUnexpected === 0 && (events?.unpublished ?? 0) === 0 && system.clean ? 0 : 1;
}

function ratioOf(a: number | null, b: number | null | undefined): number | null {
  return a === null || b == null || b === 0 ? null : round(a / b, 2);
}

runMain('api-bus', cli.help(), main);
