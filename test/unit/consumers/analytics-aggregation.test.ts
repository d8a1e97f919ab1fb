import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { EventOf, TelemetryEvent } from '../../../src/bus/event-schemas.ts';
import {
  aggregateEvents,
  hourOf,
  isNewer,
  type ModelActivityRow,
} from '../../../src/consumers/analytics/analytics-aggregation.ts';
import { exampleEvent } from '../../support/event-examples.ts';

const base = exampleEvent('model.queried');

function queried(modelId: string, timestamp: string, cacheHit: boolean | null, tier = 'Tier_1') {
  return exampleEvent('model.queried', {
    event_id: randomUUID(),
    timestamp,
    data: {
      ...base.data,
      model_id: modelId,
      capability_tier: tier as EventOf<'model.queried'>['data']['capability_tier'],
    },
    metadata: { ...base.metadata, cache_hit: cacheHit },
  });
}

function filtered(
  timestamp: string,
  filters: EventOf<'filter.executed'>['data']['filters'],
  resultCount: number,
  hasMore: boolean,
  cacheHit = false,
) {
  const example = exampleEvent('filter.executed');
  return exampleEvent('filter.executed', {
    event_id: randomUUID(),
    timestamp,
    data: { filters, result_count: resultCount, has_more: hasMore },
    metadata: { ...example.metadata, cache_hit: cacheHit },
  });
}

describe('hourOf', () => {
  test('truncates to the start of the UTC hour, on both sides of a boundary', () => {
    assert.equal(hourOf('2025-01-15T10:59:59.999Z'), '2025-01-15T10:00:00.000Z');
    assert.equal(hourOf('2025-01-15T11:00:00.000Z'), '2025-01-15T11:00:00.000Z');
    assert.equal(hourOf('2025-01-15T23:30:00.000Z'), '2025-01-15T23:00:00.000Z');
    assert.equal(hourOf('1969-12-31T23:59:59.999Z'), '1969-12-31T23:00:00.000Z');
  });

  test('an offset is converted to UTC first (India is +05:30: the UTC hour, not the local one)', () => {
    assert.equal(hourOf('2025-01-15T10:15:00.000+05:30'), '2025-01-15T04:00:00.000Z');
  });

  test('refuses what is not a timestamp', () => {
    assert.throws(() => hourOf('yesterday'), RangeError);
  });

  test('the same answers after a timestamp of the same hour (the last hour is remembered)', () => {
    assert.equal(hourOf('2025-01-15T10:15:00.000Z'), '2025-01-15T10:00:00.000Z');
    assert.equal(hourOf('2025-01-15T10:59:59Z'), '2025-01-15T10:00:00.000Z');
    assert.equal(hourOf('2025-01-15T10:15:00.000+05:30'), '2025-01-15T04:00:00.000Z');
    assert.equal(hourOf('2025-01-15T10:15:00.000Z'), '2025-01-15T10:00:00.000Z');
    assert.throws(() => hourOf('2025-01-15T10:61:00.000Z'), RangeError);
    assert.throws(() => hourOf('2025-01-15T10'), RangeError);
    assert.equal(hourOf('2025-01-15T10:30:00.000-01:00'), '2025-01-15T11:00:00.000Z');
  });
});

describe('aggregateEvents', () => {
  test('model reads: per hour, model, vendor and tier, with cache hits (null is not a hit)', () => {
    const aggregate = aggregateEvents([
      queried('b/model', '2025-01-15T10:00:00.000Z', true),
      queried('a/model', '2025-01-15T10:10:00.000Z', true),
      queried('a/model', '2025-01-15T10:59:59.999Z', false),
      queried('a/model', '2025-01-15T10:20:00.000Z', null),
      queried('a/model', '2025-01-15T11:00:00.000Z', true),
      // The same model after a move to another tier counts apart.
      queried('a/model', '2025-01-15T10:30:00.000Z', true, 'Tier_2'),
    ]);
    assert.deepEqual(aggregate.modelQueries, [
      {
        hour: '2025-01-15T10:00:00.000Z',
        modelId: 'a/model',
        vendorId: 'OpenAI',
        capabilityTier: 'Tier_1',
        queries: 3,
        cacheHits: 1,
      },
      {
        hour: '2025-01-15T10:00:00.000Z',
        modelId: 'a/model',
        vendorId: 'OpenAI',
        capabilityTier: 'Tier_2',
        queries: 1,
        cacheHits: 1,
      },
      {
        hour: '2025-01-15T10:00:00.000Z',
        modelId: 'b/model',
        vendorId: 'OpenAI',
        capabilityTier: 'Tier_1',
        queries: 1,
        cacheHits: 1,
      },
      {
        hour: '2025-01-15T11:00:00.000Z',
        modelId: 'a/model',
        vendorId: 'OpenAI',
        capabilityTier: 'Tier_1',
        queries: 1,
        cacheHits: 1,
      },
    ]);
    assert.deepEqual(aggregate.filterExecutions, []);
    assert.deepEqual(aggregate.lifecycle, []);
  });

  test('filters: totals per hour, the parameters used, and the values of the few-valued ones', () => {
    const hour = '2025-01-15T10:00:00.000Z';
    const aggregate = aggregateEvents([
      filtered(
        '2025-01-15T10:01:00.000Z',
        { vendor_id: 'OpenAI', capability_tier: 'Tier_1', sort: 'model_id', limit: 50, cursor: false },
        3,
        false,
        true,
      ),
      filtered(
        '2025-01-15T10:02:00.000Z',
        { vendor_id: 'Anthropic', is_active: true, sort: '-context_window', limit: 10, cursor: true },
        10,
        true,
      ),
      filtered(
        '2025-01-15T10:03:00.000Z',
        { vendor_id: 'OpenAI', min_context_window: 1_000_000, sort: 'model_id', limit: 50 },
        0,
        false,
      ),
    ]);
    assert.deepEqual(aggregate.filterExecutions, [
      { hour, executions: 3, resultCountSum: 13, zeroResults: 1, hasMore: 1, cacheHits: 1 },
    ]);
    // cursor: false (and absent) is not a use of cursor; sort and limit are always there.
    assert.deepEqual(
      aggregate.filterParameters.map((row) => [row.parameter, row.executions]),
      [
        ['capability_tier', 1],
        ['cursor', 1],
        ['is_active', 1],
        ['limit', 3],
        ['min_context_window', 1],
        ['sort', 3],
        ['vendor_id', 3],
      ],
    );
    // No values for limit, min_context_window or cursor: numbers and flags are not counted by value.
    assert.deepEqual(
      aggregate.filterValues.map((row) => [row.parameter, row.value, row.executions]),
      [
        ['capability_tier', 'Tier_1', 1],
        ['is_active', 'true', 1],
        ['sort', '-context_window', 1],
        ['sort', 'model_id', 2],
        ['vendor_id', 'Anthropic', 1],
        ['vendor_id', 'OpenAI', 2],
      ],
    );
    assert.ok(aggregate.filterValues.every((row) => row.hour === hour));
  });

  test('lifecycle: per type, vendor and tier; an update that changed nothing is an event, not a change', () => {
    const updated = exampleEvent('model.updated');
    const aggregate = aggregateEvents([
      exampleEvent('model.registered', { event_id: randomUUID() }),
      exampleEvent('model.updated', { event_id: randomUUID() }),
      exampleEvent('model.updated', { event_id: randomUUID(), data: { ...updated.data, changed: false } }),
      exampleEvent('model.deactivated', { event_id: randomUUID() }),
    ]);
    const hour = '2025-01-15T10:00:00.000Z';
    const row = (eventType: string, events: number, changes: number) => ({
      hour,
      eventType,
      vendorId: 'OpenAI',
      capabilityTier: 'Tier_1',
      events,
      changes,
    });
    assert.deepEqual(aggregate.lifecycle, [
      row('model.deactivated', 1, 1),
      row('model.registered', 1, 1),
      row('model.updated', 2, 1),
    ]);
  });

  test('errors and other requests are not analytics: nothing is counted', () => {
    const aggregate = aggregateEvents([exampleEvent('api.error'), exampleEvent('api.request')]);
    assert.deepEqual(aggregate, {
      modelQueries: [],
      filterExecutions: [],
      filterParameters: [],
      filterValues: [],
      lifecycle: [],
      modelActivity: [],
    });
  });

  test('the order of the events does not matter, and a batch split in two adds up to the whole', () => {
    const events: TelemetryEvent[] = [];
    for (let index = 0; index < 300; index++) {
      const minute = (index * 7) % 180;
      const timestamp = new Date(Date.UTC(2025, 0, 15, 9, minute, index % 60)).toISOString();
      events.push(
        index % 3 === 0
          ? filtered(
              timestamp,
              { vendor_id: `v${index % 4}`, sort: 'model_id', limit: 50 },
              index % 5,
              index % 2 === 0,
            )
          : queried(`m/${index % 11}`, timestamp, index % 4 === 0),
      );
    }
    const whole = aggregateEvents(events);
    const reversed = aggregateEvents([...events].reverse());
    assert.deepEqual(reversed, whole);

    const first = aggregateEvents(events.slice(0, 123));
    const second = aggregateEvents(events.slice(123));
    const sum = new Map<string, number>();
    for (const row of [...first.modelQueries, ...second.modelQueries]) {
      const key = `${row.hour} ${row.modelId}`;
      sum.set(key, (sum.get(key) ?? 0) + row.queries);
    }
    assert.deepEqual(
      sum,
      new Map(whole.modelQueries.map((row) => [`${row.hour} ${row.modelId}`, row.queries])),
    );
    assert.equal(
      whole.modelQueries.reduce((total, row) => total + row.queries, 0),
      200,
    );
    assert.equal(
      whole.filterExecutions.reduce((total, row) => total + row.executions, 0),
      100,
    );
  });

  test('rows come out sorted by key (hour first), so concurrent writers lock in one order', () => {
    const aggregate = aggregateEvents([
      queried('z', '2025-01-15T12:00:00.000Z', false),
      queried('a', '2025-01-15T12:00:00.000Z', false),
      queried('m', '2025-01-15T09:00:00.000Z', false),
    ]);
    assert.deepEqual(
      aggregate.modelQueries.map((row) => `${row.hour} ${row.modelId}`),
      ['2025-01-15T09:00:00.000Z m', '2025-01-15T12:00:00.000Z a', '2025-01-15T12:00:00.000Z z'],
    );
  });
});

describe('model activity ("last seen")', () => {
  const MODEL = 'acme/model';
  const model = { ...exampleEvent('model.registered').data, model_id: MODEL };
  const at = (minute: number) => new Date(Date.UTC(2025, 0, 15, 10, minute)).toISOString();
  const version = (sequence: number, changes: Partial<typeof model> = {}) => ({
    ...model,
    ...changes,
    version: sequence,
    updated_at: at(sequence * 10),
  });

  // One model's history: every change at minute 10 × version, reads in between.
  const registered = exampleEvent('model.registered', {
    event_id: randomUUID(),
    timestamp: at(10),
    sequence: 1,
    data: version(1),
  });
  const readV1 = exampleEvent('model.queried', {
    event_id: randomUUID(),
    timestamp: at(12),
    sequence: 1,
    data: version(1),
  });
  const tierChanged = exampleEvent('model.updated', {
    event_id: randomUUID(),
    timestamp: at(20),
    sequence: 2,
    data: { ...version(2, { capability_tier: 'Tier_2' }), changed: true },
  });
  const readV2 = exampleEvent('model.queried', {
    event_id: randomUUID(),
    timestamp: at(25),
    sequence: 2,
    data: version(2, { capability_tier: 'Tier_2' }),
  });
  const deactivated = exampleEvent('model.deactivated', {
    event_id: randomUUID(),
    timestamp: at(30),
    sequence: 3,
    data: { ...version(3, { capability_tier: 'Tier_2', is_active: false }), changed: true },
  });
  // A no-op update after the deactivation: it repeats version 3.
  const noOp = exampleEvent('model.updated', {
    event_id: randomUUID(),
    timestamp: at(33),
    sequence: 3,
    data: { ...version(3, { capability_tier: 'Tier_2', is_active: false }), changed: false },
  });
  // A read served from a stale cache after the deactivation: newest read, old version.
  const staleRead = exampleEvent('model.queried', {
    event_id: randomUUID(),
    timestamp: at(40),
    sequence: 2,
    data: version(2, { capability_tier: 'Tier_2' }),
  });
  const history: TelemetryEvent[] = [registered, readV1, tierChanged, readV2, deactivated, noOp, staleRead];

  const expected: ModelActivityRow = {
    modelId: MODEL,
    sequence: 3,
    eventAt: at(33),
    eventType: 'model.updated',
    eventId: noOp.event_id,
    changedAt: at(30),
    vendorId: 'OpenAI',
    capabilityTier: 'Tier_2',
    isActive: false,
    lastQueriedAt: at(40),
  };

  test('the newest version wins; at one version the newest event; the newest read apart', () => {
    assert.deepEqual(aggregateEvents(history).modelActivity, [expected]);
  });

  test('the same row whatever the order: reversed, and every rotation of the history', () => {
    assert.deepEqual(aggregateEvents([...history].reverse()).modelActivity, [expected]);
    for (let shift = 1; shift < history.length; shift++) {
      const rotated = [...history.slice(shift), ...history.slice(0, shift)];
      assert.deepEqual(aggregateEvents(rotated).modelActivity, [expected], `rotation ${shift}`);
    }
  });

  test('an older change or a stale read after a newer one changes nothing but the read time', () => {
    const [row] = aggregateEvents([deactivated, tierChanged, registered, readV1]).modelActivity;
    assert.deepEqual(row, {
      modelId: MODEL,
      sequence: 3,
      eventAt: at(30),
      eventType: 'model.deactivated',
      eventId: deactivated.event_id,
      changedAt: at(30),
      vendorId: 'OpenAI',
      capabilityTier: 'Tier_2',
      isActive: false,
      lastQueriedAt: at(12),
    });
  });

  test('a duplicate (same event_id) is the same position: not newer than itself', () => {
    const position = { sequence: 3, eventAt: at(30), eventId: deactivated.event_id };
    assert.equal(isNewer(position, { ...position }), false);
    assert.deepEqual(
      aggregateEvents([deactivated, deactivated]).modelActivity,
      aggregateEvents([deactivated]).modelActivity,
    );
  });

  test('isNewer: sequence first, then timestamp (any offset), then event_id', () => {
    const a = {
      sequence: 2,
      eventAt: '2025-01-15T10:00:00.000Z',
      eventId: '00000000-0000-4000-8000-000000000002',
    };
    assert.equal(isNewer({ ...a, sequence: 3, eventAt: '2025-01-15T09:00:00.000Z' }, a), true);
    assert.equal(isNewer({ ...a, sequence: 1, eventAt: '2025-01-15T11:00:00.000Z' }, a), false);
    assert.equal(isNewer({ ...a, eventAt: '2025-01-15T10:00:00.001Z' }, a), true);
    // 11:00:00+02:00 is 09:00Z: earlier, whatever the text says.
    assert.equal(isNewer({ ...a, eventAt: '2025-01-15T11:00:00.000+02:00' }, a), false);
    assert.equal(isNewer({ ...a, eventId: '00000000-0000-4000-8000-000000000003' }, a), true);
    assert.equal(isNewer({ ...a, eventId: '00000000-0000-4000-8000-000000000001' }, a), false);
  });

  test('one row per model, sorted by model_id; filters and errors add none', () => {
    const other = (modelId: string) =>
      exampleEvent('model.queried', {
        event_id: randomUUID(),
        data: { ...exampleEvent('model.queried').data, model_id: modelId },
      });
    const aggregate = aggregateEvents([
      other('z'),
      exampleEvent('filter.executed'),
      other('a'),
      exampleEvent('api.error'),
      other('m'),
      other('a'),
    ]);
    assert.deepEqual(
      aggregate.modelActivity.map((row) => row.modelId),
      ['a', 'm', 'z'],
    );
  });

  test('a batch split in two, folded by isNewer and the later read, gives the whole batch', () => {
    const merge = (stored: ModelActivityRow, next: ModelActivityRow): ModelActivityRow => {
      const state = isNewer(next, stored) ? next : stored;
      const reads = [stored.lastQueriedAt, next.lastQueriedAt].filter(
        (time): time is string => time !== null,
      );
      const lastQueriedAt =
        reads.length === 0 ? null : reads.reduce((x, y) => (Date.parse(y) > Date.parse(x) ? y : x));
      return { ...state, lastQueriedAt };
    };
    for (let cut = 1; cut < history.length; cut++) {
      const [first] = aggregateEvents(history.slice(0, cut)).modelActivity;
      const [second] = aggregateEvents(history.slice(cut)).modelActivity;
      assert.ok(first && second);
      assert.deepEqual(merge(first, second), expected, `cut at ${cut}`);
      assert.deepEqual(merge(second, first), expected, `cut at ${cut}, applied the other way round`);
    }
  });
});
