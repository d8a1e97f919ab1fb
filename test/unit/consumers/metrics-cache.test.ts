/** The cache of closed periods: a revision mismatch is a miss, and the bound evicts the oldest unused. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MetricsCache } from '../../../src/consumers/metrics/metrics-cache.ts';

test('an entry is used only at the revision it was read at', () => {
  const cache = new MetricsCache<string>();
  cache.set('day', 0, 'before', 10);
  assert.equal(cache.get('day', 0), 'before');
  assert.equal(cache.get('day', 1), undefined, 'a late event raised the revision');
  cache.set('day', 1, 'after', 10);
  assert.equal(cache.get('day', 1), 'after');
  assert.deepEqual(cache.stats(), { entries: 1, bytes: 10, hits: 2, misses: 1 });
});

test('over its bound it drops the oldest not used since; 0 bytes keeps nothing', () => {
  const cache = new MetricsCache<number>({ maxBytes: 30 });
  cache.set('a', 0, 1, 10);
  cache.set('b', 0, 2, 10);
  cache.set('c', 0, 3, 10);
  assert.equal(cache.get('a', 0), 1);
  cache.set('d', 0, 4, 10);
  assert.equal(cache.get('b', 0), undefined, 'b was the oldest not used since (a had a second chance)');
  assert.equal(cache.get('a', 0), 1);
  assert.equal(cache.stats().bytes, 30);
  const off = new MetricsCache<number>({ maxBytes: 0 });
  off.set('a', 0, 1, 10);
  assert.equal(off.get('a', 0), undefined);
});
