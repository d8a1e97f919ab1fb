import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PeriodicTask } from '../../../src/consumers/periodic-task.ts';

test('runs at start and every interval, never two runs at once; stop waits for the run in progress', async () => {
  let runs = 0;
  let concurrent = 0;
  let mostConcurrent = 0;
  let finished = 0;
  const task = new PeriodicTask(async () => {
    runs++;
    concurrent++;
    mostConcurrent = Math.max(mostConcurrent, concurrent);
    await sleep(35); // longer than the interval: the ticks meanwhile are skipped
    concurrent--;
    finished++;
  }, 10);
  task.start();
  task.start(); // a second start changes nothing
  assert.equal(runs, 1, 'the first run starts at once');
  await sleep(120);
  await task.stop();
  assert.equal(task.stopped, true);
  assert.equal(mostConcurrent, 1);
  assert.ok(runs >= 2, `ran again after the first (${runs})`);
  assert.equal(finished, runs, 'stop() waited for the run in progress');
  const after = runs;
  await sleep(40);
  assert.equal(runs, after, 'no run after stop()');
});

test('a failed run does not stop the schedule', async () => {
  let runs = 0;
  const task = new PeriodicTask(async () => {
    runs++;
    throw new Error('boom');
  }, 10);
  task.start();
  await sleep(60);
  await task.stop();
  assert.ok(runs >= 2, `kept running after a failure (${runs})`);
});
