/**
 * The dashboard's producer with stand-in sources (plain functions: the feed's contract), on real timers:
 * no ticking without listeners, one text for all listeners, and a database that never answers is shown
 * down within the lookup time-out while the ticks go on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackgroundValue } from '../../../src/dashboard-feed/background-value.ts';
import { DashboardFeed, type DashboardSources } from '../../../src/dashboard-feed/dashboard-feed.ts';
import { LiveWindow } from '../../../src/dashboard-feed/live-window.ts';
import { RecentErrors } from '../../../src/dashboard-feed/recent-errors.ts';

function sources(overrides: Partial<DashboardSources> = {}): DashboardSources {
  return {
    window: new LiveWindow(),
    errors: new RecentErrors(),
    pingDatabase: async () => 1,
    deadLetters: async () => 3,
    ledger: async (from, to) => ({
      from: from.toISOString(),
      to: to.toISOString(),
      emitted: 0,
      spooled: 0,
      dropped: 0,
      confirmed: 0,
      unconfirmed: 0,
      consumers: [],
    }),
    ...overrides,
  };
}

test('the feed ticks only while someone listens, and every listener gets the same text', async () => {
  const feed = new DashboardFeed(sources(), { intervalMs: 50 });
  await sleep(200);
  assert.equal(feed.ticks, 0, 'no listener, no work');
  const a: string[] = [];
  const b: string[] = [];
  const stopA = feed.subscribe((text) => a.push(text));
  const stopB = feed.subscribe((text) => b.push(text));
  await sleep(300);
  stopA();
  stopB();
  assert.ok(a.length >= 3, `${a.length} snapshots`);
  assert.deepEqual(a, b);
  const ticks = feed.ticks;
  await sleep(200);
  assert.equal(feed.ticks, ticks, 'stopped with the last listener');
  const last = JSON.parse(a.at(-1) as string);
  assert.equal(last.checks.postgres, 'up');
  assert.equal(last.dead_letters.value, 3);
  assert.equal(last.checks.broker, 'off');
});

test('a database that does not answer is down within the lookup time-out, the ticks go on, and it recovers', async () => {
  let answer = false;
  const feed = new DashboardFeed(
    sources({
      pingDatabase: () => (answer ? Promise.resolve(1) : new Promise(() => {})),
      deadLetters: () => new Promise(() => {}),
    }),
    { intervalMs: 50, lookupTimeoutMs: 150 },
  );
  const seen: Array<{
    at: number;
    snapshot: { checks: { postgres: string }; dead_letters: { stale: boolean } };
  }> = [];
  const stop = feed.subscribe((text) => seen.push({ at: Date.now(), snapshot: JSON.parse(text) }));
  const started = Date.now();
  await sleep(400);
  const down = seen.find((entry) => entry.snapshot.checks.postgres === 'down');
  assert.ok(down, 'reported down');
  assert.ok(down.at - started < 350, `down after ${down.at - started} ms`);
  assert.ok(seen.length >= 6, `still ticking: ${seen.length}`);
  assert.equal(seen.at(-1)?.snapshot.dead_letters.stale, true);
  stop();
  // The hanging ping is still in flight: a new one starts only once it settles (none pile up).
  answer = true;
  const recovering = new DashboardFeed(sources(), { intervalMs: 50 });
  const texts: string[] = [];
  const stop2 = recovering.subscribe((text) => texts.push(text));
  await sleep(200);
  stop2();
  assert.equal(JSON.parse(texts.at(-1) as string).checks.postgres, 'up');
});

test('a background value loads once at a time and keeps its last good value when a load fails', async () => {
  let loads = 0;
  let fail = false;
  let release: () => void = () => {};
  const value = new BackgroundValue({
    load: () => {
      loads++;
      if (fail) return Promise.reject(new Error('refused'));
      return new Promise<number>((resolve) => {
        release = () => resolve(loads);
      });
    },
    refreshMs: 0,
    timeoutMs: 50,
  });
  value.refresh(Date.now());
  value.refresh(Date.now());
  assert.equal(loads, 1, 'one in flight');
  assert.equal(value.read(Date.now()).stale, true);
  await sleep(80);
  assert.match(String(value.read(Date.now()).error), /no answer within 50 ms/);
  release();
  await sleep(0);
  assert.deepEqual(
    { value: value.read(Date.now()).value, stale: value.read(Date.now()).stale },
    { value: 1, stale: false },
  );
  fail = true;
  value.refresh(Date.now());
  await sleep(0);
  const reading = value.read(Date.now());
  assert.equal(reading.value, 1);
  assert.equal(reading.stale, true);
  assert.equal(reading.error, 'refused');
});
