import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ValidationError } from '../../../src/errors.ts';
import {
  buildFilterQuery,
  encodeCursor,
  filterCacheKey,
  normalizeFilter,
} from '../../../src/registry/model-filter.ts';
import type { Model } from '../../../src/registry/model-schemas.ts';

const model: Model = {
  model_id: 'a/b',
  vendor_id: 'V',
  capability_tier: 'Tier_2',
  context_window: 4096,
  cost_in_per_mil: 0.1,
  cost_out_per_mil: 0.3,
  function_call_support: true,
  is_active: true,
  version: 1,
  created_at: '2026-01-01T00:00:00.123Z',
  updated_at: '2026-01-01T00:00:00.123Z',
};

test('defaults: sort by model_id ascending, 50 per page', () => {
  const filter = normalizeFilter({});
  assert.equal(filter.sortField, 'model_id');
  assert.equal(filter.descending, false);
  assert.equal(filter.limit, 50);
  assert.deepEqual(buildFilterQuery(filter, '*'), {
    text: 'SELECT * FROM models ORDER BY model_id ASC LIMIT $1',
    values: [51],
  });
});

test('every condition is a bind parameter, never interpolated', () => {
  const filter = normalizeFilter({
    vendor_id: "x'; DROP TABLE models;--",
    capability_tier: 'Tier_1',
    is_active: false,
    function_call_support: true,
    min_context_window: 10,
    max_cost_in_per_mil: 1.5,
    max_cost_out_per_mil: 2,
    sort: '-cost_in_per_mil',
    limit: 5,
  });
  const query = buildFilterQuery(filter, '*');
  assert.equal(
    query.text,
    'SELECT * FROM models WHERE vendor_id = $1 AND capability_tier = $2 AND is_active = $3 AND ' +
      'function_call_support = $4 AND context_window >= $5 AND cost_in_per_mil <= $6 AND cost_out_per_mil <= $7 ' +
      'ORDER BY cost_in_per_mil DESC, model_id DESC LIMIT $8',
  );
  assert.deepEqual(query.values, ["x'; DROP TABLE models;--", 'Tier_1', false, true, 10, 1.5, 2, 6]);
});

test('a cursor continues after the last row, in the sort it was made for', () => {
  const first = normalizeFilter({ sort: '-context_window', limit: 1 });
  const cursor = encodeCursor(first, model);
  const next = normalizeFilter({ sort: '-context_window', limit: 1, cursor });
  assert.deepEqual(next.after, { value: 4096, modelId: 'a/b' });
  const query = buildFilterQuery(next, '*');
  assert.match(
    query.text,
    /WHERE \(context_window, model_id\) < \(\$1::integer, \$2\) ORDER BY context_window DESC, model_id DESC/,
  );
  assert.deepEqual(query.values, [4096, 'a/b', 2]);

  const byId = normalizeFilter({ cursor: encodeCursor(normalizeFilter({}), model) });
  assert.deepEqual(buildFilterQuery(byId, '*').values, ['a/b', 51]);
  assert.match(buildFilterQuery(byId, '*').text, /WHERE model_id > \$1 ORDER BY model_id ASC LIMIT \$2/);
});

test('a cursor from another sort, or not a cursor at all, names the cursor field', () => {
  const cursor = encodeCursor(normalizeFilter({ sort: 'created_at' }), model);
  for (const input of [
    { sort: 'model_id', cursor },
    { cursor: 'bm90LWpzb24' },
    { cursor: Buffer.from('{"s":"model_id"}').toString('base64url') },
    { cursor: Buffer.from('null').toString('base64url') },
  ]) {
    assert.throws(
      () => normalizeFilter(input),
      (error: unknown) => error instanceof ValidationError && error.field === 'cursor',
    );
  }
});

test('equal filters share a cache key; different ones do not', () => {
  const a = filterCacheKey(normalizeFilter({ vendor_id: 'V', limit: 50 }));
  assert.equal(a, filterCacheKey(normalizeFilter({ vendor_id: 'V' })));
  assert.notEqual(a, filterCacheKey(normalizeFilter({ vendor_id: 'V', sort: '-model_id' })));
  assert.notEqual(a, filterCacheKey(normalizeFilter({ vendor_id: 'W' })));
});
