/**
 * The fault matrix (issue 6): eleven failures of the broker, the network, PostgreSQL and our own processes
 * and threads, each under load against the whole system as deployed (the API and the workers as processes of their
 * own, on a database and vhost of their own), each proving by counting every event in every consumer's
 * tables and in the loss ledger that none was lost and none applied twice, each restoring the service
 * in a `finally` and bounded in time. It ends by printing the table: scenario, events sent, lost,
 * duplicates applied, recovery time (and writes it to test-results/fault-matrix-<mode>.{md,json}).
 *
 * Two sizes: `npm run test:faults` (CI) runs the reduced matrix — every scenario, with shorter outages
 * and less load; `npm run test:faults:full` runs the durations the issue names (RabbitMQ down 20 s and
 * 60 s, a 30 s partition, cuts for 2 minutes, a 60 s alarm, PostgreSQL down 60 s, 100 × 600 ordered
 * updates), about 12 minutes. FAULT_MATRIX_ONLY=3,7 runs only those scenarios.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { seedModel } from '../../bench/support/seed-models.ts';
import { closeConnection, connectToBroker } from '../../src/bus/broker-connection.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import type { EventType } from '../../src/bus/event-types.ts';
import { CRASH_SWITCH } from '../../src/bus/publisher-thread/crash-switch.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import {
  killBroker,
  restoreBroker,
  setMemoryAlarm,
  startBrokerApp,
  startBrokerNode,
  stopBrokerApp,
} from '../support/broker-control.ts';
import { exampleEvent } from '../support/event-examples.ts';
import {
  type Accounting,
  type GroundTruth,
  waitForSettled,
} from '../support/fault-matrix/event-accounting.ts';
import { type MatrixMode, MatrixReport, type MatrixRow } from '../support/fault-matrix/matrix-report.ts';
import { RegistryWorkload } from '../support/fault-matrix/registry-workload.ts';
import {
  type SystemOptions,
  type SystemUnderTest,
  scenarioPrefix,
  startSystem,
  waitForConsumers,
} from '../support/fault-matrix/system-under-test.ts';
import { type LoadResult, percentile, runLoad } from '../support/http-load.ts';
import { restorePostgres, stopPostgres } from '../support/postgres-control.ts';
import { publishEvents } from '../support/publish-events.ts';
import { vhostConnections } from '../support/rabbitmq-vhost.ts';
import { waitUntil } from '../support/wait-until.ts';

const MODE: MatrixMode = process.env.FAULT_MATRIX === 'full' ? 'full' : 'reduced';
const FULL = MODE === 'full';
const ONLY = new Set(
  (process.env.FAULT_MATRIX_ONLY ?? '')
    .split(',')
    .filter(Boolean)
    .map((n) => Number(n)),
);

/** Durations in s and sizes of each scenario, reduced (CI) and full (on demand). */
const SIZE = {
  /** Requests per second of the background load. */
  rate: FULL ? 300 : 150,
  /** Load before a fault is injected, in s. */
  warmupS: 2,
  brokerKilledS: FULL ? 20 : 3,
  brokerStoppedS: FULL ? 60 : 5,
  blackholeS: FULL ? 30 : 16,
  cutsForS: FULL ? 120 : 15,
  cutEveryS: 5,
  alarmS: FULL ? 60 : 6,
  apiLoadBeforeKillS: FULL ? 10 : 4,
  postgresDownS: FULL ? 60 : 10,
  spoolRequests: FULL ? 6000 : 2500,
  floodEvents: FULL ? 20_000 : 3000,
  orderingModels: 100,
  orderingUpdates: FULL ? 600 : 25,
  /** Deadline for every event to be applied once the fault is over, in s. */
  settleS: FULL ? 300 : 120,
  /** Deadline for a whole scenario, teardown included, in s: a hang fails it instead of stalling the run. */
  scenarioS: FULL ? 1200 : 300,
};

const report = new MatrixReport(MODE);
after(async () => {
  report.write();
  await restoreBroker();
  await restorePostgres();
});

type Outcome = Omit<MatrixRow, 'number' | 'scenario' | 'passed'>;

/** Runs scenario `n` unless filtered out, records its row (also when it fails), and asserts it. */
function scenario(n: number, title: string, body: (t: TestContext) => Promise<Outcome>): void {
  test(`${n}. ${title}`, {
    skip: ONLY.size > 0 && !ONLY.has(n),
    timeout: SIZE.scenarioS * 1000,
  }, async (t) => {
    let outcome: Outcome | undefined;
    try {
      outcome = await body(t);
    } finally {
      report.add({
        number: n,
        scenario: title,
        ...(outcome ?? {
          sent: 0,
          lost: -1,
          duplicates: -1,
          recoverySeconds: -1,
          notes: 'failed: see the log',
        }),
        passed: outcome !== undefined,
      });
    }
  });
}

/** Background load that runs until stopped. */
function startLoad(workload: RegistryWorkload, onResult?: (result: LoadResult) => void) {
  let stopped = false;
  const running = workload.run({
    ratePerSecond: SIZE.rate,
    durationMs: 3_600_000,
    stop: () => stopped,
    ...(onResult === undefined ? {} : { onResult }),
  });
  return {
    async stop(): Promise<LoadResult[]> {
      stopped = true;
      return running;
    },
  };
}

async function systemWithLoad(t: TestContext, n: number, options: SystemOptions = {}) {
  const starting = Date.now();
  const system = await startSystem(t, options);
  t.diagnostic(`system started in ${((Date.now() - starting) / 1000).toFixed(1)} s`);
  const workload = new RegistryWorkload(system.api.url, system.key, scenarioPrefix(n));
  await workload.seed(20);
  return { system, workload };
}

interface SettleCheck {
  /** The loss ledger must show nothing missing (not after a kill -9 of the API: its last counts die with it). */
  ledger?: boolean;
  /** Answered requests whose events were dropped by design (the spool cap), and counted. */
  droppedByDesign?: number;
}

/**
 * Waits for every event to be applied, then asserts the counts: 0 lost, 0 applied twice, the ledger in
 * agreement, the audit chain intact. Recovery is measured from `faultEndedAt`.
 */
async function settleAndCheck(
  system: SystemUnderTest,
  truth: GroundTruth,
  faultEndedAt: number,
  check: SettleCheck = {},
): Promise<{ accounting: Accounting; recoverySeconds: number }> {
  const dropped = check.droppedByDesign ?? 0;
  const { accounting, settledAt, timedOut } = await waitForSettled(system.pool, truth, {
    timeoutMs: SIZE.settleS * 1000,
    ledger: check.ledger ?? true,
    expectedLost: dropped,
  });
  const recoverySeconds = (settledAt - faultEndedAt) / 1000;
  console.log(`settled ${recoverySeconds.toFixed(1)} s after the fault ended`);
  const detail = JSON.stringify(accounting);
  if (timedOut) {
    const outputs = system.workers.map(
      (worker, index) =>
        `worker ${index} (${worker.child.exitCode ?? worker.child.signalCode ?? 'running'}):\n${worker.output().slice(-3000)}`,
    );
    assert.fail(`not every event was applied within ${SIZE.settleS} s: ${detail}\n${outputs.join('\n')}`);
  }
  assert.equal(accounting.lost, dropped, `lost: ${detail}`);
  assert.equal(accounting.duplicates, 0, `applied twice: ${detail}`);
  if (check.ledger ?? true) {
    assert.ok(
      accounting.ledgerMissing !== null && Object.values(accounting.ledgerMissing).every((n) => n === 0),
      `the ledger shows events missing: ${detail}`,
    );
  }
  const verified = await verifyAuditTrail(system.pool);
  assert.equal(verified.ok, true, `audit verify: ${JSON.stringify(verified)}`);
  return { accounting, recoverySeconds };
}

const requestsOf = (workload: RegistryWorkload): GroundTruth => ({
  kind: 'requests',
  answered: new Set(workload.answered.keys()),
});

function outcome(
  accounting: Accounting,
  recoverySeconds: number,
  notes: string,
  droppedByDesign = 0,
): Outcome {
  return {
    sent: accounting.sent,
    lost: accounting.lost - droppedByDesign,
    duplicates: accounting.duplicates,
    recoverySeconds,
    notes,
  };
}

/**
 * An API that waits for the broker in the request path would hold requests for seconds during these
 * faults (the outage lasts ≥ 5 s, reconnects back off for seconds); the spool keeps them at their usual
 * latency. Two checks, robust to the neighbours sharing these two cores:
 * - the bulk is unchanged: p95 during the fault at most twice p95 before it, plus 10 ms;
 * - no tail of waiting requests: p99 during the fault under {@link WAITING_ON_BROKER_MS}.
 * p99 is not compared with "before": over a 5 s window at 150 requests/s it is the 8th-slowest request,
 * so a single 100 ms CPU stall of the machine (the broker recovering from the previous scenario) moves it.
 */
const WAITING_ON_BROKER_MS = 500;

function latencyDuringFault(latencies: ReadonlyArray<{ at: number; ms: number }>, from: number, to: number) {
  const before = latencies.filter((entry) => entry.at < from).map((entry) => entry.ms);
  const during = latencies.filter((entry) => entry.at >= from && entry.at < to).map((entry) => entry.ms);
  const p95 = { before: percentile(before, 95), during: percentile(during, 95) };
  const p99 = { before: percentile(before, 99), during: percentile(during, 99) };
  assert.ok(
    p95.during <= 2 * p95.before + 10,
    `API p95 during the fault (${p95.during.toFixed(1)} ms) near before it (${p95.before.toFixed(1)} ms)`,
  );
  assert.ok(
    p99.during < WAITING_ON_BROKER_MS,
    `API p99 during the fault (${p99.during.toFixed(1)} ms) under ${WAITING_ON_BROKER_MS} ms: no request waits for the broker`,
  );
  const shown = (stat: { before: number; during: number }) =>
    `${stat.before.toFixed(1)} → ${stat.during.toFixed(1)} ms`;
  return `API p95 ${shown(p95)}, p99 ${shown(p99)}`;
}

function rssMiB(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
}

scenario(1, `RabbitMQ killed (kill -9), restarted after ${SIZE.brokerKilledS} s`, async (t) => {
  const { system, workload } = await systemWithLoad(t, 1);
  const load = startLoad(workload);
  let faultEndedAt: number;
  let restartS: number;
  try {
    await sleep(SIZE.warmupS * 1000);
    await killBroker();
    await sleep(SIZE.brokerKilledS * 1000);
    const restarting = Date.now();
    await startBrokerNode();
    faultEndedAt = Date.now();
    restartS = (faultEndedAt - restarting) / 1000;
  } finally {
    await restoreBroker();
    await load.stop();
  }
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  return outcome(accounting, recoverySeconds, `broker restart took ${restartS.toFixed(1)} s`);
});

scenario(2, `rabbitmqctl stop_app for ${SIZE.brokerStoppedS} s`, async (t) => {
  const { system, workload } = await systemWithLoad(t, 2);
  const latencies: Array<{ at: number; ms: number }> = [];
  const load = startLoad(workload, (result) => latencies.push({ at: Date.now(), ms: result.latencyMs }));
  let faultFrom = 0;
  let stoppedFrom = 0;
  let stoppedTo = 0;
  let faultEndedAt: number;
  try {
    await sleep(SIZE.warmupS * 1000);
    // The broker closes connections while stop_app runs: the fault starts with the command.
    faultFrom = Date.now();
    await stopBrokerApp();
    stoppedFrom = Date.now();
    await waitUntil(
      'the API to see the broker down',
      async () => (await system.health()).checks.broker === 'down',
      15_000,
      {
        intervalMs: 100,
      },
    );
    const ready = await fetch(`${system.api.url}/readyz`);
    assert.equal(ready.status, 200, 'the API stays ready: the spool covers the outage');
    await sleep(Math.max(0, stoppedFrom + SIZE.brokerStoppedS * 1000 - Date.now()));
    stoppedTo = Date.now();
    await startBrokerApp();
    faultEndedAt = Date.now();
  } finally {
    await restoreBroker();
    await load.stop();
  }
  const failed = [...workload.answered.values()].filter((status) => status >= 500).length;
  assert.equal(failed, 0, 'no request fails while the broker is down');
  const latency = latencyDuringFault(latencies, faultFrom, stoppedTo);
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  return outcome(accounting, recoverySeconds, `no request failed; ${latency} (before → while down)`);
});

scenario(3, `TCP black hole (no reset) for ${SIZE.blackholeS} s`, async (t) => {
  const { system, workload } = await systemWithLoad(t, 3, { proxy: true });
  const proxy = system.proxy;
  assert.ok(proxy !== undefined);
  const load = startLoad(workload);
  let detectedS = Number.NaN;
  let faultEndedAt: number;
  try {
    await sleep(SIZE.warmupS * 1000);
    proxy.blackhole(true);
    const started = Date.now();
    await waitUntil(
      'the API to see the broker gone',
      async () => (await system.health()).checks.broker !== 'up',
      SIZE.blackholeS * 1000,
      { intervalMs: 100, ignoreErrors: true },
    );
    detectedS = (Date.now() - started) / 1000;
    await sleep(Math.max(0, started + SIZE.blackholeS * 1000 - Date.now()));
  } finally {
    proxy.blackhole(false);
    faultEndedAt = Date.now();
    await load.stop();
  }
  assert.ok(detectedS <= 15, `heartbeats detect a silent connection within 15 s (took ${detectedS} s)`);
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  return outcome(accounting, recoverySeconds, `detected after ${detectedS.toFixed(1)} s`);
});

scenario(4, `connections cut every ${SIZE.cutEveryS} s for ${SIZE.cutsForS} s`, async (t) => {
  const { system, workload } = await systemWithLoad(t, 4, { proxy: true });
  const proxy = system.proxy;
  assert.ok(proxy !== undefined);
  const { vhost, managementUrl } = system.bus.vhost;
  const worker = system.workers[0];
  const load = startLoad(workload);
  // Long enough for the processes' heaps to warm up, so that growth means a leak.
  await sleep(2 * SIZE.warmupS * 1000);
  // The management API lists a connection only once its first statistics arrive, late under load: wait
  // until it lists every connection the proxy carries (all of them go through it).
  const proxiedBefore = proxy.connections();
  await waitUntil(
    'the broker to list every proxied connection',
    async () => (await vhostConnections(managementUrl, vhost)).length === proxiedBefore,
    30_000,
    { intervalMs: 250 },
  );
  const connectionsBefore = (await vhostConnections(managementUrl, vhost)).sort();
  const rssBefore = { api: rssMiB(system.api.child.pid), worker: rssMiB(worker?.child.pid) };
  const cuts = Math.floor(SIZE.cutsForS / SIZE.cutEveryS);
  for (let cut = 0; cut < cuts; cut++) {
    proxy.cut();
    await sleep(SIZE.cutEveryS * 1000);
  }
  const faultEndedAt = Date.now();
  await load.stop();
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  // Every client reconnected once per cut and kept one connection each: nothing leaked.
  await waitUntil(
    'the broker to list the same connections as before the cuts',
    async () => (await vhostConnections(managementUrl, vhost)).length === connectionsBefore.length,
    15_000,
    { intervalMs: 250 },
  ).catch(async () => {
    assert.deepEqual((await vhostConnections(managementUrl, vhost)).sort(), connectionsBefore);
  });
  assert.equal(proxy.connections(), proxiedBefore, 'as many proxied connections as before the cuts');
  const growth = {
    api: rssMiB(system.api.child.pid) - rssBefore.api,
    worker: rssMiB(worker?.child.pid) - rssBefore.worker,
  };
  assert.ok(growth.api < 50 && growth.worker < 50, `memory growth under 50 MB: ${JSON.stringify(growth)}`);
  return outcome(
    accounting,
    recoverySeconds,
    `${cuts} cuts; ${connectionsBefore.length} connections before and after; RSS growth API ` +
      `${growth.api.toFixed(1)} MiB, worker ${growth.worker.toFixed(1)} MiB`,
  );
});

scenario(5, `memory alarm (publishing blocked) for ${SIZE.alarmS} s`, async (t) => {
  // No worker yet: a backlog builds in the queues, which a worker started during the alarm must drain.
  const { system, workload } = await systemWithLoad(t, 5, { workers: 0 });
  const latencies: Array<{ at: number; ms: number }> = [];
  const load = startLoad(workload, (result) => latencies.push({ at: Date.now(), ms: result.latencyMs }));
  let alarmFrom = 0;
  let alarmTo = 0;
  let drained = 0;
  let backlog = 0;
  try {
    await sleep(SIZE.warmupS * 1000 + 1000);
    const unpublished = (await system.health()).events.unpublished;
    backlog = workload.answered.size - unpublished;
    alarmFrom = Date.now();
    await setMemoryAlarm(true);
    await waitUntil(
      'the API to see publishing blocked',
      async () => (await system.health()).checks.broker === 'blocked',
      15_000,
      {
        intervalMs: 100,
      },
    );
    system.startWorker();
    await waitForConsumers(system.workers);
    await sleep(SIZE.alarmS * 1000);
    drained = Number(
      (await system.pool.query<{ n: string }>('SELECT count(*) AS n FROM audit_records')).rows[0]?.n,
    );
    alarmTo = Date.now();
  } finally {
    await restoreBroker();
    await load.stop();
  }
  const faultEndedAt = Date.now();
  const latency = latencyDuringFault(latencies, alarmFrom, alarmTo);
  assert.ok(
    drained >= backlog,
    `consumers drained the ${backlog} events confirmed before the alarm while it lasted (${drained})`,
  );
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  return outcome(
    accounting,
    recoverySeconds,
    `${latency} (before → during); ${drained} applied during the alarm`,
  );
});

scenario(6, 'API process killed (kill -9) mid-load', async (t) => {
  const { system, workload } = await systemWithLoad(t, 6);
  const load = startLoad(workload);
  await sleep(SIZE.apiLoadBeforeKillS * 1000);
  const restarting = system.restartApi();
  await load.stop();
  await restarting;
  const faultEndedAt = Date.now();
  await waitUntil(
    'the restarted API to drain its spool',
    async () => (await system.health()).events.unpublished === 0,
    60_000,
    {
      intervalMs: 100,
      ignoreErrors: true,
    },
  );
  const drainedS = (Date.now() - faultEndedAt) / 1000;
  // The ledger's last second of counts died with the process: the tables are the proof here.
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt, {
    ledger: false,
  });
  return outcome(
    accounting,
    recoverySeconds,
    `${workload.unanswered} requests cut by the kill; spool drained ${drainedS.toFixed(1)} s after restart`,
  );
});

scenario(7, `worker killed mid-batch, then PostgreSQL stopped for ${SIZE.postgresDownS} s`, async (t) => {
  const { system, workload } = await systemWithLoad(t, 7, { workers: 2 });
  const load = startLoad(workload);
  let faultEndedAt: number;
  try {
    await sleep(SIZE.warmupS * 1000);
    system.workers[0]?.child.kill('SIGKILL');
    await sleep(SIZE.warmupS * 1000);
    await stopPostgres();
    await sleep(SIZE.postgresDownS * 1000);
  } finally {
    await restorePostgres();
    faultEndedAt = Date.now();
    await load.stop();
  }
  const status = [...workload.answered.values()];
  const unavailable = status.filter((code) => code === 503).length;
  const dlq = Number(
    (await system.pool.query<{ n: string }>('SELECT count(*) AS n FROM dead_letters')).rows[0]?.n ?? 0,
  );
  assert.equal(dlq, 0, 'nothing dead-lettered: an outage pauses consumption');
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  return outcome(
    accounting,
    recoverySeconds,
    `${unavailable} requests answered 503 while PostgreSQL was down (their api.error events applied too)`,
  );
});

scenario(8, 'spool cap reached (1 MiB, publishing blocked)', async (t) => {
  const { system, workload } = await systemWithLoad(t, 8, {
    apiEnv: { SPOOL_MAX_BYTES: String(1 << 20), SPOOL_SEGMENT_BYTES: String(1 << 16) },
  });
  let dropped = 0;
  try {
    await setMemoryAlarm(true);
    await workload.run({ ratePerSecond: 400, durationMs: (SIZE.spoolRequests / 400) * 1000 });
    dropped = (await system.health()).events.dropped.spool_full;
  } finally {
    await restoreBroker();
  }
  const faultEndedAt = Date.now();
  assert.ok(dropped > 0, 'the cap was reached');
  const failed = [...workload.answered.values()].filter((status) => status >= 500).length;
  assert.equal(failed, 0, 'requests still succeed when events are dropped');
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt, {
    droppedByDesign: dropped,
  });
  return outcome(
    accounting,
    recoverySeconds,
    `${dropped} events over the cap dropped and counted (spool_full); every other event applied`,
    dropped,
  );
});

/** `count` distinct events of the kinds the API emits, for 50 models, sequences increasing per model. */
function floodEvents(prefix: string, count: number): TelemetryEvent[] {
  const types: EventType[] = [
    'model.queried',
    'model.updated',
    'filter.executed',
    'api.error',
    'model.queried',
  ];
  const sequences = new Map<string, number>();
  return Array.from({ length: count }, (_, index) => {
    const type = types[index % types.length] as EventType;
    const base = exampleEvent(type) as TelemetryEvent;
    const modelId = `${prefix}/m-${index % 50}`;
    const sequence = (sequences.get(modelId) ?? 0) + 1;
    if (type === 'model.updated') sequences.set(modelId, sequence);
    const data = 'model_id' in (base.data as object) ? { ...base.data, model_id: modelId } : base.data;
    return {
      ...base,
      event_id: randomUUID(),
      correlation_id: `${prefix}-${index}`,
      timestamp: new Date().toISOString(),
      ...('sequence' in base
        ? { sequence: type === 'model.updated' ? sequence : (base as { sequence: number }).sequence }
        : {}),
      data,
    } as TelemetryEvent;
  });
}

scenario(9, 'duplicate flood: every event published 3 times, 4 workers', async (t) => {
  const partitions = { AUDIT_PARTITIONS: '4' };
  const system = await startSystem(t, { workers: 4, apiEnv: partitions, workerEnv: partitions });
  const events = floodEvents(scenarioPrefix(9), SIZE.floodEvents);
  const connection = await connectToBroker(system.bus.env.RABBITMQ_URL, { name: 'fault matrix flood' });
  connection.on('error', () => {});
  try {
    const channel = await connection.createConfirmChannel();
    // Each chunk three times in a row: copies land in one batch, in the next, and on other partitions'
    // consumers' heels.
    for (let start = 0; start < events.length; start += 300) {
      const chunk = events.slice(start, start + 300);
      await publishEvents(channel, [...chunk, ...chunk, ...chunk]);
    }
  } finally {
    await closeConnection(connection);
  }
  const faultEndedAt = Date.now();
  const truth: GroundTruth = {
    kind: 'events',
    events: new Map(events.map((event) => [event.event_id, event.event_type])),
  };
  // Published around the API: the ledger never counted them as spooled.
  const { accounting, recoverySeconds } = await settleAndCheck(system, truth, faultEndedAt, {
    ledger: false,
  });
  return outcome(accounting, recoverySeconds, `${events.length * 3} messages for ${events.length} events`);
});

scenario(
  10,
  `ordering: ${SIZE.orderingModels} models × ${SIZE.orderingUpdates} updates through a worker kill and a broker restart`,
  async (t) => {
    const { system, workload } = await systemWithLoad(t, 10, { workers: 2 });
    const prefix = workload.prefix;
    const models = Array.from({ length: SIZE.orderingModels }, (_, index) => `${prefix}/ordered-${index}`);
    const register = await runLoad(system.api.url, {
      count: models.length,
      concurrency: 16,
      correlationPrefix: `${prefix}-register`,
      request: (index) => ({
        method: 'POST',
        path: '/models',
        headers: { 'x-api-key': system.key },
        body: { ...seedModel(index), model_id: models[index] },
      }),
    });
    for (const result of register) workload.answered.set(result.correlationId, result.status);
    assert.ok(
      register.every((result) => result.status === 201),
      'the models are registered',
    );

    // 20 lanes, each updating its 5 models in turn, one request at a time: each model's updates are
    // sequential, as a client that waits for each answer sends them.
    const lanes = 20;
    const total = models.length * SIZE.orderingUpdates;
    let answered = 0;
    const lastSeen = new Map<string, number>();
    let backwards = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await system.pool
          .query<{ model_id: string; last_sequence: string }>(
            'SELECT model_id, last_sequence FROM analytics_model_activity WHERE model_id LIKE $1',
            [`${prefix}/%`],
          )
          .catch(() => ({ rows: [] }));
        for (const row of rows) {
          const sequence = Number(row.last_sequence);
          if (sequence < (lastSeen.get(row.model_id) ?? 0)) backwards++;
          lastSeen.set(row.model_id, sequence);
        }
        await sleep(250);
      }
    })();
    const updates = Promise.all(
      Array.from({ length: lanes }, (_, lane) => {
        const mine = models.filter((_, index) => index % lanes === lane);
        return runLoad(system.api.url, {
          count: mine.length * SIZE.orderingUpdates,
          concurrency: 1,
          ratePerSecond: SIZE.rate / lanes,
          correlationPrefix: `${prefix}-lane${lane}`,
          request: (index) => ({
            method: 'PATCH',
            path: `/models/${encodeURIComponent(mine[index % mine.length] as string)}`,
            headers: { 'x-api-key': system.key },
            // A new value every time: every update changes the model, so every sequence is new.
            body: { context_window: 2000 + Math.floor(index / mine.length) },
          }),
          onResult: (result) => {
            answered++;
            if (result.status !== 0) workload.answered.set(result.correlationId, result.status);
          },
        });
      }),
    );
    let faultEndedAt: number;
    try {
      await waitUntil('a third of the updates', () => answered >= total / 3, 600_000, { intervalMs: 50 });
      system.workers[0]?.child.kill('SIGKILL');
      await waitUntil('two thirds of the updates', () => answered >= (2 * total) / 3, 600_000, {
        intervalMs: 50,
      });
      await stopBrokerApp();
      await sleep(3000);
      await startBrokerApp();
    } finally {
      await restoreBroker();
      // The updates go on after the restart: recovery counts from the last one.
      await updates;
      faultEndedAt = Date.now();
    }
    const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
    sampling = false;
    await sampler;

    const { rows } = await system.pool.query<{ model_id: string; sequences: number[] }>(
      `SELECT model_id, array_agg(sequence::int ORDER BY id) AS sequences FROM audit_records
        WHERE model_id LIKE $1 AND event_type IN ('model.registered', 'model.updated') GROUP BY model_id`,
      [`${prefix}/ordered-%`],
    );
    assert.equal(rows.length, models.length);
    const expected = Array.from({ length: SIZE.orderingUpdates + 1 }, (_, index) => index + 1);
    const outOfOrder = rows.filter((row) => JSON.stringify(row.sequences) !== JSON.stringify(expected));
    assert.deepEqual(
      outOfOrder.map((row) => row.model_id),
      [],
      'every model’s audit records in strictly increasing sequence, no gaps',
    );
    assert.equal(backwards, 0, '"last seen" never went backwards');
    const final = await system.pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM analytics_model_activity WHERE model_id LIKE $1 AND last_sequence = $2',
      [`${prefix}/ordered-%`, SIZE.orderingUpdates + 1],
    );
    assert.equal(Number(final.rows[0]?.n), models.length, '"last seen" ends at every model’s last update');
    return outcome(
      accounting,
      recoverySeconds,
      `every model in order; "last seen" sampled and never backwards; recovery from the last update`,
    );
  },
);

scenario(11, 'publisher thread crashes under load, 3 times (injected), restarted each time', async (t) => {
  const crashes = 3;
  // Each of the first three publisher threads crashes once it has 150 confirms, before reporting the
  // last of them: their records are sent again by the next thread (the consumers de-duplicate them).
  const { system, workload } = await systemWithLoad(t, 11, {
    apiEnv: { [CRASH_SWITCH]: `150:${crashes}` },
  });
  const load = startLoad(workload);
  let faultEndedAt: number;
  let restarts = 0;
  try {
    await waitUntil(
      `the publisher thread to crash and restart ${crashes} times`,
      async () => {
        const health = (await system.health()) as unknown as {
          publisher: { thread: { state: string; restarts: number } | null };
        };
        restarts = health.publisher.thread?.restarts ?? 0;
        return restarts >= crashes && health.publisher.thread?.state === 'running';
      },
      120_000,
      { intervalMs: 100, ignoreErrors: true },
    );
    // The API kept answering meanwhile: the load goes on a little after the last restart.
    await sleep(SIZE.warmupS * 1000);
  } finally {
    await load.stop();
    faultEndedAt = Date.now();
  }
  assert.equal(workload.unanswered, 0, 'every request was answered while the thread crashed');
  await waitUntil(
    'the spool to drain',
    async () => (await system.health()).events.unpublished === 0,
    60_000,
    { intervalMs: 100, ignoreErrors: true },
  );
  const metrics = await (
    await fetch(`${system.api.url}/metrics`, { headers: { accept: 'text/plain' } })
  ).text();
  assert.match(metrics, new RegExp(`^telemetry_publisher_thread_restarts_total ${crashes}$`, 'm'));
  assert.match(system.api.output(), /the publisher thread crashed/);
  const { accounting, recoverySeconds } = await settleAndCheck(system, requestsOf(workload), faultEndedAt);
  return outcome(accounting, recoverySeconds, `${restarts} thread restarts; API answered every request`);
});
