import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, test } from 'node:test';
import type { Model } from '../../src/registry/model-schemas.ts';
import { build, modelBody } from '../helper.ts';

const ctx = await build({ after });
const { app, keys } = ctx;

function inject(method: 'GET' | 'POST' | 'PATCH', url: string, key: string | undefined, payload?: unknown) {
  return app.inject({
    method,
    url,
    headers: key === undefined ? {} : { 'x-api-key': key },
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
}

const path = (modelId: string) => `/models/${encodeURIComponent(modelId)}`;

async function register(overrides: Record<string, unknown> = {}): Promise<Model> {
  const body = modelBody(overrides);
  const response = await inject('POST', '/models', keys.writer, body);
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

describe('POST /models', () => {
  test('201 with the stored model, version 1, is_active defaulting to true', async () => {
    const body = modelBody({ model_id: 'openai/gpt-4-turbo:2024-04' });
    const response = await inject('POST', '/models', keys.writer, body);
    assert.equal(response.statusCode, 201);
    const model = response.json();
    assert.deepEqual(
      { ...model, created_at: undefined, updated_at: undefined },
      {
        ...body,
        is_active: true,
        version: 1,
        created_at: undefined,
        updated_at: undefined,
      },
    );
    assert.equal(model.created_at, model.updated_at);
    assert.ok(Math.abs(Date.parse(model.created_at) - Date.now()) < 60_000);
    assert.equal(response.headers.location, '/models/openai%2Fgpt-4-turbo%3A2024-04');
    const stored = await inject('GET', path(body.model_id as string), keys.reader);
    assert.deepEqual(stored.json(), model);
  });

  test('is_active false is kept', async () => {
    const model = await register({ is_active: false });
    assert.equal(model.is_active, false);
  });

  test('409 when the model_id exists, and the original is untouched', async () => {
    const original = await register();
    const response = await inject(
      'POST',
      '/models',
      keys.writer,
      modelBody({
        model_id: original.model_id,
        vendor_id: 'Other',
      }),
    );
    assert.equal(response.statusCode, 409);
    assert.deepEqual(response.json(), {
      error: {
        code: 'MODEL_ALREADY_EXISTS',
        message: `model '${original.model_id}' is already registered`,
        field: 'model_id',
      },
    });
    assert.deepEqual((await inject('GET', path(original.model_id), keys.reader)).json(), original);
  });

  test('400 naming the field', async () => {
    const response = await inject('POST', '/models', keys.writer, modelBody({ context_window: -1 }));
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.code, 'VALIDATION_FAILED');
    assert.equal(response.json().error.field, 'context_window');
  });

  test('413 over 64 KiB and 415 for a body that is not JSON', async () => {
    const huge = await app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': keys.writer, 'content-type': 'application/json' },
      payload: JSON.stringify(modelBody({ padding: 'x'.repeat(70 * 1024) })),
    });
    assert.equal(huge.statusCode, 413);
    assert.equal(huge.json().error.code, 'PAYLOAD_TOO_LARGE');
    const text = await app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': keys.writer, 'content-type': 'text/plain' },
      payload: 'model_id=x',
    });
    assert.equal(text.statusCode, 415);
    assert.equal(text.json().error.code, 'UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('GET /models/:model_id', () => {
  test('200 for a model whose id has a slash and a colon, 404 for an unknown one', async () => {
    const model = await register({ model_id: 'anthropic/claude-3:opus' });
    const found = await inject('GET', path(model.model_id), keys.reader);
    assert.equal(found.statusCode, 200);
    assert.deepEqual(found.json(), model);
    const missing = await inject('GET', '/models/no-such-model', keys.reader);
    assert.equal(missing.statusCode, 404);
    assert.deepEqual(missing.json(), {
      error: { code: 'MODEL_NOT_FOUND', message: "model 'no-such-model' does not exist", field: 'model_id' },
    });
  });

  test('the second read is a cache hit; a write invalidates it', async () => {
    const model = await register();
    const first = await inject('GET', path(model.model_id), keys.reader);
    const second = await inject('GET', path(model.model_id), keys.reader);
    assert.equal(first.headers['x-cache'], 'miss');
    assert.equal(second.headers['x-cache'], 'hit');
    assert.deepEqual(second.json(), first.json());
    await inject('PATCH', path(model.model_id), keys.writer, { context_window: 4096 });
    const third = await inject('GET', path(model.model_id), keys.reader);
    assert.equal(third.headers['x-cache'], 'miss');
    assert.equal(third.json().context_window, 4096);
    const stats = ctx.services.registry.cacheStats().models;
    assert.ok(stats.hits >= 1 && stats.misses >= 2, JSON.stringify(stats));
  });
});

describe('PATCH /models/:model_id', () => {
  test('a partial update changes only the given fields and bumps the version by one each time', async () => {
    const model = await register();
    const first = await inject('PATCH', path(model.model_id), keys.writer, { cost_in_per_mil: 2.5 });
    assert.equal(first.statusCode, 200);
    assert.deepEqual(
      { ...first.json<Model>(), updated_at: undefined },
      { ...model, cost_in_per_mil: 2.5, version: 2, updated_at: undefined },
    );
    assert.ok(first.json().updated_at >= model.updated_at);
    const second = await inject('PATCH', path(model.model_id), keys.writer, {
      capability_tier: 'Tier_3',
      function_call_support: false,
    });
    assert.equal(second.json().version, 3);
    assert.equal(second.json().capability_tier, 'Tier_3');
    assert.equal(second.json().function_call_support, false);
    assert.equal(second.json().cost_in_per_mil, 2.5);
  });

  test('setting fields to the values they have is no change: the version stays', async () => {
    const model = await register();
    const same = await inject('PATCH', path(model.model_id), keys.writer, { vendor_id: model.vendor_id });
    assert.equal(same.statusCode, 200);
    assert.deepEqual(same.json(), model);
  });

  test('404 for an unknown model, 400 for an empty patch or an attempt to change model_id', async () => {
    const missing = await inject('PATCH', '/models/nope', keys.writer, { context_window: 1 });
    assert.equal(missing.statusCode, 404);
    const model = await register();
    const empty = await inject('PATCH', path(model.model_id), keys.writer, {});
    assert.equal(empty.statusCode, 400);
    assert.equal(empty.json().error.field, 'body');
    const rename = await inject('PATCH', path(model.model_id), keys.writer, { model_id: 'other' });
    assert.equal(rename.statusCode, 400);
    assert.equal(rename.json().error.field, 'model_id');
    assert.equal((await inject('GET', path(model.model_id), keys.reader)).json().version, 1);
  });
});

describe('POST /models/:model_id/deactivate', () => {
  test('deactivates once and is idempotent after that; PATCH can reactivate', async () => {
    const model = await register();
    const first = await inject('POST', `${path(model.model_id)}/deactivate`, keys.writer);
    assert.equal(first.statusCode, 200);
    assert.equal(first.json().is_active, false);
    assert.equal(first.json().version, 2);
    const again = await inject('POST', `${path(model.model_id)}/deactivate`, keys.writer);
    assert.equal(again.statusCode, 200);
    assert.deepEqual(again.json(), first.json());
    const withJsonHeader = await app.inject({
      method: 'POST',
      url: `${path(model.model_id)}/deactivate`,
      headers: { 'x-api-key': keys.writer, 'content-type': 'application/json' },
    });
    assert.equal(withJsonHeader.statusCode, 200);
    assert.equal(withJsonHeader.json().version, 2);
    const reactivated = await inject('PATCH', path(model.model_id), keys.writer, { is_active: true });
    assert.equal(reactivated.json().is_active, true);
    assert.equal(reactivated.json().version, 3);
  });

  test('404 for an unknown model', async () => {
    const response = await inject('POST', '/models/nope/deactivate', keys.writer);
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'MODEL_NOT_FOUND');
  });
});

describe('GET /models (filter)', () => {
  test('filters, sorts and pages with a cursor; a write invalidates cached pages', async () => {
    const vendor = `Vendor-${Date.now()}`;
    for (const [index, window] of [8192, 32768, 128000, 200000, 1000000].entries()) {
      await register({ model_id: `filter/${vendor}/${index}`, vendor_id: vendor, context_window: window });
    }
    const query = `/models?vendor_id=${vendor}&min_context_window=32768&sort=-context_window&limit=2`;
    const page1 = await inject('GET', query, keys.reader);
    assert.equal(page1.statusCode, 200);
    assert.deepEqual(
      page1.json().items.map((model: { context_window: number }) => model.context_window),
      [1000000, 200000],
    );
    const page2 = await inject('GET', `${query}&cursor=${page1.json().next_cursor}`, keys.reader);
    const page2Body = page2.json();
    assert.deepEqual(
      page2Body.items.map((model: { context_window: number }) => model.context_window),
      [128000, 32768],
    );
    assert.equal(page2Body.next_cursor, null);
    assert.equal((await inject('GET', query, keys.reader)).headers['x-cache'], 'hit');
    await inject('POST', `/models/filter%2F${vendor}%2F4/deactivate`, keys.writer);
    const active = await inject('GET', `${query}&is_active=true`, keys.reader);
    assert.deepEqual(
      active.json().items.map((model: { context_window: number }) => model.context_window),
      [200000, 128000],
    );
    assert.equal((await inject('GET', query, keys.reader)).headers['x-cache'], 'miss');
  });

  test('a cursor from another sort is rejected naming cursor', async () => {
    const first = await inject('GET', '/models?limit=1&sort=context_window', keys.reader);
    const cursor = first.json().next_cursor;
    assert.ok(cursor);
    const response = await inject('GET', `/models?limit=1&sort=model_id&cursor=${cursor}`, keys.reader);
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.field, 'cursor');
  });

  test('limit is bounded', async () => {
    const response = await inject('GET', '/models?limit=201', keys.reader);
    assert.equal(response.statusCode, 400);
    assert.equal(response.json().error.field, 'limit');
  });
});

describe('authentication and roles', () => {
  const cases: [string, 'GET' | 'POST' | 'PATCH', () => string, unknown, 'reader' | 'writer'][] = [
    ['POST /models', 'POST', () => '/models', () => modelBody(), 'writer'],
    ['GET /models', 'GET', () => '/models', undefined, 'reader'],
    ['GET /models/:id', 'GET', () => '/models/x', undefined, 'reader'],
    ['PATCH /models/:id', 'PATCH', () => '/models/x', { context_window: 5 }, 'writer'],
    ['POST /models/:id/deactivate', 'POST', () => '/models/x/deactivate', undefined, 'writer'],
  ];
  for (const [name, method, url, payload, least] of cases) {
    test(`${name}: 401 without or with a bad key, 403 below ${least}`, async () => {
      const body = typeof payload === 'function' ? payload() : payload;
      const none = await inject(method, url(), undefined, body);
      assert.equal(none.statusCode, 401);
      assert.deepEqual(none.json().error, {
        code: 'UNAUTHENTICATED',
        message: 'missing x-api-key header',
        field: 'x-api-key',
      });
      const wrong = await inject(method, url(), `tb_${'A'.repeat(43)}`, body);
      assert.equal(wrong.statusCode, 401);
      const malformed = await inject(method, url(), 'hunter2', body);
      assert.equal(malformed.statusCode, 401);
      const reader = await inject(method, url(), keys.reader, body);
      if (least === 'writer') {
        assert.equal(reader.statusCode, 403);
        assert.equal(reader.json().error.code, 'FORBIDDEN');
      } else {
        assert.notEqual(reader.statusCode, 403);
        assert.notEqual(reader.statusCode, 401);
      }
      for (const key of [keys.writer, keys.admin]) {
        const allowed = await inject(method, url(), key, typeof payload === 'function' ? payload() : payload);
        assert.ok(![401, 403].includes(allowed.statusCode), `${allowed.statusCode} ${allowed.body}`);
      }
    });
  }

  test('a revoked key stops working', async () => {
    const { key, info } = await ctx.services.apiKeys.create('short-lived', 'reader');
    assert.equal((await inject('GET', '/models', key)).statusCode, 200);
    assert.equal(await ctx.services.apiKeys.revoke(info.id), true);
    assert.equal((await inject('GET', '/models', key)).statusCode, 401);
  });

  test('keys are stored only as SHA-256 hashes', async () => {
    const { rows } = await ctx.services.pool.query<{ key_hash: Buffer; dump: string }>(
      'SELECT key_hash, t::text AS dump FROM api_keys t',
    );
    const stored = new Set(rows.map((row) => row.key_hash.toString('hex')));
    for (const key of Object.values(keys)) {
      assert.ok(stored.has(createHash('sha256').update(key).digest('hex')));
      assert.ok(!rows.some((row) => row.dump.includes(key) || row.dump.includes(key.slice(3))));
    }
  });
});

describe('errors', () => {
  test('an unknown route is a 404 in the error format', async () => {
    const response = await inject('GET', '/nowhere', undefined);
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'ROUTE_NOT_FOUND');
  });
});

describe('health and docs', () => {
  test('/livez and /readyz need no key', async () => {
    assert.deepEqual((await inject('GET', '/livez', undefined)).json(), { status: 'ok' });
    const ready = await inject('GET', '/readyz', undefined);
    assert.equal(ready.statusCode, 200);
    const body = ready.json();
    assert.equal(body.status, 'ready');
    assert.equal(body.checks.postgres, 'up');
    // The publisher may still be connecting; either way the API is ready, and says why the broker is not.
    assert.ok(['up', 'down'].includes(body.checks.broker));
    assert.equal(body.notes.length, body.checks.broker === 'up' ? 0 : 1);
  });

  test('the OpenAPI document lists every route with its security', async () => {
    const response = await inject('GET', '/docs/json', undefined);
    assert.equal(response.statusCode, 200);
    const document = response.json();
    assert.equal(document.openapi, '3.1.0');
    assert.deepEqual(Object.keys(document.paths).sort(), [
      '/analytics/filters',
      '/analytics/models/popular',
      '/analytics/models/{model_id}',
      '/audit',
      '/audit/keyless',
      '/dashboard',
      '/dashboard/stream',
      '/dlq',
      '/dlq/replay',
      '/dlq/{id}',
      '/health',
      '/livez',
      '/metrics',
      '/metrics/prometheus',
      '/models',
      '/models/{model_id}',
      '/models/{model_id}/deactivate',
      '/readyz',
      '/schemas/events',
      '/schemas/events/{event_type}',
      '/telemetry/ledger',
      '/telemetry/selftest',
    ]);
    assert.deepEqual(document.paths['/models'].post.security, [{ apiKey: [] }]);
    assert.deepEqual(document.paths['/dashboard/stream'].get.security, [{ apiKey: [] }]);
    assert.deepEqual(document.paths['/audit/keyless'].get.security, [{ apiKey: [] }]);
    assert.ok(document.paths['/models'].get.parameters.some((p: { name: string }) => p.name === 'cursor'));
    const ui = await inject('GET', '/docs', undefined);
    assert.ok([200, 302].includes(ui.statusCode));
  });
});
