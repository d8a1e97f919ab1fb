import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BLOCK,
  BLOCK_EVENT_TYPES,
  EXPECTED_STATUS,
  type MixContext,
  mixRequests,
  StatusTally,
} from '../../../bench/support/e2e-mix.ts';

const context = (): MixContext => ({
  seededIds: Array.from({ length: 100 }, (_, i) => `openai/bench-${i}`),
  tag: 'test',
  tally: new StatusTally(),
  registered: { next: 0 },
});

test('a block is the documented mix: 10 gets, 4 filters, 1 register, 2 updates, 1 deactivate, a 404 and a 400', () => {
  const counts: Record<string, number> = {};
  for (const kind of BLOCK) counts[kind] = (counts[kind] ?? 0) + 1;
  assert.deepEqual(counts, {
    get: 10,
    filter: 4,
    register: 1,
    update: 2,
    deactivate: 1,
    'missing (404)': 1,
    'invalid (400)': 1,
  });
  assert.equal(BLOCK_EVENT_TYPES.length, BLOCK.length);
  assert.equal(BLOCK_EVENT_TYPES.filter((type) => type === 'api.error').length, 2);
});

test('registrations get unique ids across connections, and a connection deactivates only what it registered', () => {
  const mix = context();
  const a = mixRequests(mix, 0, 2);
  const b = mixRequests(mix, 1, 2);
  const register = BLOCK.indexOf('register');
  const deactivate = BLOCK.indexOf('deactivate');
  const ids = [a, b, a].map((requests) => {
    const built = requests[register]?.setupRequest?.({}, {});
    return (JSON.parse(String(built?.body)) as { model_id: string }).model_id;
  });
  assert.equal(new Set(ids).size, 3);
  // Before its first 201 the connection deactivates a seeded model of its own; after it, its new model.
  const before = a[deactivate]?.setupRequest?.({}, {});
  assert.equal(before?.path, `/models/${encodeURIComponent('openai/bench-0')}/deactivate`);
  a[register]?.onResponse?.(201, JSON.stringify({ model_id: ids[0] }), {}, {});
  const after = a[deactivate]?.setupRequest?.({}, {});
  assert.equal(after?.path, `/models/${encodeURIComponent(ids[0] as string)}/deactivate`);
});

test('connections patch disjoint seeded models', () => {
  const mix = context();
  const update = BLOCK.indexOf('update');
  const targets = [0, 1, 2].map((client) => {
    const requests = mixRequests(mix, client, 3);
    return new Set(
      Array.from({ length: 50 }, () => requests[update]?.setupRequest?.({}, {})?.path as string),
    );
  });
  for (const [i, mine] of targets.entries()) {
    for (const [j, theirs] of targets.entries()) {
      if (i !== j) assert.equal([...mine].filter((path) => theirs.has(path)).length, 0);
    }
  }
});

test('StatusTally counts intended errors apart from unexpected statuses', () => {
  const tally = new StatusTally();
  tally.record('missing (404)', 404);
  tally.record('invalid (400)', 400);
  tally.record('get', 200);
  tally.record('get', 404);
  tally.record('register', 500);
  assert.equal(tally.total, 5);
  assert.equal(tally.intendedErrors, 2);
  assert.equal(tally.unexpected, 2);
  assert.deepEqual(tally.counts.get, { 200: 1, 404: 1 });
  assert.equal(EXPECTED_STATUS.register, 201);
});
