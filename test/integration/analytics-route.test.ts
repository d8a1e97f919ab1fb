/**
 * GET /analytics/models/popular and /analytics/filters over HTTP: counts written by the consumer's own
 * upsert, the default and explicit time ranges, and a 400 naming the field for every bad input. Most cases
 * run on a bare Fastify instance (error handler, validators, this plugin; authentication is tested
 * elsewhere); the last one checks the real app once the plugin is registered there.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import type { EventOf, TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { aggregateEvents } from '../../src/consumers/analytics/analytics-aggregation.ts';
import { writeAggregate } from '../../src/consumers/analytics/analytics-consumer.ts';
import { AnalyticsQuery } from '../../src/consumers/analytics/analytics-query.ts';
import errorHandler from '../../src/http/plugins/error-handler.ts';
import analyticsRoutes from '../../src/http/routes/analytics.ts';
import { schemaCompilers } from '../../src/http/schema-compilers.ts';
import { parseInstant, resolveTimeRange } from '../../src/time-range.ts';
import { build, createTestDatabase } from '../helper.ts';
import { exampleEvent } from '../support/event-examples.ts';

// The pool ends before its database is dropped (WITH (FORCE) would cut its idle connections).
const drops: Array<() => unknown> = [];
const pool = new pg.Pool({
  connectionString: await createTestDatabase({ after: (fn) => drops.push(fn) }),
  max: 3,
});
after(async () => {
  await pool.end();
  for (const drop of drops) await drop();
});

async function bareApp(): Promise<FastifyInstance> {
  const app = Fastify();
  app.setValidatorCompiler(schemaCompilers());
  await app.register(errorHandler);
  await app.register(analyticsRoutes, { analytics: new AnalyticsQuery(pool) });
  await app.ready();
  after(() => app.close());
  return app;
}

type Tier = EventOf<'model.queried'>['data']['capability_tier'];
const model = exampleEvent('model.queried').data;

function queried(modelId: string, at: Date, cacheHit: boolean, vendorId = 'OpenAI', tier: Tier = 'Tier_1') {
  const example = exampleEvent('model.queried');
  return exampleEvent('model.queried', {
    event_id: randomUUID(),
    timestamp: at.toISOString(),
    data: { ...model, model_id: modelId, vendor_id: vendorId, capability_tier: tier },
    metadata: { ...example.metadata, cache_hit: cacheHit },
  });
}

function filtered(at: Date, filters: EventOf<'filter.executed'>['data']['filters'], resultCount: number) {
  return exampleEvent('filter.executed', {
    event_id: randomUUID(),
    timestamp: at.toISOString(),
    data: { filters, result_count: resultCount, has_more: false },
  });
}

const now = Date.now();
const hoursAgo = (hours: number) => new Date(now - hours * 3_600_000);
const repeat = (count: number, make: (index: number) => TelemetryEvent) =>
  Array.from({ length: count }, (_, i) => make(i));

// Two fixed hours in the past, and recent hours for the default range (the last 24 h).
const events: TelemetryEvent[] = [
  ...repeat(8, (i) => queried('past/a', new Date('2025-03-01T09:15:00.000Z'), i < 2)),
  ...repeat(5, () => queried('past/b', new Date('2025-03-01T10:45:00.000Z'), false, 'Anthropic', 'Tier_2')),
  ...repeat(3, () => queried('past/c', new Date('2025-03-01T10:50:00.000Z'), true, 'Mistral', 'Tier_3')),
  ...repeat(4, (i) =>
    filtered(
      new Date('2025-03-01T09:20:00.000Z'),
      { vendor_id: i < 3 ? 'OpenAI' : 'Mistral', sort: 'model_id', limit: 50 },
      i,
    ),
  ),
  ...repeat(6, () => queried('recent/x', hoursAgo(1), true)),
  ...repeat(2, () => queried('recent/y', hoursAgo(5), false)),
  ...repeat(9, () => queried('stale/z', hoursAgo(30), false)),
  ...repeat(2, () => filtered(hoursAgo(2), { is_active: true, sort: 'model_id', limit: 50 }, 0)),
];
{
  const client = await pool.connect();
  try {
    await writeAggregate(client, aggregateEvents(events));
  } finally {
    client.release();
  }
}

const app = await bareApp();
const get = (url: string) => app.inject({ method: 'GET', url });

async function badRequest(url: string, field: string): Promise<string> {
  const response = await get(url);
  assert.equal(response.statusCode, 400, `${url}: ${response.body}`);
  const { error } = response.json();
  assert.equal(error.code, 'VALIDATION_FAILED');
  assert.equal(error.field, field, `${url}: ${error.message}`);
  return error.message as string;
}

describe('the time range', () => {
  const fixedNow = new Date('2025-03-01T12:34:56.789Z');

  test('defaults to the 24 h before now; from alone ends now; to alone starts 24 h before it', () => {
    assert.deepEqual(resolveTimeRange({}, fixedNow), {
      from: new Date('2025-02-28T12:34:56.789Z'),
      to: fixedNow,
    });
    assert.deepEqual(resolveTimeRange({ from: '2025-03-01' }, fixedNow), {
      from: new Date('2025-03-01T00:00:00.000Z'),
      to: fixedNow,
    });
    assert.deepEqual(resolveTimeRange({ to: '2025-02-01T00:00:00Z' }, fixedNow), {
      from: new Date('2025-01-31T00:00:00.000Z'),
      to: new Date('2025-02-01T00:00:00.000Z'),
    });
  });

  test('ISO-8601 with an offset is converted to UTC; seconds and fractions are optional', () => {
    assert.equal(parseInstant('from', '2025-01-15T12:00:00+02:00').toISOString(), '2025-01-15T10:00:00.000Z');
    assert.equal(parseInstant('from', '2025-01-15T10:00-05:30').toISOString(), '2025-01-15T15:30:00.000Z');
    assert.equal(parseInstant('from', '2025-01-15T10:00:00.5Z').toISOString(), '2025-01-15T10:00:00.500Z');
    assert.equal(parseInstant('from', '2024-02-29').toISOString(), '2024-02-29T00:00:00.000Z');
  });

  for (const bad of [
    'yesterday',
    '2025-02-30',
    '2025-02-29',
    '2025-01-15T24:00:00Z',
    '2025-01-15T10:60Z',
    '2025-01-15T10:00:60Z',
    '2025-01-15T10:00:00',
    '2025-01-15T10:00:00+25:00',
    '2025-1-5',
    '1700000000',
  ]) {
    test(`'${bad}' is refused, naming the field`, () => {
      assert.throws(() => parseInstant('to', bad), { code: 'VALIDATION_FAILED', field: 'to' });
    });
  }
});

describe('GET /analytics/models/popular', () => {
  test('ranks the models read in the range, with vendor, tier and cache hit rate', async () => {
    const response = await get('/analytics/models/popular?from=2025-03-01T09:00:00Z&to=2025-03-01T11:00:00Z');
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), {
      from: '2025-03-01T09:00:00.000Z',
      to: '2025-03-01T11:00:00.000Z',
      models: [
        {
          model_id: 'past/a',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_1',
          queries: 8,
          cache_hits: 2,
          cache_hit_rate: 0.25,
        },
        {
          model_id: 'past/b',
          vendor_id: 'Anthropic',
          capability_tier: 'Tier_2',
          queries: 5,
          cache_hits: 0,
          cache_hit_rate: 0,
        },
        {
          model_id: 'past/c',
          vendor_id: 'Mistral',
          capability_tier: 'Tier_3',
          queries: 3,
          cache_hits: 3,
          cache_hit_rate: 1,
        },
      ],
    });
  });

  test('limit, vendor_id and capability_tier narrow the list', async () => {
    const range = 'from=2025-03-01T09:00:00Z&to=2025-03-01T11:00:00Z';
    const ids = async (query: string) =>
      (await get(`/analytics/models/popular?${range}&${query}`))
        .json()
        .models.map((entry: { model_id: string }) => entry.model_id);
    assert.deepEqual(await ids('limit=2'), ['past/a', 'past/b']);
    assert.deepEqual(await ids('vendor_id=Mistral'), ['past/c']);
    assert.deepEqual(await ids('capability_tier=Tier_2'), ['past/b']);
    assert.deepEqual(await ids('vendor_id=OpenAI&capability_tier=Tier_2'), []);
  });

  test('an hour counts when it overlaps the range: 10:59–11:00 takes the whole 10:00 hour', async () => {
    const response = await get('/analytics/models/popular?from=2025-03-01T10:59:00Z&to=2025-03-01T11:00:00Z');
    assert.deepEqual(
      response.json().models.map((entry: { model_id: string }) => entry.model_id),
      ['past/b', 'past/c'],
    );
  });

  test('without from and to: the last 24 hours', async () => {
    const response = await get('/analytics/models/popular');
    assert.equal(response.statusCode, 200);
    const body = response.json();
    assert.deepEqual(
      body.models.map((entry: { model_id: string; queries: number }) => [entry.model_id, entry.queries]),
      [
        ['recent/x', 6],
        ['recent/y', 2],
      ],
    );
    assert.equal(Date.parse(body.to) - Date.parse(body.from), 24 * 3_600_000);
    assert.ok(Math.abs(Date.parse(body.to) - Date.now()) < 60_000);
  });

  for (const [query, field] of [
    ['from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z', 'from'],
    ['from=2025-03-01T00:00:00Z&to=2025-03-01T00:00:00Z', 'from'],
    ['from=2023-01-01&to=2025-01-01', 'from'],
    ['from=soon', 'from'],
    ['to=2025-02-30', 'to'],
    ['to=2025-03-01T10:00:00', 'to'],
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=ten', 'limit'],
    ['capability_tier=Tier_9', 'capability_tier'],
    ['vendor_id=%20bad', 'vendor_id'],
    ['model_id=x', 'model_id'],
  ] as const) {
    test(`${query} → 400 naming ${field}`, async () => {
      await badRequest(`/analytics/models/popular?${query}`, field);
    });
  }

  test("a '+' sent unencoded (read as a space) gets a hint", async () => {
    const message = await badRequest('/analytics/models/popular?from=2025-03-01T10:00:00+01:00', 'from');
    assert.match(message, /%2B/);
    const encoded = await get(
      '/analytics/models/popular?from=2025-03-01T10:00:00%2B01:00&to=2025-03-01T10:00:00Z',
    );
    assert.equal(encoded.statusCode, 200);
    assert.equal(encoded.json().from, '2025-03-01T09:00:00.000Z');
  });
});

describe('GET /analytics/filters', () => {
  test('executions, parameter shares, top values, average result count and zero-result rate', async () => {
    const response = await get('/analytics/filters?from=2025-03-01&to=2025-03-02');
    assert.equal(response.statusCode, 200);
    const body = response.json();
    assert.equal(body.from, '2025-03-01T00:00:00.000Z');
    assert.equal(body.to, '2025-03-02T00:00:00.000Z');
    assert.equal(body.executions, 4);
    assert.equal(body.average_result_count, 1.5);
    assert.equal(body.zero_result_rate, 0.25);
    assert.equal(body.has_more_rate, 0);
    assert.equal(body.cache_hit_rate, 0);
    assert.deepEqual(body.parameters.slice(0, 3), [
      { parameter: 'limit', executions: 4, share: 1 },
      { parameter: 'sort', executions: 4, share: 1 },
      { parameter: 'vendor_id', executions: 4, share: 1 },
    ]);
    assert.equal(body.parameters.length, 10);
    assert.deepEqual(body.top_values.vendor_id, [
      { value: 'OpenAI', executions: 3, share: 0.75 },
      { value: 'Mistral', executions: 1, share: 0.25 },
    ]);
    assert.deepEqual(body.top_values.capability_tier, []);
  });

  test('without from and to: the last 24 hours', async () => {
    const body = (await get('/analytics/filters')).json();
    assert.equal(body.executions, 2);
    assert.equal(body.zero_result_rate, 1);
    assert.deepEqual(body.top_values.is_active, [{ value: 'true', executions: 2, share: 1 }]);
  });

  test('an empty range: zero executions, and null averages and rates rather than 0', async () => {
    const body = (await get('/analytics/filters?from=2020-01-01&to=2020-01-02')).json();
    assert.equal(body.executions, 0);
    assert.equal(body.average_result_count, null);
    assert.equal(body.zero_result_rate, null);
    assert.equal(body.has_more_rate, null);
  });

  for (const [query, field] of [
    ['from=2025-03-02&to=2025-03-01', 'from'],
    ['to=tomorrow', 'to'],
    ['limit=5', 'limit'],
  ] as const) {
    test(`${query} → 400 naming ${field}`, async () => {
      await badRequest(`/analytics/filters?${query}`, field);
    });
  }
});

test('in the real app: readers may, anonymous may not, and the routes are in the OpenAPI document', async (t) => {
  const { app: real, keys } = await build({ after });
  if (!real.hasRoute({ method: 'GET', url: '/analytics/filters' })) {
    t.skip('src/http/routes/analytics.ts is not registered in src/http/app.ts yet');
    return;
  }
  for (const url of ['/analytics/models/popular', '/analytics/filters']) {
    assert.equal((await real.inject({ method: 'GET', url })).statusCode, 401, `${url} without a key`);
    const response = await real.inject({ method: 'GET', url, headers: { 'x-api-key': keys.reader } });
    assert.equal(response.statusCode, 200, `${url} with a reader key`);
  }
  // A model analytics has not seen: the reader gets as far as the 404.
  const one = '/analytics/models/openai%2Fnever-read';
  assert.equal((await real.inject({ method: 'GET', url: one })).statusCode, 401, `${one} without a key`);
  const unseen = await real.inject({ method: 'GET', url: one, headers: { 'x-api-key': keys.reader } });
  assert.equal(unseen.statusCode, 404, `${one} with a reader key`);
  assert.equal(unseen.json().error.code, 'MODEL_NOT_FOUND');
  const openapi = real.swagger() as { paths?: Record<string, { get?: { tags?: string[] } }> };
  assert.deepEqual(openapi.paths?.['/analytics/models/popular']?.get?.tags, ['analytics']);
  assert.deepEqual(openapi.paths?.['/analytics/models/{model_id}']?.get?.tags, ['analytics']);
  assert.deepEqual(openapi.paths?.['/analytics/filters']?.get?.tags, ['analytics']);
});
