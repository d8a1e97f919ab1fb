/**
 * The publisher thread names itself and reports its OS thread id, so its CPU can be read apart from the
 * request thread's (/proc/<pid>/task/<tid>/stat; GET /health shows it as publisher.thread.tid). No broker
 * is needed: the thread runs (and retries a broker that is not there) all the same.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EventBus } from '../../../src/bus/event-bus.ts';
import { buildTopology } from '../../../src/bus/topology.ts';
import { waitUntil } from '../../support/wait-until.ts';

test('the publisher thread reports its tid, a thread of this process named tb-publisher', async (t) => {
  if (process.platform !== 'linux') return t.skip('/proc/thread-self is Linux');
  const dataDir = mkdtempSync(join(tmpdir(), 'tb-thread-tid-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  // Port 1: nothing listens; the thread keeps retrying, which is all this test needs of it.
  const bus = EventBus.open({ dataDir, rabbitmqUrls: ['amqp://127.0.0.1:1'], topology: buildTopology() });
  let closed = false;
  after(async () => {
    if (!closed) await bus.close(0);
  });
  await waitUntil('the thread to report its tid', () => bus.status().publisherThread?.tid != null, 10_000);
  const tid = bus.status().publisherThread?.tid as number;
  assert.notEqual(tid, process.pid, 'not the request thread');
  assert.equal(readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim(), 'tb-publisher');
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  assert.match(stat, /^\d+ \(tb-publisher\) /, 'its CPU figures are readable under that tid');
  closed = true;
  await bus.close(0);
  assert.equal(bus.status().publisherThread?.tid, null, 'no tid once stopped');
});
