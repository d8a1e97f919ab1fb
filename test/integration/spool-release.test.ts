/**
 * A spool written by an earlier release (test/fixtures/spool-release/, written by 4552c8d, whose
 * publisher ran on the request thread) is read and drained by this one, whose publisher runs in a thread
 * of its own: every event it left unconfirmed reaches its queues exactly once, with the producer stamp
 * and headers it was written with, no confirmed one is sent again, and the spool ends empty.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventBus } from '../../src/bus/event-bus.ts';
import type { EventType } from '../../src/bus/event-types.ts';
import { PRODUCER_HEADERS } from '../../src/bus/producer-sequence.ts';
import { buildTopology, exchangeFor, queuesFor } from '../../src/bus/topology.ts';
import { readQueues } from '../support/queue-reader.ts';
import { createTestVhost } from '../support/rabbitmq-vhost.ts';
import { waitUntil } from '../support/wait-until.ts';

interface Release {
  release: string;
  segmentBytes: number;
  confirmedOffset: number;
  nextOffset: number;
  events: Array<{ offset: number; event_id: string; event_type: EventType }>;
}

const fixture = new URL('../fixtures/spool-release/', import.meta.url);
const release = JSON.parse(readFileSync(new URL('release.json', fixture), 'utf8')) as Release;

test(`a spool written by ${release.release} is drained by this release: each unconfirmed event once, no confirmed one`, async () => {
  const vhost = await createTestVhost({ after });
  const dataDir = mkdtempSync(join(tmpdir(), 'tb-spool-release-'));
  after(() => rmSync(dataDir, { recursive: true, force: true }));
  cpSync(new URL('spool/', fixture), join(dataDir, 'spool'), { recursive: true });

  const topology = buildTopology();
  const unconfirmed = release.events.filter((event) => event.offset > release.confirmedOffset);
  const confirmed = new Set(
    release.events.filter((event) => event.offset <= release.confirmedOffset).map((event) => event.event_id),
  );
  assert.ok(unconfirmed.length > 0 && confirmed.size > 0, 'the fixture holds both kinds');
  // Each event's queues, as the topology routes it (a partitioned queue's partitions are read as one).
  const queuesOf = (type: EventType) => queuesFor(topology, exchangeFor(type), type);
  const queues = [...new Set(release.events.flatMap((event) => queuesOf(event.event_type)))];

  const bus = EventBus.open({
    dataDir,
    rabbitmqUrls: [vhost.url],
    topology,
    spoolSegmentBytes: release.segmentBytes,
  });
  let closed = false;
  after(async () => {
    if (!closed) await bus.close(0);
  });
  assert.equal(bus.status().publisherThread?.state, 'running', 'published from its own thread');
  assert.equal(bus.status().spool.confirmedOffset, release.confirmedOffset);
  assert.equal(bus.status().spool.nextOffset, release.nextOffset);
  await waitUntil('the spool to drain', () => bus.status().spool.unconfirmed === 0, 30_000);
  const reader = await readQueues(vhost.url, queues);
  after(() => reader.close());
  const expected = unconfirmed.reduce((sum, event) => sum + queuesOf(event.event_type).length, 0);
  await reader.waitFor(expected, 30_000);
  await sleep(300);

  const byId = new Map<string, string[]>();
  for (const message of reader.messages()) {
    const id = String(message.properties.messageId);
    byId.set(id, [...(byId.get(id) ?? []), message.queue]);
  }
  for (const event of unconfirmed) {
    assert.deepEqual(
      (byId.get(event.event_id) ?? []).sort(),
      queuesOf(event.event_type).sort(),
      `event ${event.offset} (${event.event_type}) in each of its queues once`,
    );
  }
  for (const id of byId.keys()) assert.ok(!confirmed.has(id), `confirmed event ${id} was sent again`);
  assert.equal(byId.size, unconfirmed.length);
  const first = reader
    .messages()
    .find((message) => message.properties.messageId === unconfirmed[0]?.event_id);
  assert.ok(first !== undefined);
  assert.equal(first.properties.headers?.['cloudEvents:id'], unconfirmed[0]?.event_id);
  assert.match(String(first.properties.headers?.[PRODUCER_HEADERS.producer]), /^[0-9a-f-]{36}$/);
  assert.equal(typeof first.properties.headers?.[PRODUCER_HEADERS.sequence], 'number');

  assert.equal(await bus.close(5000), 0);
  closed = true;
  assert.equal(bus.status().spool.unconfirmed, 0);
  assert.equal(bus.status().spool.corruptRecords + bus.status().spool.tornRecords, 0);
});
