/**
 * A replay of dead letters is in the audit trail: who replayed which dead letters, as `dlq.replayed`
 * records the audit consumer chains like any other. Through the whole system: the real app (its spool and
 * publisher), a consumer runtime running the audit and dead-letter consumers, `POST /dlq/replay` with an
 * admin key, then `telemetry-bus dlq replay` (the CLI, which publishes its record on its own confirm
 * channel), each read back through `GET /audit?event_type=dlq.replayed`, and `audit verify` still clean.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { hashApiKey } from '../../src/auth/api-key.ts';
import { buildTopology } from '../../src/bus/topology.ts';
import { auditConsumer } from '../../src/consumers/audit/audit-consumer.ts';
import { verifyAuditTrail } from '../../src/consumers/audit/audit-verify.ts';
import type { Delivery } from '../../src/consumers/consumer.ts';
import { ConsumerRuntime } from '../../src/consumers/consumer-runtime.ts';
import { dlqConsumer } from '../../src/consumers/dlq/dlq-consumer.ts';
import { build } from '../helper.ts';
import { archiveDeadLetters } from '../support/dead-letters.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { waitUntil as waitFor } from '../support/wait-until.ts';

const waitUntil = (what: string, check: () => Promise<boolean>) =>
  waitFor(what, check, 20_000, { intervalMs: 100 });
const CLI = fileURLToPath(new URL('../../bin/telemetry-bus.js', import.meta.url));
const MODEL = 'replay-audit/model';

const system = await build({ after });
const { pool } = system.services;
const runtime = new ConsumerRuntime({
  urls: system.config.rabbitmqUrls,
  pool,
  topology: buildTopology({ retryDelaysMs: system.config.retryDelaysMs }),
  consumers: [auditConsumer(), dlqConsumer({ error() {} })],
  retryDelaysMs: system.config.retryDelaysMs,
});
after(() => runtime.stop(5000));
await runtime.start();

/** Archives dead letters of audit.trail as the dlq consumer does (events the audit trail never got). */
function archive(count: number): Promise<Delivery[]> {
  const base = exampleEvent('model.updated');
  const events = Array.from({ length: count }, (_, index) =>
    exampleEvent('model.updated', {
      event_id: randomUUID(),
      sequence: index + 2,
      data: { ...base.data, model_id: MODEL, version: index + 2 },
    }),
  );
  return archiveDeadLetters(pool, events, { errorMessage: 'the database said no' });
}

interface AuditItem {
  event_id: string;
  event_type: string;
  model_id: string | null;
  correlation_id: string;
  user_id: string | null;
  envelope: {
    source: string;
    metadata: unknown;
    data: {
      operation_id: number;
      actor: string;
      dry_run: boolean;
      part: number;
      matched: number;
      selection: unknown;
      dead_letters: Array<{ id: string; event_id: string | null; queue: string }>;
    };
  };
}

async function auditItems(query: string): Promise<AuditItem[]> {
  const response = await system.app.inject({
    method: 'GET',
    url: `/audit?${query}&limit=500`,
    headers: { 'x-api-key': system.keys.admin },
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().items as AuditItem[];
}

const replayRecords = async (operationId: number) =>
  (await auditItems('event_type=dlq.replayed')).filter(
    (item) => item.envelope.data.operation_id === operationId,
  );

const deadLetters = await archive(5);
const eventIdOf = (delivery: Delivery) => delivery.properties.messageId as string;

test('POST /dlq/replay: the audit trail shows the admin key that replayed which dead letters', async () => {
  const chosen = deadLetters.slice(0, 3);
  const response = await system.app.inject({
    method: 'POST',
    url: '/dlq/replay',
    headers: { 'x-api-key': system.keys.admin, 'x-correlation-id': 'replay-audit-1' },
    payload: { ids: chosen.map((delivery) => delivery.id) },
  });
  assert.equal(response.statusCode, 200, response.body);
  const result = response.json();
  assert.equal(result.replayed, 3);

  await waitUntil(
    'the replay in the audit trail',
    async () => (await replayRecords(result.operation_id)).length === 1,
  );
  const [record] = (await replayRecords(result.operation_id)) as [AuditItem];
  assert.equal(record.event_type, 'dlq.replayed');
  assert.equal(record.user_id, hashApiKey(system.keys.admin), 'who: the key, by its SHA-256');
  assert.equal(record.correlation_id, 'replay-audit-1', "the request's correlation id");
  assert.equal(record.model_id, null, 'on the ~global chain');
  assert.equal(record.envelope.source, 'admin');
  assert.equal(record.envelope.metadata, null);
  const keyId = (
    await pool.query('SELECT actor_key_id FROM dlq_operations WHERE id = $1', [result.operation_id])
  ).rows[0]?.actor_key_id;
  assert.equal(record.envelope.data.actor, `api-key:${keyId}`);
  assert.equal(record.envelope.data.dry_run, false);
  assert.equal(record.envelope.data.part, 1);
  assert.deepEqual(record.envelope.data.selection, { ids: 3, filter: null, max: 1000 });
  assert.deepEqual(
    new Set(record.envelope.data.dead_letters.map((entry) => entry.id)),
    new Set(chosen.map((delivery) => delivery.id)),
    'what: the dead letters replayed',
  );
  assert.deepEqual(
    new Set(record.envelope.data.dead_letters.map((entry) => entry.event_id)),
    new Set(chosen.map(eventIdOf)),
  );
  // And the replayed events themselves reached the audit trail, once each.
  await waitUntil(
    'the replayed events recorded',
    async () => (await auditItems(`model_id=${MODEL}`)).length === 3,
  );
  assert.deepEqual(
    new Set((await auditItems(`model_id=${MODEL}`)).map((item) => item.event_id)),
    new Set(chosen.map(eventIdOf)),
  );
});

test('telemetry-bus dlq replay: a dry run, then the replay, each in the audit trail as the CLI user', async () => {
  const rest = deadLetters.slice(3);
  const cli = (args: string[]) =>
    promisify(execFile)(process.execPath, [CLI, 'dlq', 'replay', ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: system.databaseUrl,
        RABBITMQ_URL: system.config.rabbitmqUrls.join(','),
        DATA_DIR: system.config.dataDir,
        LOG_LEVEL: 'silent',
      },
    });
  const dry = await cli(['--model-id', MODEL, '--dry-run', '--json']);
  const dryResult = JSON.parse(dry.stdout);
  assert.equal(dryResult.dry_run, true);
  const { stdout } = await cli(['--model-id', MODEL, '--json']);
  const result = JSON.parse(stdout);
  assert.equal(result.replayed, 2);
  assert.deepEqual(new Set(result.ids), new Set(rest.map((delivery) => delivery.id)));

  for (const [operationId, dryRun] of [
    [dryResult.operation_id, true],
    [result.operation_id, false],
  ] as const) {
    await waitUntil(
      `operation ${operationId} in the audit trail`,
      async () => (await replayRecords(operationId)).length === 1,
    );
    const [record] = (await replayRecords(operationId)) as [AuditItem];
    assert.equal(record.user_id, null, 'no API key');
    assert.match(record.envelope.data.actor, /^cli:.+@.+$/);
    assert.equal(record.envelope.data.dry_run, dryRun);
    assert.deepEqual(record.envelope.data.selection, {
      ids: null,
      filter: { model_id: MODEL, state: 'dead' },
      max: 1000,
    });
    assert.equal(record.envelope.data.matched, 2);
    assert.deepEqual(
      new Set(record.envelope.data.dead_letters.map((entry) => entry.id)),
      new Set(rest.map((delivery) => delivery.id)),
    );
  }
  await waitUntil(
    'all five events recorded',
    async () => (await auditItems(`model_id=${MODEL}`)).length === 5,
  );

  // A replay that finds nothing is recorded too (who tried what), with no dead letters.
  const empty = JSON.parse((await cli(['--model-id', MODEL, '--json'])).stdout);
  assert.equal(empty.matched, 0);
  await waitUntil(
    'the empty replay recorded',
    async () => (await replayRecords(empty.operation_id)).length === 1,
  );
  assert.deepEqual((await replayRecords(empty.operation_id))[0]?.envelope.data.dead_letters, []);

  const verification = await verifyAuditTrail(pool);
  assert.equal(verification.ok, true, JSON.stringify(verification.broken));
});
