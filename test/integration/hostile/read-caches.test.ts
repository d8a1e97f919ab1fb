/**
 * Hostile (issue 17, item 1): a reader key made the process hold about 1.3 GB — 10,000 distinct
 * `GET /models?limit=200&max_cost_in_per_mil=<n>` pages, each kept by a cache bounded by its number of
 * entries, and expired entries never dropped. Now every read cache is bounded by the bytes it holds
 * (CACHE_MAX_BYTES, shared out by src/cache-budget.ts) and drops an entry when it expires.
 *
 * One row per case: what a client floods, and the bound that must hold. Here with a small budget, so
 * that a few hundred requests cross it; bench/abuse.ts floods the default one and measures the RSS.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { generateApiKey } from '../../../src/auth/api-key.ts';
import { cacheBudget } from '../../../src/cache-budget.ts';
import { build, modelBody, type TestApp } from '../../helper.ts';
import { type Row, rowTable } from '../../support/row-table.ts';
import { waitUntil } from '../../support/wait-until.ts';

const CACHE_MAX_BYTES = 4 * 1024 * 1024;
const budget = cacheBudget(CACHE_MAX_BYTES);
/** Models seeded, so that a page of 200 is about 65 KB of JSON (130 KB estimated). */
const MODELS = 200;

const [bounded, expiring] = await Promise.all([
  build({ after }, { CACHE_MAX_BYTES: String(CACHE_MAX_BYTES) }),
  build({ after }, { CACHE_MAX_BYTES: String(CACHE_MAX_BYTES), CACHE_TTL_MS: '500' }),
]);
for (const { app, keys } of [bounded, expiring]) {
  for (let i = 0; i < MODELS; i++) {
    const response = await app.inject({
      method: 'POST',
      url: '/models',
      headers: { 'x-api-key': keys.writer },
      payload: modelBody({ model_id: `flood/model-${i}`, cost_in_per_mil: 1 + i }),
    });
    assert.equal(response.statusCode, 201, response.body);
  }
}

/** Distinct full pages of models: each `max_cost_in_per_mil` a new cache key of the same 200 models. */
async function distinctPages({ app, keys }: TestApp, count: number, offset = 0): Promise<void> {
  for (let n = 0; n < count; n++) {
    const response = await app.inject({
      url: `/models?limit=200&max_cost_in_per_mil=${1000 + offset + n}`,
      headers: { 'x-api-key': keys.reader },
    });
    assert.equal(response.statusCode, 200);
    assert.equal((response.json() as { items: unknown[] }).items.length, MODELS);
  }
}

interface CacheRow extends Row {
  flood(): Promise<void>;
  check(): Promise<void> | void;
}

const rows: CacheRow[] = [
  {
    name: '300 distinct pages of 200 models: the filter cache stays within its share of CACHE_MAX_BYTES',
    flood: () => distinctPages(bounded, 300),
    check() {
      const { filters } = bounded.services.registry.cacheStats();
      assert.ok(filters.bytes <= budget.filters, `${filters.bytes} > ${budget.filters} bytes`);
      // Full, not off: it keeps what fits, the most recent pages.
      assert.ok(filters.bytes > budget.filters / 2, `${filters.bytes} bytes: the cache keeps pages`);
      assert.ok(filters.size > 0 && filters.size < 300, `${filters.size} pages kept of 300`);
      assert.equal(filters.misses, 300);
    },
  },
  {
    name: 'the last pages read are the ones kept: read again, they are hits',
    async flood() {
      await distinctPages(bounded, 3, 299 - 2);
    },
    check() {
      const { filters } = bounded.services.registry.cacheStats();
      assert.equal(filters.hits, 3);
    },
  },
  {
    name: '3,000 made-up API keys (room for about 1,400): the key cache stays within its share, and every one is refused',
    async flood() {
      const { app } = bounded;
      for (let i = 0; i < 3000; i++) {
        const response = await app.inject({
          url: '/models?limit=1',
          headers: { 'x-api-key': generateApiKey() },
        });
        assert.equal(response.statusCode, 401);
      }
    },
    check() {
      const { size, bytes } = bounded.services.apiKeys.cacheStats();
      assert.ok(bytes <= budget.apiKeys, `${bytes} > ${budget.apiKeys} bytes`);
      assert.ok(size < 3000, `${size} keys remembered`);
    },
  },
  {
    name: 'expired pages are dropped from memory when they expire, with no request to evict them',
    async flood() {
      await distinctPages(expiring, 10);
      assert.ok(expiring.services.registry.cacheStats().filters.size > 0);
    },
    async check() {
      await waitUntil(
        'the expired pages dropped',
        () => {
          const { filters } = expiring.services.registry.cacheStats();
          return filters.size === 0 && filters.bytes === 0;
        },
        5000,
      );
      const { filters } = expiring.services.registry.cacheStats();
      assert.equal(filters.misses, 10, 'no request came in to evict them');
    },
  },
];

rowTable('read caches under a flood', rows, async (row) => {
  await row.flood();
  await row.check();
});
