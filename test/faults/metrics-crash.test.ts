/**
 * Two `telemetry-bus worker --consumers metrics` processes on metrics.updates (single active consumer:
 * one applies, one stands by); 20,000 events of known fields published while the active worker is
 * killed with kill -9 in the middle of a batch (prefetch 500), and a restarted worker joining after:
 * every count of the rollups is still exactly the workload's — the killed transaction left nothing, its
 * redelivered batch was applied once — at every granularity (the hours and days once compacted up to
 * now), and the raw events hold each event once.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { closeConnection, connectToBroker } from '../../src/bus/broker-connection.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { buildTopology, QUEUES } from '../../src/bus/topology.ts';
import { MetricsCompactor } from '../../src/consumers/metrics/metrics-compactor.ts';
import { createBusEnvironment, createTestDatabase } from '../helper.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { publishEvents } from '../support/publish-events.ts';
import { queueStats } from '../support/rabbitmq-vhost.ts';
import { waitUntil } from '../support/wait-until.ts';
import { startWorkerProcess } from '../support/worker-process.ts';

const POLL = { intervalMs: 100, ignoreErrors: true };

const databaseUrl = await createTestDatabase({ after });
const bus = await createBusEnvironment();
after(() => bus.remove());
const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
pool.on('error', () => {});
after(() => pool.end());

const publisher = await connectToBroker(bus.env.RABBITMQ_URL, { name: 'test publisher' });
publisher.on('error', () => {});
after(() => closeConnection(publisher));
await applyTopology(publisher, buildTopology());
const channel = await publisher.createConfirmChannel();

const publish = (events: TelemetryEvent[]) => publishEvents(channel, events);

/** 20,000 events over the last hour: reads, errors and other requests, each type's count known. */
function workload(): { events: TelemetryEvent[]; byType: Map<string, number>; errors: number } {
  const events: TelemetryEvent[] = [];
  const byType = new Map<string, number>();
  let errors = 0;
  const now = Date.now();
  for (let index = 0; index < 20_000; index++) {
    const common = {
      event_id: randomUUID(),
      correlation_id: `crash-${index}`,
      timestamp: new Date(now - 3_600_000 + Math.floor((index * 3_600_000) / 20_000)).toISOString(),
    };
    const kind = index % 10;
    const event =
      kind < 6
        ? exampleEvent('model.queried', {
            ...common,
            metadata: { ...exampleEvent('model.queried').metadata, request_duration_ms: 1 + (index % 97) },
          })
        : kind < 8
          ? exampleEvent('api.error', common)
          : exampleEvent('api.request', common);
    if (event.event_type === 'api.error') errors++;
    byType.set(event.event_type, (byType.get(event.event_type) ?? 0) + 1);
    events.push(event);
  }
  return { events, byType, errors };
}

const startWorker = () => startWorkerProcess('metrics', databaseUrl, bus, { LOG_LEVEL: 'warn' }).child;

const consumers = async () =>
  (await queueStats(bus.vhost.managementUrl, bus.vhost.vhost, QUEUES.metrics)).consumers;

/** Events the metrics consumer applied, by the ledger (written in the transaction that applies them). */
async function applied(): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    "SELECT coalesce(sum(events), 0) AS n FROM telemetry_ledger WHERE stage = 'applied' AND consumer = 'metrics'",
  );
  return Number(rows[0]?.n);
}

test('kill -9 of the metrics worker mid-batch, then a restart: every count still exact', async () => {
  const first = startWorker();
  await waitUntil('the first worker to consume', async () => (await consumers()) >= 1, 30_000, POLL);
  const standby = startWorker();
  await waitUntil('the second worker to stand by', async () => (await consumers()) >= 2, 30_000, POLL);

  const { events, byType, errors } = workload();
  let atKill = -1;
  let restarted: ChildProcess | undefined;
  for (let offset = 0; offset < events.length; offset += 500) {
    await publish(events.slice(offset, offset + 500));
    if (offset === 6000) {
      await waitUntil('some applied', async () => (await applied()) > 0, 30_000, POLL);
      first.kill('SIGKILL');
      await once(first, 'exit');
      atKill = await applied();
      // The killed worker comes back (as a supervisor would restart it): now the standby.
      restarted = startWorker();
    }
  }
  assert.ok(atKill > 0 && atKill < events.length, `killed mid-run (${atKill} applied)`);
  await waitUntil('every event applied', async () => (await applied()) >= events.length, 180_000, POLL);
  await sleep(1000);
  assert.equal(await applied(), events.length, 'each event recorded as applied once');

  // The consumers write minutes; the workers' compactors wait 5 minutes before adding them into hours
  // and days: compact everything now, so that every granularity holds every event.
  await new MetricsCompactor(pool, { lagMs: 0 }).compact(new Date(Date.now() + 60_000));
  for (const granularity of ['1m', '1h', '1d']) {
    const { rows } = await pool.query<{ event_type: string; requests: string }>(
      'SELECT event_type, sum(requests) AS requests FROM metrics_rollups WHERE granularity = $1 GROUP BY event_type',
      [granularity],
    );
    assert.deepEqual(
      new Map(rows.map((row) => [row.event_type, Number(row.requests)])),
      byType,
      `${granularity}: counts by event type`,
    );
    const totals = await pool.query<{ requests: string; errors: string }>(
      'SELECT sum(requests) AS requests, sum(errors) AS errors FROM metrics_rollup_totals WHERE granularity = $1',
      [granularity],
    );
    assert.equal(Number(totals.rows[0]?.requests), events.length, `${granularity}: total`);
    assert.equal(Number(totals.rows[0]?.errors), errors, `${granularity}: errors`);
    // Every histogram holds exactly its row's requests: no half-applied batch.
    const histograms = await pool.query<{ mismatched: string }>(
      `SELECT count(*) AS mismatched FROM metrics_rollup_totals AS t
       WHERE granularity = $1
         AND requests <> (SELECT sum(e & 1099511627775) FROM unnest(t.request_latency) AS e)`,
      [granularity],
    );
    assert.equal(Number(histograms.rows[0]?.mismatched), 0, `${granularity}: histogram counts`);
  }
  const raw = await pool.query<{ n: string; distinct: string }>(
    'SELECT count(*) AS n, count(DISTINCT event_id) AS distinct FROM metrics_events',
  );
  assert.equal(Number(raw.rows[0]?.n), events.length);
  assert.equal(Number(raw.rows[0]?.distinct), events.length);

  for (const child of [standby, restarted]) {
    if (child !== undefined && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
});
