import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LiveWindow, quantile } from '../../../src/dashboard-feed/live-window.ts';

const SECOND = 1_800_000_000;

test('quantile is the nearest rank', () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(quantile(values, 0.5), 50);
  assert.equal(quantile(values, 0.95), 95);
  assert.equal(quantile(values, 0.99), 99);
  assert.equal(quantile([7], 0.99), 7);
  assert.equal(quantile([], 0.5), null);
});

test('a second holds its requests by type, its percentiles and its 4xx/5xx; seconds without traffic are zeros', () => {
  const window = new LiveWindow({ seconds: 60 });
  for (let i = 1; i <= 100; i++) {
    window.record({ type: 'model.queried', durationMs: i, status: 200, atMs: SECOND * 1000 + i });
  }
  window.record({ type: 'api.error', durationMs: 3, status: 404, atMs: SECOND * 1000 + 500 });
  window.record({ type: 'api.error', durationMs: 2, status: 503, atMs: SECOND * 1000 + 999 });
  window.record({ type: 'api.request', durationMs: 1, status: 200, atMs: (SECOND + 2) * 1000 });

  const points = window.points((SECOND + 3) * 1000, SECOND);
  assert.deepEqual(
    points.map((p) => p.t),
    [SECOND, SECOND + 1, SECOND + 2],
  );
  const [first, empty, third] = points;
  assert.deepEqual(first?.events, { 'model.queried': 100, 'api.error': 2 });
  assert.equal(first?.requests, 102);
  assert.equal(first?.errors4xx, 1);
  assert.equal(first?.errors5xx, 1);
  // 102 samples: 1…100, 2 and 3 → the 51st is 49, the 97th 95, the 101st 99.
  assert.equal(first?.p50, 49);
  assert.equal(first?.p95, 95);
  assert.equal(first?.p99, 99);
  assert.deepEqual(empty, {
    t: SECOND + 1,
    requests: 0,
    events: {},
    p50: null,
    p95: null,
    p99: null,
    errors4xx: 0,
    errors5xx: 0,
  });
  assert.equal(third?.requests, 1);
});

test('the current second is not reported until it is over, and old seconds fall out of the window', () => {
  const window = new LiveWindow({ seconds: 10 });
  window.record({ type: 'api.request', durationMs: 1, status: 200, atMs: SECOND * 1000 });
  assert.equal(window.points(SECOND * 1000 + 999).at(-1)?.t, SECOND - 1);
  assert.equal(window.points((SECOND + 1) * 1000).at(-1)?.requests, 1);
  const later = window.points((SECOND + 20) * 1000);
  // Ten slots: the nine seconds before the current one, which is still open.
  assert.equal(later.length, 9);
  assert.ok(later.every((point) => point.requests === 0));
  // A slot reused by a later second starts from nothing.
  window.record({ type: 'api.request', durationMs: 1, status: 200, atMs: (SECOND + 10) * 1000 });
  assert.equal(window.points((SECOND + 11) * 1000).at(-1)?.requests, 1);
});

test('beyond the sample cap the percentiles come from a uniform sample and the counts stay exact', () => {
  const window = new LiveWindow({ samplesPerSecond: 1000 });
  for (let i = 0; i < 20_000; i++) {
    window.record({
      type: 'api.request',
      durationMs: i % 100,
      status: 200,
      atMs: SECOND * 1000 + (i % 1000),
    });
  }
  const [point] = window.points((SECOND + 1) * 1000, SECOND);
  assert.equal(point?.requests, 20_000);
  // Uniform 0…99: a 1,000-sample reservoir puts the median within a few ranks of 49.
  assert.ok(Math.abs((point?.p50 ?? 0) - 49) <= 6, `p50 ${point?.p50}`);
  assert.ok((point?.p99 ?? 0) >= 95, `p99 ${point?.p99}`);
});
