import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LedgerCounts, minuteOf } from '../../../src/bus/ledger-counts.ts';
import { appliedRows } from '../../../src/ledger/applied-rows.ts';
import { type LedgerCountRow, summarizeLedger } from '../../../src/ledger/ledger-summary.ts';
import { exampleEvent } from '../../support/event-examples.ts';

test('minuteOf truncates to the start of the minute, before 1970 too', () => {
  assert.equal(minuteOf(Date.parse('2026-11-28T10:41:59.999Z')), Date.parse('2026-11-28T10:41:00.000Z'));
  assert.equal(minuteOf(Date.parse('2026-11-28T10:41:00.000Z')), Date.parse('2026-11-28T10:41:00.000Z'));
  assert.equal(minuteOf(-1), -60_000);
});

test('counts add up per stage, minute and type; drain empties, restore adds back', () => {
  const counts = new LedgerCounts();
  const t = Date.parse('2026-11-28T10:41:30Z');
  counts.add('emitted', 'api.request', t);
  counts.add('emitted', 'api.request', t + 29_000);
  counts.add('emitted', 'api.request', t + 30_000);
  counts.add('spooled', 'api.request', t);
  const rows = counts.drain();
  assert.equal(counts.size, 0);
  const find = (stage: string, minute: string) =>
    rows.find((row) => row.stage === stage && row.minuteMs === Date.parse(minute))?.events;
  assert.equal(find('emitted', '2026-11-28T10:41:00Z'), 2);
  assert.equal(find('emitted', '2026-11-28T10:42:00Z'), 1);
  assert.equal(find('spooled', '2026-11-28T10:41:00Z'), 1);
  counts.add('emitted', 'api.request', t);
  counts.restore(rows);
  assert.equal(
    counts
      .drain()
      .find((row) => row.stage === 'emitted' && row.minuteMs === Date.parse('2026-11-28T10:41:00Z'))?.events,
    3,
  );
});

test('applied rows group a batch by minute and type, and skip raw messages', () => {
  const a = exampleEvent('model.updated', { timestamp: '2026-11-28T10:41:01.000Z' });
  const b = exampleEvent('model.updated', { timestamp: '2026-11-28T10:41:59.000Z' });
  const c = exampleEvent('api.error', { timestamp: '2026-11-28T10:42:00.000Z' });
  const rows = appliedRows('audit', [a, b, undefined, c]);
  assert.deepEqual(
    rows.map((row) => [
      new Date(row.minuteMs).toISOString(),
      row.eventType,
      row.events,
      row.consumer,
      row.stage,
    ]),
    [
      ['2026-11-28T10:41:00.000Z', 'model.updated', 2, 'audit', 'applied'],
      ['2026-11-28T10:42:00.000Z', 'api.error', 1, 'audit', 'applied'],
    ],
  );
});

test('each consumer expects the spooled events of the types its queue is bound to', () => {
  const spooled = (event_type: string, events: number): LedgerCountRow => ({
    stage: 'spooled',
    consumer: '',
    event_type,
    events,
    ahead: 0,
  });
  const rows: LedgerCountRow[] = [
    { stage: 'emitted', consumer: '', event_type: 'api.request', events: 101, ahead: 0 },
    { stage: 'emitted', consumer: '', event_type: 'model.registered', events: 10, ahead: 0 },
    { stage: 'emitted', consumer: '', event_type: 'api.error', events: 5, ahead: 0 },
    spooled('api.request', 100),
    spooled('model.registered', 10),
    spooled('api.error', 5),
    { stage: 'confirmed', consumer: '', event_type: 'api.request', events: 90, ahead: 0 },
    { stage: 'applied', consumer: 'audit', event_type: 'model.registered', events: 10, ahead: 0 },
    { stage: 'applied', consumer: 'audit', event_type: 'api.error', events: 4, ahead: 0 },
    { stage: 'applied', consumer: 'logging', event_type: 'api.error', events: 5, ahead: 0 },
  ];
  const summary = summarizeLedger(rows);
  assert.equal(summary.emitted, 116);
  assert.equal(summary.spooled, 115);
  assert.equal(summary.dropped, 1);
  assert.equal(summary.confirmed, 90);
  assert.equal(summary.unconfirmed, 25);
  const of = (name: string) => summary.consumers.find((c) => c.consumer === name);
  // api.request goes only to metrics; model events to audit, analytics and metrics; errors to audit,
  // logging and metrics.
  assert.deepEqual(of('audit'), {
    consumer: 'audit',
    queue: 'audit.trail',
    expected: 15,
    applied: 14,
    missing: 1,
    applied_unflushed: 0,
  });
  assert.deepEqual(of('analytics'), {
    consumer: 'analytics',
    queue: 'analytics.events',
    expected: 10,
    applied: 0,
    missing: 10,
    applied_unflushed: 0,
  });
  assert.deepEqual(of('logging'), {
    consumer: 'logging',
    queue: 'logging.errors',
    expected: 5,
    applied: 5,
    missing: 0,
    applied_unflushed: 0,
  });
  assert.deepEqual(of('metrics'), {
    consumer: 'metrics',
    queue: 'metrics.updates',
    expected: 115,
    applied: 0,
    missing: 115,
    applied_unflushed: 0,
  });
});

test('a consumer ahead of the API’s flushed count: never a negative gap, and one minute cannot hide another', () => {
  const row = (
    stage: LedgerCountRow['stage'],
    consumer: string,
    events: number,
    ahead = 0,
  ): LedgerCountRow => ({
    stage,
    consumer,
    event_type: 'model.updated',
    events,
    ahead,
  });
  // Minute 1: 100 spooled and flushed, 100 applied. Minute 2: 30 spooled so far (the API's next flush
  // has 20 more), 50 applied — 20 ahead. Audit alone: 130 expected, 150 applied.
  const ahead = summarizeLedger([row('spooled', '', 130), row('applied', 'audit', 150, 20)]);
  const audit = ahead.consumers.find((c) => c.consumer === 'audit');
  assert.deepEqual(
    { missing: audit?.missing, applied_unflushed: audit?.applied_unflushed },
    { missing: 0, applied_unflushed: 20 },
  );
  // Minute 1: 100 spooled, 90 applied (10 missing). Minute 2: 30 spooled, 50 applied (20 ahead). The
  // plain difference, 130 − 140 = −10, would hide the 10 missing of minute 1.
  const hidden = summarizeLedger([row('spooled', '', 130), row('applied', 'audit', 140, 20)]);
  const audit2 = hidden.consumers.find((c) => c.consumer === 'audit');
  assert.deepEqual(
    { missing: audit2?.missing, applied_unflushed: audit2?.applied_unflushed },
    { missing: 10, applied_unflushed: 20 },
  );
});
