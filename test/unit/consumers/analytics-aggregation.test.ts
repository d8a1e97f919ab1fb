import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import type { EventOf, TelemetryEvent } from '../../../src/bus/event-schemas.ts';
import { aggregateEvents, hourOf } from '../../../src/consumers/analytics/analytics-aggregation.ts';
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
