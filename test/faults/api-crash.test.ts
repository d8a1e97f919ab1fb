/**
 * kill -9 of the API process under load with the broker stopped (nothing confirmed yet), then a restart
 * on the same data directory once the broker is back: every request that got a response has its event
 * delivered. (The same kill with the broker up is scenario 6 of the fault matrix.) A half-written
 * record at the end of the spool (what a crash mid-write leaves) is skipped and counted, not a crash loop.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { appendFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBusEnvironment, createTestDatabase, modelBody } from '../helper.ts';
import { type ApiProcess, startApiProcess } from '../support/api-process.ts';
import { restoreBroker, startBrokerApp, stopBrokerApp } from '../support/broker-control.ts';
import { type LoadResult, runLoad } from '../support/http-load.ts';
import { readQueues } from '../support/queue-reader.ts';

after(restoreBroker);

type Api = ApiProcess;
const startApi = (env: Record<string, string>) => startApiProcess(env);

async function health(api: Api): Promise<{
  events: { unpublished: number };
  spool: { torn_records: number };
  checks: { broker: string };
}> {
  return (await fetch(`${api.url}/health`)).json() as never;
}

async function crashWithBrokerDown(): Promise<void> {
  const databaseUrl = await createTestDatabase({ after });
  const bus = await createBusEnvironment();
  after(() => bus.remove());
  // No consumers: the test reads metrics.updates itself to count every event.
  const env = { DATABASE_URL: databaseUrl, CONSUMERS: 'none', ...bus.env };

  const first = await startApi(env);
  const key = first.adminKey;
  assert.ok(key !== undefined, 'the first start prints an admin key');
  const body = modelBody();
  const created = await fetch(`${first.url}/models`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(created.status, 201);
  const path = `/models/${encodeURIComponent(body.model_id as string)}`;
  await stopBrokerApp();

  // Requests keep coming until the process dies; those answered are the ones whose events must exist.
  const answered: LoadResult[] = [];
  let killed = false;
  const load = runLoad(first.url, {
    count: 1_000_000,
    concurrency: 8,
    correlationPrefix: 'crash-down',
    request: (index) =>
      index % 10 === 0
        ? { method: 'PATCH', path, headers: { 'x-api-key': key }, body: { context_window: 1000 + index } }
        : { method: 'GET', path, headers: { 'x-api-key': key } },
    onResult: (result) => {
      if (result.status !== 0) answered.push(result);
    },
    stop: () => killed,
  });
  await sleep(1500);
  first.child.kill('SIGKILL');
  await once(first.child, 'exit');
  killed = true;
  await load;
  assert.ok(answered.length > 200, `requests were answered before the kill (${answered.length})`);
  assert.ok(answered.every((result) => result.status === 200));

  // What a crash in the middle of a write leaves: the first bytes of a record.
  const spool = join(bus.env.DATA_DIR, 'spool');
  const newest = readdirSync(spool)
    .filter((name) => name.endsWith('.seg'))
    .sort()
    .at(-1);
  assert.ok(newest !== undefined);
  appendFileSync(
    join(spool, newest),
    Buffer.from([0x54, 0x42, 0x53, 0x01, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00]),
  );

  await startBrokerApp();
  const second = await startApi(env);
  try {
    const deadline = Date.now() + 90_000;
    let state = await health(second);
    while (state.events.unpublished > 0 || state.checks.broker !== 'up') {
      if (Date.now() > deadline) throw new Error(`the spool did not drain: ${JSON.stringify(state)}`);
      await sleep(100);
      state = await health(second);
    }
    assert.equal(state.spool.torn_records, 1, 'the torn record is skipped and counted');

    const expected = new Set(answered.map((result) => result.correlationId));
    const reader = await readQueues(bus.env.RABBITMQ_URL, ['metrics.updates']);
    try {
      await reader.waitFor((messages) => {
        const seen = new Set(messages.map((message) => message.properties.correlationId));
        for (const id of expected) if (!seen.has(id)) return false;
        return true;
      }, 60_000);
    } finally {
      await reader.close();
    }
    console.log(`${answered.length} answered requests before kill -9 (broker down): all delivered`);
  } finally {
    second.child.kill('SIGTERM');
    await once(second.child, 'exit');
  }
}

test('kill -9 under load with the broker stopped: every answered request’s event is delivered after both return', async () => {
  try {
    await crashWithBrokerDown();
  } finally {
    await restoreBroker();
  }
});
