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
import {
  type BrokerInfo,
  type BusEnvironment,
  brokerAlarms,
  type Environments,
  purgeQueues,
  queueDepths,
  waitForBroker,
} from './support/broker.ts';
import { type Bus, BusOnOff, exitsText } from './support/bus-on-off.ts';
import { confirmPublish } from './support/confirm-publish.ts';
import { findRabbitmqPid } from './support/cpu.ts';
import { CpuMeter, type CpuPerEvent, cpuColumns, formatUs } from './support/cpu-per-event.ts';
import { type MixContext, mixRequests, StatusTally } from './support/e2e-mix.ts';
import { type Goal, goal, judge } from './support/goals.ts';
import { type LoadResult, runLoad } from './support/load.ts';
import { mixMessages } from './support/mix-messages.ts';
import { commandLine, flag, integer, someOf, text, url } from './support/options.ts';
import { findPostmasterPid } from './support/postgres-cpu.ts';
import {
  environment,
  environmentText,
  formatDelta,
  formatMs,
  formatNumber,
  formatTriple,
  commandLine as invocation,
  progress,
  publishResults,
  round,
  type Section,
  table,
} from './support/report.ts';
import { seedModels } from './support/seed-models.ts';
import { ServiceHistograms, type ServiceLatencies } from './support/service-histograms.ts';
import { handleSignals, runMain, sleep } from './support/settings.ts';
import { mean } from './support/stats.ts';
import type { Api, LoopDelay, Worker } from './support/system-under-test.ts';

const NAME = 'api-bus';
const SCENARIO_NAMES = ['get-model', 'mix'] as const;
type ScenarioName = (typeof SCENARIO_NAMES)[number];
type Mode = 'rate' | 'max';

const cli = commandLine({
  script: 'bench:api-bus',
  summary:
    "The API with the telemetry bus on vs off, same run, same paced rate and at the maximum, with µs of CPU\nper request per process and per API thread; prints issue 14's goals table.",
  options: {
    rate: flag('rate', '1000', integer(1), 'paced arrival rate of the rate mode, req/s'),
    rateDurationS: flag('rate-duration', '10', integer(1), 'measured seconds per rate-mode run', {
      arg: '<s>',
    }),
    rounds: flag(
      'rounds',
      '2',
      integer(1),
      'on/off pairs per scenario in the rate mode (the max mode runs one)',
    ),
    maxConnections: flag('max-connections', '50', integer(1), 'autocannon connections of the max mode'),
    maxDurationS: flag('max-duration', '10', integer(1), 'measured seconds per max-mode run', { arg: '<s>' }),
    warmupS: flag('warmup', '3', integer(0), 'unmeasured seconds per API and scenario (paced)', {
      arg: '<s>',
    }),
    models: flag('models', '1000', integer(20), 'models seeded in each database'),
    scenarios: someOf('scenario', SCENARIO_NAMES, 'scenarios'),
    modes: someOf('mode', ['rate', 'max'] as const, 'modes (rate: paced; max: autocannon)'),
    consumers: flag(
      'consumers',
      'all',
      (raw: string) => (raw === 'all' ? [...CONSUMER_NAMES] : raw === 'none' ? [] : raw.split(',')),
      'consumers of the worker process: all, none, or a list',
      { arg: '<list>' },
    ),
    rawDurationS: flag('raw-duration', '5', integer(0), 'seconds of the raw confirm-publish loop; 0 = skip', {
      arg: '<s>',
    }),
    drainTimeoutS: flag(
      'drain-timeout',
      '60',
      integer(1),
      'wait after a bus-on run for every event consumed',
      {
        arg: '<s>',
      },
    ),
    serverCpuProfDir: flag('server-cpu-prof', '', text, 'run both APIs under --cpu-prof into <dir>', {
      arg: '<dir>',
    }),
    pgServerUrl: flag('pg-url', 'postgres://root@127.0.0.1:5432', url, 'PostgreSQL server', { arg: '<url>' }),
  },
});
type Settings = ReturnType<typeof cli.read>;

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

// ---------------------------------------------------------------------------------------------------
// Scenarios

const modelPath = (id: string) => `/models/${encodeURIComponent(id)}`;

interface ScenarioRun {
  requests: (lane: number, lanes: number) => Request[];
  /** Responses with a status the scenario does not expect. */
  unexpected: (load: LoadResult) => number;
}

function scenarioRun(name: ScenarioName, seededIds: string[], tag: string): ScenarioRun {
  if (name === 'get-model') {
    return {
      requests: (lane, lanes) => {
        const offset = Math.floor(((lane % lanes) * seededIds.length) / lanes);
        return [...seededIds.slice(offset), ...seededIds.slice(0, offset)].map((id) => ({
          method: 'GET',
          path: modelPath(id),
        }));
      },
      unexpected: (load) =>
        Object.entries(load.statusCodes)
          .filter(([code]) => code !== '200')
          .reduce((sum, [, n]) => sum + n, 0),
    };
  }
  const mix: MixContext = { seededIds, tag, tally: new StatusTally(), registered: { next: 0 } };
  return {
    requests: (lane, lanes) => mixRequests(mix, lane, lanes),
    unexpected: () => mix.tally.unexpected,
  };
}

const SCENARIO_LABEL: Record<ScenarioName, string> = { 'get-model': 'GET /models/:id', mix: 'e2e mix' };

// ---------------------------------------------------------------------------------------------------
// Runs

interface RunResult {
  scenario: ScenarioName;
  mode: Mode;
  bus: Bus;
  round: number;
  load: LoadResult;
  unexpected: number;
  cpu: CpuPerEvent;
  /** The API's request thread (tid = pid), µs per request. */
  requestThreadUs: number | null;
  /**
   * The publisher thread, if the API names its tid in GET /health (publisher.thread.tid): its CPU over
   * the run ÷ the events emitted during it (each is one message).
   */
  publisherThread: {
    tid: number;
    messages: number;
    cpuUs: number | null;
    usPerMessage: number | null;
  } | null;
  loopDelayMs: LoopDelay | null;
  service: ServiceLatencies | null;
  drain: { confirmedAfterMs: number; emitted: number; unpublished: number; purged: number } | null;
}

interface RawLoop {
  /** Messages per second it was paced at; null: as fast as the window allows. */
  rate: number | null;
  published: number;
  seconds: number;
  messagesPerSec: number;
  nacked: number;
  cpu: CpuPerEvent;
  /** The publishing client (this process), µs per message. */
  clientUsPerMessage: number | null;
  /** The client's publishing thread (this process's main thread), µs per message: a publisher thread's like. */
  clientThreadUsPerMessage: number | null;
  rabbitmqUsPerMessage: number | null;
}

function publisherTid(health: Record<string, unknown>): number | undefined {
  const thread = (health.publisher as { thread?: { tid?: unknown } } | null)?.thread;
  return typeof thread?.tid === 'number' ? thread.tid : undefined;
}

async function drain(
  api: Api,
  worker: Worker | undefined,
  rabbitmqUrl: string,
  timeoutS: number,
): Promise<NonNullable<RunResult['drain']>> {
  const started = Date.now();
  const consumed = (worker?.consumers ?? [])
    .map((name) => LEDGER_CONSUMERS[name as keyof typeof LEDGER_CONSUMERS])
    .filter(
      (queue): queue is (typeof LEDGER_CONSUMERS)[keyof typeof LEDGER_CONSUMERS] => queue !== undefined,
    );
  for (;;) {
    const health = await api.health();
    const unpublished = health.events?.unpublished ?? 0;
    const depths = unpublished === 0 ? await queueDepths(rabbitmqUrl, consumed) : {};
    if (unpublished === 0 && Object.values(depths).every((depth) => depth === 0)) {
      const purged = await purgeQueues(rabbitmqUrl, WORK_QUEUES);
      return {
        confirmedAfterMs: Date.now() - started,
        emitted: health.events?.emitted ?? 0,
        unpublished,
        purged,
      };
    }
    if (Date.now() - started > timeoutS * 1000) {
      throw new Error(
        `${api.label}: not drained within ${timeoutS} s (unpublished ${unpublished}, queues ${JSON.stringify(depths)})`,
      );
    }
    await sleep(200);
  }
}

async function rawLoop(
  environments: Environments,
  durationS: number,
  rabbitPid: number | undefined,
  rate: number | undefined,
) {
  const env = await environments.create();
  try {
    const connection = await connectToBroker(env.env.RABBITMQ_URL, { name: 'telemetry-bus bench raw loop' });
    connection.on('error', () => {});
    try {
      await applyTopology(connection, buildTopology());
      const channel = await connection.createConfirmChannel();
      const messages = mixMessages(2000);
      const meter = new CpuMeter({
        processes: { client: process.pid, rabbitmq: rabbitPid },
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
        clientThreadUsPerMessage: cpu.threads.client?.find((t) => t.role === 'main')?.usPerEvent ?? null,
        rabbitmqUsPerMessage: cpu.processes.rabbitmq?.usPerEvent ?? null,
      } satisfies RawLoop;
    } finally {
      await connection.close().catch(() => {});
    }
  } finally {
    await environments.remove(env);
  }
}

// ---------------------------------------------------------------------------------------------------
// Main

async function main(): Promise<number> {
  const settings: Settings = cli.read();
  handleSignals();
  const startedAt = new Date();
  const env = environment();
  const tag = randomBytes(5).toString('hex');
  const system = new BusOnOff(settings.pgServerUrl, tag);
  const { databases, environments, processes, exits } = system;
  const runs: RunResult[] = [];
  let broker: BrokerInfo | undefined;
  let raw: RawLoop | undefined;
  let rawPaced: RawLoop | undefined;
  let finalHealth: Awaited<ReturnType<Api['health']>> | undefined;
  let alarmsAfter: string[] = [];

  try {
    broker = await waitForBroker();
    const rabbitPid = findRabbitmqPid();
    const postmaster = findPostmasterPid();
    const { on, off, worker } = await system.start(settings.consumers, settings.serverCpuProfDir);
    const busEnv = system.busEnv as BusEnvironment;
    const apis: Record<Bus, Api> = { on, off };
    const seeded = await Promise.all([on, off].map((api) => seedModels(api.url, api.key, settings.models)));
    const ids: Record<Bus, string[]> = { on: seeded[0] as string[], off: seeded[1] as string[] };
    progress(`seeded ${settings.models} models in each database`);
    await drain(on, worker, busEnv.env.RABBITMQ_URL, settings.drainTimeoutS);

    const runOnce = async (scenario: ScenarioName, mode: Mode, bus: Bus, roundNumber: number) => {
      const api = apis[bus];
      await waitForBroker();
      const scenarioLoad = scenarioRun(
        scenario,
        ids[bus],
        `${tag}-${scenario}-${mode}-${bus}-${roundNumber}`,
      );
      const meter = new CpuMeter({
        processes: {
          api: api.pid,
          ...(bus === 'on' && worker !== undefined ? { worker: worker.pid } : {}),
          rabbitmq: rabbitPid,
        },
        postgres: { postmaster, database: databases[bus] },
        threadsOf: ['api'],
      });
      const histograms = bus === 'on' ? new ServiceHistograms({ api, worker }) : undefined;
      await histograms?.start();
      await api.loopDelay();
      const emittedBefore = bus === 'on' ? ((await api.health()).events?.emitted ?? 0) : 0;
      meter.start();
      const load = await runLoad({
        url: api.url,
        key: api.key,
        durationS: mode === 'rate' ? settings.rateDurationS : settings.maxDurationS,
        requests: scenarioLoad.requests,
        ...(mode === 'rate' ? { rate: settings.rate } : { connections: settings.maxConnections }),
        label: `${scenario} ${mode} ${bus}`,
      });
      const cpu = meter.stop(load.responses);
      const emitted = bus === 'on' ? ((await api.health()).events?.emitted ?? 0) - emittedBefore : 0;
      const loopDelayMs = await api.loopDelay();
      let drained: RunResult['drain'] = null;
      let service: ServiceLatencies | null = null;
      let publisherThread: RunResult['publisherThread'] = null;
      if (bus === 'on') {
        drained = await drain(api, worker, busEnv.env.RABBITMQ_URL, settings.drainTimeoutS);
        service = (await histograms?.stop()) ?? null;
        const tid = publisherTid(await api.health());
        if (tid !== undefined) {
          // A thread that used no CPU is left out of the figures: 0 µs.
          const cpuUs = cpu.threads.api?.find((t) => t.tid === tid)?.cpuUs ?? 0;
          publisherThread = {
            tid,
            messages: emitted,
            cpuUs,
            usPerMessage: emitted > 0 ? round(cpuUs / emitted, 1) : null,
          };
        }
      }
      const result: RunResult = {
        scenario,
        mode,
        bus,
        round: roundNumber,
        load,
        unexpected: scenarioLoad.unexpected(load) + load.errors + load.timeouts,
        cpu,
        requestThreadUs: cpu.threads.api?.find((t) => t.role === 'main')?.usPerEvent ?? null,
        publisherThread,
        loopDelayMs,
        service,
        drain: drained,
      };
      runs.push(result);
      progress(
        `  ${SCENARIO_LABEL[scenario]} ${mode} bus ${bus} #${roundNumber}: ${formatNumber(load.requestsPerSec)} req/s, p50 ${formatMs(load.latencyMs.p50, 3)} p99 ${formatMs(load.latencyMs.p99, 3)} ms, ${formatUs(cpu.totalUsPerEvent)} µs CPU/request${service?.publishLatencyMs ? `, publish p95 ${formatMs(service.publishLatencyMs.p95, 3)} ms` : ''}`,
      );
    };

    for (const scenario of settings.scenarios) {
      if (settings.warmupS > 0) {
        for (const bus of ['on', 'off'] as const) {
          const api = apis[bus];
          progress(`${SCENARIO_LABEL[scenario]}: warm-up of ${api.label}, ${settings.warmupS} s`);
          await runLoad({
            url: api.url,
            key: api.key,
            durationS: settings.warmupS,
            requests: scenarioRun(scenario, ids[bus], `${tag}-warm-${scenario}-${bus}`).requests,
            rate: settings.rate,
          });
        }
        await drain(on, worker, busEnv.env.RABBITMQ_URL, settings.drainTimeoutS);
      }
      for (const mode of settings.modes) {
        const rounds = mode === 'rate' ? settings.rounds : 1;
        for (let roundNumber = 1; roundNumber <= rounds; roundNumber++) {
          for (const bus of ['on', 'off'] as const) await runOnce(scenario, mode, bus, roundNumber);
        }
      }
    }
    if (settings.rawDurationS > 0) {
      // Paced at the rate the bus-on runs emitted, the raw loop works as the publisher thread did (a few
      // messages per wake-up): the like-for-like baseline. Unpaced, it shows amqplib's floor with full
      // batches.
      const paced = runs.filter((run) => run.bus === 'on' && run.mode === 'rate' && run.publisherThread);
      const eventRate =
        paced.length === 0
          ? undefined
          : Math.round(mean(paced.map((run) => (run.publisherThread?.messages ?? 0) / run.cpu.elapsedS)));
      for (const rate of eventRate === undefined || eventRate <= 0 ? [undefined] : [eventRate, undefined]) {
        progress(
          `raw amqplib confirm-publish loop, ${settings.rawDurationS} s, ${rate === undefined ? 'unpaced' : `paced at ${formatNumber(rate)}/s`}`,
        );
        const result = await rawLoop(environments, settings.rawDurationS, rabbitPid, rate);
        if (rate === undefined) raw = result;
        else rawPaced = result;
        progress(
          `  ${formatNumber(result.messagesPerSec)} msgs/s, client ${formatUs(result.clientUsPerMessage)} µs/msg (its thread ${formatUs(result.clientThreadUsPerMessage)}), RabbitMQ ${formatUs(result.rabbitmqUsPerMessage)} µs/msg`,
        );
      }
    }
    finalHealth = await on.health();
    alarmsAfter = await brokerAlarms();
  } finally {
    await system.close();
  }

  // ---------------------------------------------------------------------------------------------------
  // Comparisons and goals

  const of = (scenario: ScenarioName, mode: Mode, bus: Bus) =>
    runs.filter((run) => run.scenario === scenario && run.mode === mode && run.bus === bus);
  const avg = (values: Array<number | null>) =>
    values.some((value) => value === null) ? null : mean(values as number[]);
  const comparisons = settings.scenarios.flatMap((scenario) =>
    settings.modes.map((mode) => {
      const on = of(scenario, mode, 'on');
      const off = of(scenario, mode, 'off');
      const side = (list: RunResult[]) => ({
        requestsPerSec: round(mean(list.map((run) => run.load.requestsPerSec)), 1),
        p50: round(mean(list.map((run) => run.load.latencyMs.p50)), 3),
        p99: round(mean(list.map((run) => run.load.latencyMs.p99)), 3),
        totalUsPerRequest: avg(list.map((run) => run.cpu.totalUsPerEvent)),
        apiUsPerRequest: avg(list.map((run) => run.cpu.processes.api?.usPerEvent ?? null)),
        requestThreadUs: avg(list.map((run) => run.requestThreadUs)),
      });
      const a = side(on);
      const b = side(off);
      return {
        scenario,
        mode,
        on: a,
        off: b,
        p50OverheadMs: round(a.p50 - b.p50, 3),
        p99OverheadMs: round(a.p99 - b.p99, 3),
        requestThreadRatio:
          a.requestThreadUs === null || b.requestThreadUs === null || b.requestThreadUs === 0
            ? null
            : round(a.requestThreadUs / b.requestThreadUs, 2),
        busCostUsPerEvent:
          a.totalUsPerRequest === null || b.totalUsPerRequest === null
            ? null
            : round(a.totalUsPerRequest - b.totalUsPerRequest, 1),
        maxRatio:
          mode === 'max' && b.requestsPerSec > 0 ? round(a.requestsPerSec / b.requestsPerSec, 3) : null,
      };
    }),
  );
  const rateRows = comparisons.filter((c) => c.mode === 'rate');
  const worst = (values: Array<number | null>) => {
    const known = values.filter((value): value is number => value !== null && !Number.isNaN(value));
    return known.length === 0 ? null : Math.max(...known);
  };
  const perScenario = (pick: (c: (typeof comparisons)[number]) => number | null, digits = 3) =>
    rateRows.map((c) => `${SCENARIO_LABEL[c.scenario]} ${formatMs(pick(c), digits)}`).join(', ');
  const onRateRuns = runs.filter((run) => run.mode === 'rate' && run.bus === 'on');
  const publishP95 = worst(onRateRuns.map((run) => run.service?.publishLatencyMs?.p95 ?? null));
  const publisherUs = avg(
    onRateRuns.length === 0 ? [null] : onRateRuns.map((run) => run.publisherThread?.usPerMessage ?? null),
  );
  const ratioOf = (a: number | null, b: number | null | undefined) =>
    a === null || b === null || b === undefined || b === 0 ? null : round(a / b, 2);
  const getMax = comparisons.find((c) => c.scenario === 'get-model' && c.mode === 'max');
  const at = `paced ${formatNumber(settings.rate)} req/s`;
  const goals: Goal[] = [
    judge(
      GOALS.p50,
      worst(rateRows.map((c) => c.p50OverheadMs)),
      `${at}, bus on − off, worst scenario: ${perScenario((c) => c.p50OverheadMs)} ms`,
    ),
    judge(
      GOALS.p99,
      worst(rateRows.map((c) => c.p99OverheadMs)),
      `${at}, bus on − off, worst scenario: ${perScenario((c) => c.p99OverheadMs)} ms`,
    ),
    judge(
      GOALS.requestThread,
      worst(rateRows.map((c) => c.requestThreadRatio)),
      `main thread (tid = pid) µs per request, ${at}: ${perScenario((c) => c.requestThreadRatio, 2)}`,
    ),
    judge(
      GOALS.publisherThread,
      ratioOf(publisherUs, rawPaced?.clientThreadUsPerMessage),
      publisherUs === null
        ? 'not measured: GET /health names no publisher thread (publisher.thread.tid)'
        : `${formatUs(publisherUs)} µs per message (tid from GET /health, ÷ events emitted) vs the raw loop's thread paced at the same ${formatNumber(rawPaced?.rate ?? 0)} msgs/s: ${formatUs(rawPaced?.clientThreadUsPerMessage)} µs; vs the raw loop unpaced (full batches): ${formatUs(raw?.clientThreadUsPerMessage)} µs, ratio ${formatMs(ratioOf(publisherUs, raw?.clientThreadUsPerMessage), 2)}`,
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

  // ---------------------------------------------------------------------------------------------------
  // Tables

  const load = (run: { mode: Mode }) =>
    run.mode === 'rate' ? `${formatNumber(settings.rate)}/s paced` : `max ${settings.maxConnections} conn`;
  const sections: Section[] = [
    {
      title: 'Runs, in the order they ran (paced: latency from each intended send time; ms)',
      columns: [
        'scenario',
        'load',
        'bus',
        'req/s',
        'p50',
        'p90',
        'p99',
        'p99.9',
        'send lag p99',
        'loop delay p99',
        'publish p50/p95/p99',
        'unexpected',
      ],
      rows: runs.map((run) => [
        SCENARIO_LABEL[run.scenario],
        load(run),
        `${run.bus} #${run.round}`,
        formatNumber(run.load.requestsPerSec),
        formatMs(run.load.latencyMs.p50, 3),
        formatMs(run.load.latencyMs.p90, 3),
        formatMs(run.load.latencyMs.p99, 3),
        formatMs(run.load.latencyMs.p99_9, 3),
        formatMs(run.load.sendLagMs?.p99, 3),
        formatMs(run.loopDelayMs?.p99, 1),
        run.bus === 'on' ? formatTriple(run.service?.publishLatencyMs) : '',
        String(run.unexpected),
      ]),
    },
    {
      title: 'Bus on − off (means of the rounds): latency (ms) and µs of CPU per request, all processes',
      columns: [
        'scenario',
        'load',
        'req/s on/off',
        'p50 on/off',
        'p50 overhead',
        'p99 on/off',
        'p99 overhead',
        'CPU µs/req on/off',
        'bus cost µs/event',
        'request thread µs on/off',
      ],
      rows: comparisons.map((c) => [
        SCENARIO_LABEL[c.scenario],
        load(c),
        `${formatNumber(c.on.requestsPerSec)}/${formatNumber(c.off.requestsPerSec)}`,
        `${formatMs(c.on.p50, 3)}/${formatMs(c.off.p50, 3)}`,
        formatDelta(c.p50OverheadMs, 3),
        `${formatMs(c.on.p99, 3)}/${formatMs(c.off.p99, 3)}`,
        formatDelta(c.p99OverheadMs, 3),
        `${formatUs(c.on.totalUsPerRequest)}/${formatUs(c.off.totalUsPerRequest)}`,
        formatUs(c.busCostUsPerEvent),
        `${formatUs(c.on.requestThreadUs)}/${formatUs(c.off.requestThreadUs)}`,
      ]),
    },
    table('µs of CPU per request, per process (PostgreSQL: backends of the run’s database)', runs, {
      scenario: (run) => SCENARIO_LABEL[run.scenario],
      load,
      bus: (run) => `${run.bus} #${run.round}`,
      ...cpuColumns((run) => run.cpu),
    }),
    {
      title: 'API threads over the paced runs (µs of CPU per request; the main thread serves requests)',
      columns: ['scenario', 'bus', 'round', 'tid', 'role', 'µs/request', 'cores'],
      rows: runs
        .filter((run) => run.mode === 'rate')
        .flatMap((run) =>
          (run.cpu.threads.api ?? [])
            .slice(0, 6)
            .map((thread) => [
              SCENARIO_LABEL[run.scenario],
              run.bus,
              `#${run.round}`,
              String(thread.tid),
              thread.role === 'main'
                ? 'main (request thread)'
                : run.publisherThread?.tid === thread.tid
                  ? 'publisher'
                  : 'helper',
              formatUs(thread.usPerEvent),
              thread.cores === null ? 'n/a' : thread.cores.toFixed(2),
            ]),
        ),
    },
    {
      title: 'Event age per consumer, bus-on runs (event timestamp → commit; ms)',
      columns: ['scenario', 'load', 'round', 'consumer', 'events', 'p50/p95/p99'],
      rows: runs
        .filter((run) => run.bus === 'on')
        .flatMap((run) =>
          Object.entries(run.service?.eventAgeMs ?? { 'n/a (no histogram)': null }).map(([consumer, age]) => [
            SCENARIO_LABEL[run.scenario],
            load(run),
            `#${run.round}`,
            consumer,
            age === null ? '' : formatNumber(age.count),
            ...(age === null ? ['', ''] : [formatTriple(age)]),
          ]),
        ),
    },
    {
      title:
        'Raw amqplib confirm-publish loop (same run; the mix’s messages, window 1000, no consumers) against the publisher thread',
      columns: [
        'publisher',
        'paced at',
        'messages',
        'seconds',
        'msgs/s',
        'client µs/msg',
        'its thread µs/msg',
        'RabbitMQ µs/msg',
        'nacked',
      ],
      rows: [
        ...[rawPaced, raw]
          .filter((loop): loop is RawLoop => loop !== undefined)
          .map((loop) => [
            'raw amqplib loop',
            loop.rate === null ? 'unpaced' : `${formatNumber(loop.rate)}/s`,
            formatNumber(loop.published),
            String(loop.seconds),
            formatNumber(loop.messagesPerSec),
            formatUs(loop.clientUsPerMessage),
            formatUs(loop.clientThreadUsPerMessage),
            formatUs(loop.rabbitmqUsPerMessage),
            String(loop.nacked),
          ]),
        ...onRateRuns
          .filter((run) => run.publisherThread !== null)
          .map((run) => [
            `API publisher thread, ${SCENARIO_LABEL[run.scenario]} #${run.round}`,
            `${formatNumber(settings.rate)} req/s`,
            formatNumber(run.publisherThread?.messages ?? 0),
            String(round(run.cpu.elapsedS, 2)),
            formatNumber((run.publisherThread?.messages ?? 0) / run.cpu.elapsedS),
            '',
            formatUs(run.publisherThread?.usPerMessage),
            formatUs(
              run.cpu.processes.rabbitmq?.cpuUs == null || !run.publisherThread?.messages
                ? null
                : run.cpu.processes.rabbitmq.cpuUs / run.publisherThread.messages,
            ),
            '',
          ]),
      ],
    },
  ];
  const totalUnexpected = runs.reduce((sum, run) => sum + run.unexpected, 0);
  const warnings = processes.reduce((sum, p) => sum + p.warnings.length, 0);
  const notes = {
    settings: [
      ...cli.settingsBlock(settings),
      `rate mode: the paced open-model generator (bench/support/paced-load.ts): requests evenly spaced at ${formatNumber(settings.rate)}/s over 10 lanes, sent whether or not earlier ones answered, latency from each intended send time (HDR histogram); max mode: autocannon, ${settings.maxConnections} connections`,
      'APIs: `telemetry-bus start` child processes (CONSUMERS=none, RATE_LIMIT_PER_MINUTE=0, LOG_LEVEL=warn), identical but for TELEMETRY_ENABLED, each on its own database; the worker consumes the bus-on vhost',
      'CPU: /proc ticks over each run (10 ms resolution) ÷ responses; PostgreSQL = backends of that API’s database; load generator = this process; total = all of them; bus cost = total on − total off at the same rate',
      'publish latency and event age: the service’s own histograms (telemetry_publish_latency_seconds, telemetry_consumer_event_age_seconds) read before and after each bus-on run; loop delay: the API’s request thread (perf_hooks, 1 ms resolution)',
      `SHARED MACHINE: other sessions use the same ${env.cpus} cores; load average at start ${env.loadAverageAtStart.join(' ')}`,
      environmentText(env, broker === undefined ? '' : `, RabbitMQ ${broker.version}`),
    ],
    checks: [
      `errors, time-outs and unexpected statuses over all runs: ${totalUnexpected}${totalUnexpected === 0 ? '' : ' (must be 0)'}`,
      finalHealth?.events && finalHealth.publisher
        ? `bus-on API at the end: emitted ${formatNumber(finalHealth.events.emitted)}, confirmed ${formatNumber(finalHealth.publisher.confirmed)}, unpublished ${finalHealth.events.unpublished}, dropped ${JSON.stringify(finalHealth.events.dropped)}, resent ${finalHealth.publisher.resent}, nacked ${finalHealth.publisher.nacked}`
        : 'bus-on API at the end: n/a',
      `warnings logged: ${warnings}`,
      `process exits: ${exitsText(exits)}`,
      `broker alarms after the runs: ${alarmsAfter.length === 0 ? 'none' : alarmsAfter.join('; ')}`,
    ],
  };
  await publishResults({
    name: NAME,
    title: 'API with the telemetry bus on vs off',
    startedAt,
    goals: { title: 'Goals (issue 14: the bus off the request path)', goals },
    sections,
    verdicts: [],
    notes,
    command: invocation('bench:api-bus'),
    report: {
      settings,
      environment: { ...env, rabbitmq: broker ?? null, sharedMachine: true },
      comparisons,
      runs,
      rawLoop: raw ?? null,
      rawLoopPaced: rawPaced ?? null,
      finalHealth: finalHealth ?? null,
      warnings: Object.fromEntries(processes.map((p) => [p.name, p.warnings.slice(0, 50)])),
      processExits: exits,
      brokerAlarmsAfter: alarmsAfter,
    },
  });
  const healthy =
    totalUnexpected === 0 &&
    (finalHealth?.events?.unpublished ?? 0) === 0 &&
    Object.values(exits).every((exit) => exit.clean);
  return healthy ? 0 : 1;
}

runMain(NAME, cli.help(), main);
