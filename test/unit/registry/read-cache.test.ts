import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReadCache } from '../../../src/registry/read-cache.ts';

test('a miss loads and caches; a hit does not load', async () => {
  const cache = new ReadCache<{ n: number }>({ ttlMs: 60_000, maxBytes: 1_000_000 });
  let loads = 0;
  const load = async () => ({ n: ++loads });
  assert.deepEqual(await cache.read('k', load), { value: { n: 1 }, hit: false });
  assert.deepEqual(await cache.read('k', load), { value: { n: 1 }, hit: true });
  // '{"n":1}' is 7 JSON characters, estimated at 14 bytes, and the key 'k' at 2.
  assert.deepEqual(cache.stats(), { hits: 1, misses: 1, size: 1, bytes: 16 });
});

test('undefined (not found) is not cached', async () => {
  const cache = new ReadCache<{ n: number }>({ ttlMs: 60_000, maxBytes: 1_000_000 });
  await cache.read('k', async () => undefined);
  assert.equal((await cache.read('k', async () => undefined)).hit, false);
  assert.equal(cache.stats().size, 0);
});

test('a load that raced an invalidation does not put its stale value back', async () => {
  const cache = new ReadCache<{ v: string }>({ ttlMs: 60_000, maxBytes: 1_000_000 });
  let release: () => void = () => {};
  const slow = cache.read(
    'k',
    () =>
      new Promise<{ v: string }>((resolve) => {
        release = () => resolve({ v: 'stale' });
      }),
  );
  cache.delete('k');
  release();
  assert.deepEqual((await slow).value, { v: 'stale' });
  const next = await cache.read('k', async () => ({ v: 'fresh' }));
  assert.deepEqual(next, { value: { v: 'fresh' }, hit: false });
});

test('clear drops everything; a TTL of 0 disables caching', async () => {
  const cache = new ReadCache<{ v: number }>({ ttlMs: 60_000, maxBytes: 1_000_000 });
  await cache.read('a', async () => ({ v: 1 }));
  await cache.read('b', async () => ({ v: 2 }));
  cache.clear();
  assert.equal(cache.stats().size, 0);
  const off = new ReadCache<{ v: number }>({ ttlMs: 0, maxBytes: 1_000_000 });
  await off.read('a', async () => ({ v: 1 }));
  assert.equal((await off.read('a', async () => ({ v: 1 }))).hit, false);
});

test('the least recently used entry goes first', async () => {
  // Room for two entries of 16 estimated bytes.
  const cache = new ReadCache<{ v: number }>({ ttlMs: 60_000, maxBytes: 32 });
  await cache.read('a', async () => ({ v: 1 }));
  await cache.read('b', async () => ({ v: 2 }));
  await cache.read('a', async () => ({ v: 1 }));
  await cache.read('c', async () => ({ v: 3 }));
  assert.equal((await cache.read('a', async () => ({ v: 0 }))).hit, true);
  assert.equal((await cache.read('b', async () => ({ v: 0 }))).hit, false);
});

test('concurrent misses of one key share one load, unless an invalidation came in between', async () => {
  const cache = new ReadCache<{ n: number }>({ ttlMs: 60_000, maxBytes: 1_000_000 });
  let loads = 0;
  const releases: (() => void)[] = [];
  const load = () =>
    new Promise<{ n: number }>((resolve) => {
      const n = ++loads;
      releases.push(() => resolve({ n }));
    });
  const first = cache.read('k', load);
  const second = cache.read('k', load);
  assert.equal(loads, 1);
  cache.delete('k');
  const third = cache.read('k', load);
  assert.equal(loads, 2);
  for (const release of releases) release();
  assert.deepEqual((await first).value, { n: 1 });
  assert.deepEqual((await second).value, { n: 1 });
  assert.deepEqual((await third).value, { n: 2 });
  assert.deepEqual(await cache.read('k', load), { value: { n: 2 }, hit: true });
});

test('a failed load fails every reader that shared it, and the next read tries again', async () => {
  const cache = new ReadCache<{ n: number }>({ ttlMs: 60_000, maxBytes: 1_000_000 });
  let fail: (error: Error) => void = () => {};
  const failing = () =>
    new Promise<{ n: number }>((_resolve, reject) => {
      fail = reject;
    });
  const a = cache.read('k', failing);
  const b = cache.read('k', failing);
  fail(new Error('down'));
  await assert.rejects(a, /down/);
  await assert.rejects(b, /down/);
  assert.deepEqual(await cache.read('k', async () => ({ n: 7 })), { value: { n: 7 }, hit: false });
});

test('bounded by estimated bytes, whatever the number of entries; one larger than the bound is not kept', async () => {
  const cache = new ReadCache<{ text: string }>({ ttlMs: 60_000, maxBytes: 100_000 });
  for (let i = 0; i < 1000; i++) await cache.read(`page-${i}`, async () => ({ text: 'x'.repeat(1000) }));
  const { size, bytes } = cache.stats();
  assert.ok(bytes <= 100_000, `${bytes} bytes`);
  assert.ok(size > 0 && size < 100, `${size} entries`);
  await cache.read('huge', async () => ({ text: 'x'.repeat(60_000) }));
  assert.equal((await cache.read('huge', async () => ({ text: '' }))).hit, false);
  assert.ok(cache.stats().bytes <= 100_000);
});

test('expired entries are dropped when they expire, not held until evicted', async () => {
  const cache = new ReadCache<{ v: number }>({ ttlMs: 30, maxBytes: 1_000_000 });
  for (let i = 0; i < 50; i++) await cache.read(`k${i}`, async () => ({ v: i }));
  assert.equal(cache.stats().size, 50);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.deepEqual({ size: cache.stats().size, bytes: cache.stats().bytes }, { size: 0, bytes: 0 });
});
