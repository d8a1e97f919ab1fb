/**
 * The dead-letter routes through the real authentication: admin only (no key 401, reader and writer 403,
 * and nothing moves for them), filters and paging, 404s, replay to the original queue only with the
 * failure history stripped, and who did it recorded with the key.
 *
 * The app is a small one built here — error handler, authentication, schema compilers and the dlq
 * plugin — because test/helper.ts builds the whole app, which cannot take a route after `ready()`.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import amqp from 'amqplib';
import Fastify from 'fastify';
import pg from 'pg';
import { hashApiKey } from '../../src/auth/api-key.ts';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import type { Role } from '../../src/auth/roles.ts';
import { applyTopology } from '../../src/bus/apply-topology.ts';
import { closeConnection } from '../../src/bus/broker-connection.ts';
import { validateEvent } from '../../src/bus/event-validator.ts';
import { buildTopology, EXCHANGES, QUEUES, WORK_QUEUES } from '../../src/bus/topology.ts';
import type { Delivery } from '../../src/consumers/consumer.ts';
import { DlqService } from '../../src/consumers/dlq/dlq-service.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import authentication from '../../src/http/plugins/authentication.ts';
import errorHandler from '../../src/http/plugins/error-handler.ts';
import dlqRoutes from '../../src/http/routes/dlq.ts';
import { schemaCompilers } from '../../src/http/schema-compilers.ts';
import { createBusEnvironment, createTestDatabase } from '../helper.ts';
import { archiveDeadLetters } from '../support/dead-letters.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { drainQueue } from '../support/queue-reader.ts';

const databaseUrl = await createTestDatabase({ after });
const bus = await createBusEnvironment();
const url = bus.env.RABBITMQ_URL;
const pool = new pg.Pool({ connectionString: databaseUrl, max: 5 });
// The database is dropped WITH (FORCE) by its own teardown, which may run first.
pool.on('error', () => {});
const connection = await amqp.connect(url);
connection.on('error', () => {});
const topology = buildTopology();
await applyTopology(connection, topology);
const channel = await connection.createChannel();

const apiKeys = new ApiKeyStore(pool, { cacheTtlMs: 0 });
const keys = {} as Record<Role, string>;
const keyIds = {} as Record<Role, string>;
for (const role of ['reader', 'writer', 'admin'] as const) {
  const { key, info } = await apiKeys.create(`dlq-${role}`, role);
  keys[role] = key;
  keyIds[role] = info.id;
}

const app = Fastify({ logger: false });
app.setValidatorCompiler(schemaCompilers());
await app.register(errorHandler);
await app.register(authentication, { apiKeys });
await app.register(dlqRoutes, { dlq: new DlqService({ pool, amqpUrls: [url], topology }) });
await app.ready();

after(async () => {
  await app.close();
  await closeConnection(connection);
  await pool.end();
  await bus.remove();
});

/** Archives dead letters as the dlq consumer does, from messages shaped like the runtime's. */
function archive(count: number, overrides: { modelId?: string; errorType?: string } = {}) {
  const events = Array.from({ length: count }, () =>
    exampleEvent('model.updated', {
      event_id: randomUUID(),
      data: { ...exampleEvent('model.updated').data, model_id: overrides.modelId ?? 'route/model' },
    }),
  );
  return archiveDeadLetters(pool, events, {
    errorType: overrides.errorType,
    headers: {
      [FAILURE_HEADERS.errorStack]: 'TypeError: cannot read properties of undefined\n    at apply',
      'x-death': [{ count: 1, reason: 'expired', queue: 'retry.30s', exchange: 'retry.30s' }],
    },
  });
}

function inject(method: 'GET' | 'POST' | 'DELETE', path: string, key: string | undefined, payload?: unknown) {
  return app.inject({
    method,
    url: path,
    headers: key === undefined ? {} : { 'x-api-key': key },
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
}

/** A message of audit.trail that must be a valid `dlq.replayed` event by the admin key. */
function replayedRecord(message: { content: Buffer; properties: { type?: unknown } } | undefined) {
  assert.ok(message, 'a dlq.replayed record');
  assert.equal(message.properties.type, 'dlq.replayed');
  const validation = validateEvent(JSON.parse(message.content.toString()));
  assert.ok(validation.ok, validation.ok ? '' : validation.reason);
  const event = validation.event;
  assert.ok(event.event_type === 'dlq.replayed');
  assert.equal(event.source, 'admin');
  assert.equal(event.user_id, hashApiKey(keys.admin), "the admin key's SHA-256");
  assert.equal(event.data.actor, `api-key:${keyIds.admin}`);
  return event;
}

async function queueDepths(): Promise<Record<string, number>> {
  const depths: Record<string, number> = {};
  for (const queue of WORK_QUEUES) depths[queue] = (await channel.checkQueue(queue)).messageCount;
  return depths;
}

const deadCount = async () =>
  Number((await pool.query("SELECT count(*) FROM dead_letters WHERE state = 'dead'")).rows[0].count);

const seeded = await archive(30);

describe('only an admin key may touch the archive', () => {
  const calls: Array<[method: 'GET' | 'POST' | 'DELETE', path: string, payload?: unknown]> = [
    ['GET', '/dlq'],
    ['GET', `/dlq/${seeded[0]?.id}`],
    ['POST', '/dlq/replay', { filter: {} }],
    ['POST', '/dlq/replay', { ids: [seeded[0]?.id] }],
    ['DELETE', `/dlq/${seeded[0]?.id}`],
  ];

  test('no key: 401; reader or writer key: 403; and nothing moves', async () => {
    const dead = await deadCount();
    for (const [method, path, payload] of calls) {
      const anonymous = await inject(method, path, undefined, payload);
      assert.equal(anonymous.statusCode, 401, `${method} ${path}`);
      assert.equal(anonymous.json().error.code, 'UNAUTHENTICATED');
      for (const role of ['reader', 'writer'] as const) {
        const response = await inject(method, path, keys[role], payload);
        assert.equal(response.statusCode, 403, `${role} ${method} ${path}`);
        assert.equal(response.json().error.code, 'FORBIDDEN');
      }
      const revoked = await inject(method, path, 'tb_not-a-real-key', payload);
      assert.equal(revoked.statusCode, 401);
    }
    assert.equal(await deadCount(), dead, 'every dead letter still dead and there');
    assert.deepEqual(
      await queueDepths(),
      Object.fromEntries(WORK_QUEUES.map((queue) => [queue, 0])),
      'nothing republished',
    );
    const operations = await pool.query('SELECT count(*) FROM dlq_operations');
    assert.equal(Number(operations.rows[0].count), 0, 'nothing recorded');
  });
});

describe('GET /dlq', () => {
  test('newest first, paged with a cursor, filtered', async () => {
    const first = await inject('GET', '/dlq?limit=20&model_id=route/model', keys.admin);
    assert.equal(first.statusCode, 200, first.body);
    const page = first.json();
    assert.equal(page.items.length, 20);
    assert.ok(page.next_cursor);
    assert.equal(page.items[0].id, seeded[29]?.id, 'newest first');
    assert.equal(page.items[0].error_type, 'TypeError');
    assert.equal(page.items[0].original_queue, QUEUES.audit);
    assert.equal(page.items[0].state, 'dead');
    assert.equal(page.items[0].content, undefined, 'bodies only in GET /dlq/:id');
    const second = await inject(
      'GET',
      `/dlq?limit=20&model_id=route/model&cursor=${page.next_cursor}`,
      keys.admin,
    );
    const rest = second.json();
    assert.equal(rest.items.length, 10);
    assert.equal(rest.next_cursor, null);
    const ids = [...page.items, ...rest.items].map((item: { id: string }) => item.id);
    assert.deepEqual(new Set(ids), new Set(seeded.map((delivery) => delivery.id)));

    await archive(2, { modelId: 'route/other', errorType: 'POISON_MESSAGE' });
    const byError = (await inject('GET', '/dlq?error_type=POISON_MESSAGE', keys.admin)).json();
    assert.equal(byError.items.length, 2);
    assert.ok(byError.items.every((item: { model_id: string }) => item.model_id === 'route/other'));
    const byType = (await inject('GET', '/dlq?event_type=model.updated&limit=200', keys.admin)).json();
    assert.equal(byType.items.length, 32);
    const future = new Date(Date.now() + 60_000).toISOString();
    const none = (await inject('GET', `/dlq?from=${encodeURIComponent(future)}`, keys.admin)).json();
    assert.equal(none.items.length, 0);
    const window = (
      await inject(
        'GET',
        `/dlq?model_id=route/model&from=${encodeURIComponent(page.items[4].last_failure_at)}&to=${encodeURIComponent(page.items[0].last_failure_at)}`,
        keys.admin,
      )
    ).json();
    assert.equal(window.items.length, 4, 'from inclusive, to exclusive');
  });

  test('400 naming the field for a bad cursor, limit, state or time range', async () => {
    for (const [query, field] of [
      ['cursor=nonsense', 'cursor'],
      ['limit=500', 'limit'],
      ['state=gone', 'state'],
      ['from=yesterday', 'from'],
      [
        `from=${encodeURIComponent('2025-02-01T00:00:00Z')}&to=${encodeURIComponent('2025-01-01T00:00:00Z')}`,
        'to',
      ],
      ['colour=red', 'colour'],
    ] as const) {
      const response = await inject('GET', `/dlq?${query}`, keys.admin);
      assert.equal(response.statusCode, 400, query);
      assert.equal(response.json().error.code, 'VALIDATION_FAILED');
      assert.equal(response.json().error.field, field, query);
    }
  });
});

describe('GET /dlq/:id', () => {
  test('the whole dead letter: stack, headers with x-death, body', async () => {
    const delivery = seeded[3] as Delivery;
    const response = await inject('GET', `/dlq/${delivery.id}`, keys.admin);
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json();
    assert.equal(body.id, delivery.id);
    assert.match(body.error_stack, /TypeError: cannot read properties of undefined\n\s+at apply/);
    assert.equal(body.content.encoding, 'utf8');
    assert.equal(body.content.data, delivery.content.toString());
    assert.equal(body.headers[FAILURE_HEADERS.deadLetterId], delivery.id);
    assert.equal(body.headers['x-death'][0].queue, 'retry.30s');
    assert.equal(body.properties.messageId, delivery.properties.messageId);
  });

  test('404 for an unknown id, 400 for a malformed one', async () => {
    const unknown = await inject('GET', `/dlq/${randomUUID()}`, keys.admin);
    assert.equal(unknown.statusCode, 404);
    assert.equal(unknown.json().error.code, 'DEAD_LETTER_NOT_FOUND');
    const malformed = await inject('GET', '/dlq/not-a-uuid', keys.admin);
    assert.equal(malformed.statusCode, 400);
    assert.equal(malformed.json().error.field, 'id');
  });
});

describe('POST /dlq/replay', () => {
  test('a dry run reports and moves nothing', async () => {
    const response = await inject('POST', '/dlq/replay', keys.admin, {
      filter: { model_id: 'route/model' },
      dry_run: true,
      max: 5,
    });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json();
    assert.equal(body.dry_run, true);
    assert.equal(body.matched, 30);
    assert.equal(body.replayed, 0);
    assert.deepEqual(
      body.ids,
      seeded.slice(0, 5).map((delivery) => delivery.id),
      'oldest first, at most max',
    );
    assert.equal(await deadCount(), 32);
    // Nothing republished: the audit trail's queue holds only the record of the dry run itself.
    assert.deepEqual(await queueDepths(), {
      ...Object.fromEntries(WORK_QUEUES.map((queue) => [queue, 0])),
      [QUEUES.audit]: 1,
    });
    const [message, ...more] = await drainQueue(url, QUEUES.audit, { idleMs: 300 });
    assert.equal(more.length, 0);
    const record = replayedRecord(message);
    assert.equal(record.data.dry_run, true);
    assert.equal(record.data.operation_id, body.operation_id);
    assert.deepEqual(record.data.selection, {
      ids: null,
      filter: { model_id: 'route/model', state: 'dead' },
      max: 5,
    });
    assert.equal(record.data.matched, 30);
    assert.equal(record.data.part, 1);
    assert.deepEqual(
      record.data.dead_letters.map((entry) => entry.id),
      body.ids,
      'the dead letters that would be replayed',
    );
  });

  test('republishes to the original queue only, failure history stripped, and records the key', async () => {
    const chosen = seeded.slice(10, 13);
    const response = await inject('POST', '/dlq/replay', keys.admin, { ids: chosen.map((d) => d.id) });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json();
    assert.equal(body.dry_run, false);
    assert.equal(body.matched, 3);
    assert.equal(body.replayed, 3);
    assert.deepEqual(new Set(body.ids), new Set(chosen.map((d) => d.id)));
    // The three copies, then the replay's record for the audit trail (on the same confirm channel).
    assert.deepEqual(await queueDepths(), {
      ...Object.fromEntries(WORK_QUEUES.map((queue) => [queue, 0])),
      [QUEUES.audit]: 4,
    });
    const messages = await drainQueue(url, QUEUES.audit, { idleMs: 300 });
    assert.equal(messages.length, 4);
    const record = replayedRecord(messages[3]);
    assert.equal(record.data.dry_run, false);
    assert.equal(record.data.operation_id, body.operation_id);
    assert.deepEqual(record.data.selection, { ids: 3, filter: null, max: 1000 });
    assert.deepEqual(
      new Set(record.data.dead_letters.map((entry) => entry.id)),
      new Set(chosen.map((d) => d.id)),
    );
    for (const entry of record.data.dead_letters) {
      const original = chosen.find((d) => d.id === entry.id) as Delivery;
      assert.equal(entry.event_id, original.properties.messageId);
      assert.equal(entry.event_type, 'model.updated');
      assert.equal(entry.model_id, 'route/model');
      assert.equal(entry.queue, QUEUES.audit);
    }
    const copies = messages.slice(0, 3);
    for (const copy of copies) {
      const original = chosen.find((d) => d.id === copy.properties.headers?.['x-replayed-from']) as Delivery;
      assert.ok(original, 'x-replayed-from names the dead letter');
      assert.deepEqual(copy.content, original.content);
      assert.equal(copy.fields.exchange, EXCHANGES.retryRequeue);
      assert.equal(copy.properties.messageId, original.properties.messageId);
      assert.equal(copy.properties.correlationId, original.properties.correlationId);
      assert.equal(copy.properties.type, 'model.updated');
      const headers = copy.properties.headers ?? {};
      assert.equal(headers['x-replayed-by'], `api-key:${keyIds.admin}`);
      for (const stripped of ['x-attempts', 'x-error-type', 'x-error-stack', 'x-dead-letter-id', 'x-death']) {
        assert.equal(headers[stripped], undefined, stripped);
      }
      assert.equal(headers[FAILURE_HEADERS.originalExchange], EXCHANGES.models);
      assert.equal(headers['cloudEvents:type'], 'model.updated');
    }
    const detail = (await inject('GET', `/dlq/${chosen[0]?.id}`, keys.admin)).json();
    assert.equal(detail.state, 'replayed');
    assert.equal(detail.replayed_by, `api-key:${keyIds.admin}`);
    assert.equal(detail.replay_operation_id, body.operation_id);
    const { rows } = await pool.query('SELECT * FROM dlq_operations WHERE id = $1', [body.operation_id]);
    assert.equal(rows[0]?.action, 'replay');
    assert.equal(rows[0]?.actor_key_id, keyIds.admin);
    assert.deepEqual(new Set(rows[0]?.affected_ids), new Set(chosen.map((d) => d.id)));
    const again = (await inject('POST', '/dlq/replay', keys.admin, { ids: [chosen[0]?.id] })).json();
    assert.deepEqual(again.skipped, [{ id: chosen[0]?.id, reason: 'already_replayed' }]);
  });

  test('400 for a body that is not a replay request', async () => {
    for (const [payload, field] of [
      [{}, 'body'],
      [{ ids: [seeded[0]?.id], filter: {} }, 'body'],
      [{ ids: ['nope'] }, 'ids.0'],
      [{ ids: [] }, 'ids'],
      [{ filter: {}, max: 10_001 }, 'max'],
      [{ filter: { colour: 'red' } }, 'filter.colour'],
      [{ ids: seeded.slice(0, 3).map((d) => d.id), max: 2 }, 'ids'],
    ] as const) {
      const response = await inject('POST', '/dlq/replay', keys.admin, payload);
      assert.equal(response.statusCode, 400, JSON.stringify(payload));
      assert.equal(response.json().error.field, field, JSON.stringify(payload));
    }
  });
});

describe('DELETE /dlq/:id', () => {
  test('204, then 404; recorded with the key', async () => {
    const victim = seeded[20] as Delivery;
    const response = await inject('DELETE', `/dlq/${victim.id}`, keys.admin);
    assert.equal(response.statusCode, 204);
    assert.equal(response.body, '');
    assert.equal((await inject('GET', `/dlq/${victim.id}`, keys.admin)).statusCode, 404);
    const again = await inject('DELETE', `/dlq/${victim.id}`, keys.admin);
    assert.equal(again.statusCode, 404);
    assert.equal(again.json().error.code, 'DEAD_LETTER_NOT_FOUND');
    const { rows } = await pool.query("SELECT * FROM dlq_operations WHERE action = 'delete'");
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.actor_key_id, keyIds.admin);
    assert.deepEqual(rows[0]?.affected_ids, [victim.id]);
  });
});
