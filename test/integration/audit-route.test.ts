/**
 * GET /audit: admin only (401 without a key, 403 for reader and writer keys), filters by model, event
 * type, correlation id and time range, keyset pages newest first that neither skip nor repeat a record,
 * and a 400 naming the parameter for anything malformed. It runs on a bare Fastify instance (error
 * handler, validators, authentication, this plugin) over records the audit consumer's own append function
 * wrote; the last test checks the real app once the plugin is registered there.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import { ApiKeyStore } from '../../src/auth/api-key-store.ts';
import type { Role } from '../../src/auth/roles.ts';
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { appendAuditRecords } from '../../src/consumers/audit/audit-consumer.ts';
import type { Delivery } from '../../src/consumers/consumer.ts';
import authentication from '../../src/http/plugins/authentication.ts';
import errorHandler from '../../src/http/plugins/error-handler.ts';
import auditRoutes from '../../src/http/routes/audit.ts';
import { schemaCompilers } from '../../src/http/schema-compilers.ts';
import { build, createTestDatabase } from '../helper.ts';
import { exampleEvent } from '../support/event-examples.ts';

const databaseUrl = await createTestDatabase({ after });
const pool = new pg.Pool({ connectionString: databaseUrl, max: 3 });
// The database is dropped WITH (FORCE) after the tests, whichever hook runs first.
pool.on('error', () => {});
after(() => pool.end());
const apiKeys = new ApiKeyStore(pool, { cacheTtlMs: 0 });
const keys = {} as Record<Role, string>;
for (const role of ['reader', 'writer', 'admin'] as const) {
  keys[role] = (await apiKeys.create(`audit-${role}`, role)).key;
}

async function bareApp(): Promise<FastifyInstance> {
  const app = Fastify();
  app.setValidatorCompiler(schemaCompilers());
  await app.register(errorHandler);
  await app.register(authentication, { apiKeys });
  await app.register(auditRoutes, { pool });
  await app.ready();
  after(() => app.close());
  return app;
}

const START = Date.parse('2025-03-01T00:00:00.000Z');
const at = (seconds: number) => new Date(START + seconds * 1000).toISOString();

/** 60 events, one per second except the last ten, which share one timestamp (ties broken by id). */
const events: TelemetryEvent[] = Array.from({ length: 60 }, (_, index) => {
  const timestamp = at(Math.min(index, 50));
  const common = { event_id: randomUUID(), timestamp, correlation_id: `req-${index % 3}` };
  if (index % 4 === 0) return exampleEvent('filter.executed', common);
  if (index % 4 === 1) {
    return exampleEvent('api.error', { ...common, data: { model_id: 'audit/b', field: 'model_id' } });
  }
  const base = exampleEvent('model.queried');
  return exampleEvent('model.queried', {
    ...common,
    data: { ...base.data, model_id: index % 4 === 2 ? 'audit/a' : 'audit/b' },
  });
});

function deliveryOf(event: TelemetryEvent): Delivery {
  return {
    event,
    id: event.event_id,
    content: Buffer.from(JSON.stringify(event)),
    exchange: 'models.events',
    routingKey: event.event_type,
    redelivered: false,
    properties: {
      messageId: event.event_id,
      correlationId: undefined,
      type: undefined,
      timestamp: undefined,
      headers: {},
    },
  };
}

const client = await pool.connect();
try {
  await client.query('BEGIN');
  await appendAuditRecords(events.map(deliveryOf), client);
  await client.query('COMMIT');
} finally {
  client.release();
}

const app = await bareApp();

interface Item {
  id: number;
  event_id: string;
  event_type: string;
  model_id: string | null;
  correlation_id: string;
  occurred_at: string;
  hash: string;
  chain_position: number;
  envelope: Record<string, unknown>;
}

/** GET /audit?query with `key` (the admin's by default; null: none). */
async function get(query: string, key: string | null = keys.admin) {
  return app.inject({
    method: 'GET',
    url: `/audit${query === '' ? '' : `?${query}`}`,
    headers: key === null ? {} : { 'x-api-key': key },
  });
}

/** Every page of a query, following next_cursor. */
async function allPages(query: string): Promise<Item[][]> {
  const pages: Item[][] = [];
  let cursor: string | null = null;
  do {
    const response = await get([query, cursor === null ? '' : `cursor=${cursor}`].filter(Boolean).join('&'));
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json() as { items: Item[]; next_cursor: string | null };
    pages.push(body.items);
    cursor = body.next_cursor;
    assert.ok(pages.length <= 100, 'paging ends');
  } while (cursor !== null);
  return pages;
}

/** The events a filter should return, newest first (ties: the later-appended first). */
function expected(filter: (event: TelemetryEvent, index: number) => boolean): string[] {
  return events
    .map((event, index) => ({ event, index }))
    .filter(({ event, index }) => filter(event, index))
    .sort((a, b) => Date.parse(b.event.timestamp) - Date.parse(a.event.timestamp) || b.index - a.index)
    .map(({ event }) => event.event_id);
}

describe('access', () => {
  test('no key is 401', async () => {
    const response = await get('', null);
    assert.equal(response.statusCode, 401);
    assert.equal(response.json().error.code, 'UNAUTHENTICATED');
  });

  test('an unknown key is 401', async () => {
    const response = await get('', 'tb_unknown');
    assert.equal(response.statusCode, 401);
  });

  for (const role of ['reader', 'writer'] as const) {
    test(`a ${role} key is 403: the trail shows everyone's activity`, async () => {
      const response = await get('', keys[role]);
      assert.equal(response.statusCode, 403);
      assert.equal(response.json().error.code, 'FORBIDDEN');
    });
  }
});

describe('reading', () => {
  test('newest first, 50 by default, each item with its envelope, hash and place in its chain', async () => {
    const response = await get('');
    assert.equal(response.statusCode, 200);
    const body = response.json() as { items: Item[]; next_cursor: string | null };
    assert.equal(body.items.length, 50);
    assert.equal(typeof body.next_cursor, 'string');
    assert.deepEqual(
      body.items.map((item) => item.event_id),
      expected(() => true).slice(0, 50),
    );
    const first = body.items[0] as Item;
    const event = events.find((candidate) => candidate.event_id === first.event_id);
    assert.deepEqual(first.envelope, event);
    assert.equal(first.occurred_at, event?.timestamp);
    assert.match(first.hash, /^[0-9a-f]{64}$/);
    assert.ok(first.chain_position >= 1);
  });

  test('pages walk the whole trail once, without a skip or a repeat, across equal timestamps', async () => {
    const pages = await allPages('limit=7');
    assert.equal(pages.length, Math.ceil(events.length / 7));
    assert.ok(pages.slice(0, -1).every((page) => page.length === 7));
    assert.deepEqual(
      pages.flat().map((item) => item.event_id),
      expected(() => true),
    );
  });

  test('the last page has next_cursor null; limit 500 is allowed', async () => {
    const response = await get('limit=500');
    assert.equal(response.statusCode, 200);
    assert.equal(response.json().items.length, events.length);
    assert.equal(response.json().next_cursor, null);
  });

  test('by model_id, including errors that name the model', async () => {
    const items = (await allPages('model_id=audit/b&limit=4')).flat();
    assert.deepEqual(
      items.map((item) => item.event_id),
      expected((event) => (event.data as { model_id?: unknown }).model_id === 'audit/b'),
    );
    assert.ok(items.some((item) => item.event_type === 'api.error'));
  });

  test('by event_type', async () => {
    const items = (await allPages('event_type=filter.executed&limit=5')).flat();
    assert.equal(items.length, 15);
    assert.ok(items.every((item) => item.event_type === 'filter.executed' && item.model_id === null));
  });

  test('by correlation_id', async () => {
    const items = (await allPages('correlation_id=req-1')).flat();
    assert.deepEqual(
      items.map((item) => item.event_id),
      expected((event) => event.correlation_id === 'req-1'),
    );
  });

  test('by time range: from inclusive, to exclusive, any ISO-8601 offset', async () => {
    const items = (
      await allPages(`from=${at(10)}&to=${encodeURIComponent('2025-03-01T02:00:20+02:00')}&limit=3`)
    ).flat();
    assert.deepEqual(
      items.map((item) => item.event_id),
      expected(
        (event) =>
          Date.parse(event.timestamp) >= START + 10_000 && Date.parse(event.timestamp) < START + 20_000,
      ),
    );
    assert.equal(items.length, 10);
  });

  test('filters combine', async () => {
    const items = (await allPages(`model_id=audit/b&event_type=model.queried&from=${at(30)}`)).flat();
    assert.deepEqual(
      items.map((item) => item.event_id),
      expected(
        (event) =>
          event.event_type === 'model.queried' &&
          (event.data as { model_id: string }).model_id === 'audit/b' &&
          Date.parse(event.timestamp) >= START + 30_000,
      ),
    );
    assert.ok(items.length > 0);
  });

  test('nothing matching is an empty page', async () => {
    const response = await get('model_id=nobody/here');
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { items: [], next_cursor: null });
  });
});

describe('bad parameters are 400 VALIDATION_FAILED naming the field', () => {
  const cases: Array<[string, string]> = [
    ['limit=0', 'limit'],
    ['limit=501', 'limit'],
    ['limit=ten', 'limit'],
    ['event_type=model.deleted', 'event_type'],
    ['model_id=..', 'model_id'],
    [`model_id=${'m'.repeat(129)}`, 'model_id'],
    ['correlation_id=has%20space', 'correlation_id'],
    ['from=yesterday', 'from'],
    ['to=2025-13-01T00:00:00Z', 'to'],
    [`from=${at(20)}&to=${at(10)}`, 'to'],
    [`from=${at(10)}&to=${at(10)}`, 'to'],
    ['cursor=not*base64', 'cursor'],
    [`cursor=${Buffer.from('{"t":"2025","i":1}').toString('base64url')}`, 'cursor'],
    [`cursor=${Buffer.from('{"t":"2025-03-01T00:00:10.000000Z","i":-1}').toString('base64url')}`, 'cursor'],
    [`cursor=${Buffer.from('not json').toString('base64url')}`, 'cursor'],
    ['sort=id', 'sort'],
  ];
  for (const [query, field] of cases) {
    test(`${query.slice(0, 60)} → ${field}`, async () => {
      const response = await get(query);
      assert.equal(response.statusCode, 400, response.body);
      const { error } = response.json();
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.equal(error.field, field);
    });
  }
});

test('in the real app: admin only, and in the OpenAPI document under the audit tag', async (t) => {
  const { app: real, keys: realKeys } = await build({ after });
  if (!real.hasRoute({ method: 'GET', url: '/audit' })) {
    t.skip('src/http/routes/audit.ts is not registered in src/http/app.ts yet');
    return;
  }
  assert.equal((await real.inject({ method: 'GET', url: '/audit' })).statusCode, 401);
  const reader = await real.inject({
    method: 'GET',
    url: '/audit',
    headers: { 'x-api-key': realKeys.reader },
  });
  assert.equal(reader.statusCode, 403);
  const admin = await real.inject({ method: 'GET', url: '/audit', headers: { 'x-api-key': realKeys.admin } });
  assert.equal(admin.statusCode, 200);
  assert.deepEqual(Object.keys(admin.json()), ['items', 'next_cursor']);
  const openapi = real.swagger() as { paths?: Record<string, { get?: { tags?: string[] } }> };
  assert.deepEqual(openapi.paths?.['/audit']?.get?.tags, ['audit']);
});
