/**
 * The analytics consumer on the real broker and database: a known workload, published in small batches
 * and then published again, gives exactly the counts it should (duplicates applied once, an hour boundary
 * split at the millisecond) and each model's "last seen" state, and the query module reads them back as
 * the API serves them. Out-of-order delivery of one model's events: analytics-model-activity.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import type { EventOf, TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { aggregateEvents } from '../../src/consumers/analytics/analytics-aggregation.ts';
import { analyticsConsumer, writeAggregate } from '../../src/consumers/analytics/analytics-consumer.ts';
import { AnalyticsQuery } from '../../src/consumers/analytics/analytics-query.ts';
import { resolveTimeRange } from '../../src/time-range.ts';
import { consumerHarness } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';

// Small batches, so that one key is upserted by many transactions.
const harness = await consumerHarness({ after }, () => [analyticsConsumer()], { batchSize: 40 });
// The vendors filtered on are the registry's: a filter's vendor is recorded by name only then.
await harness.pool.query(
  `INSERT INTO models (model_id, vendor_id, capability_tier, context_window, cost_in_per_mil, cost_out_per_mil,
                       function_call_support, created_at, updated_at)
   SELECT 'registry/' || vendor, vendor, 'Tier_1', 1000, 1, 1, true, now(), now()
     FROM unnest($1::text[]) AS vendor`,
  [['OpenAI', 'Anthropic', 'Mistral']],
);
const analytics = new AnalyticsQuery(harness.pool);

type Tier = EventOf<'model.queried'>['data']['capability_tier'];
type Filters = EventOf<'filter.executed'>['data']['filters'];
const model = exampleEvent('model.queried').data;
const metadata = exampleEvent('model.queried').metadata;

function queried(
  modelId: string,
  timestamp: string,
  cacheHit: boolean,
  vendorId = 'OpenAI',
  tier: Tier = 'Tier_1',
) {
  return exampleEvent('model.queried', {
    event_id: randomUUID(),
    timestamp,
    data: { ...model, model_id: modelId, vendor_id: vendorId, capability_tier: tier },
    metadata: { ...metadata, cache_hit: cacheHit },
  });
}

function filtered(timestamp: string, filters: Filters, resultCount: number, hasMore: boolean) {
  return exampleEvent('filter.executed', {
    event_id: randomUUID(),
    timestamp,
    data: { filters, result_count: resultCount, has_more: hasMore },
  });
}

const at = (hour: number, minute: number, second = 0, ms = 0) =>
  new Date(Date.UTC(2025, 0, 15, hour, minute, second, ms)).toISOString();
const H10 = '2025-01-15T10:00:00.000Z';
const H11 = '2025-01-15T11:00:00.000Z';

/** The workload: counts chosen so that every expected number below is distinct and checkable by hand. */
function workload(): TelemetryEvent[] {
  const events: TelemetryEvent[] = [];
  // hot/a: 300 reads in 10:00 (every third a cache hit), the last at 10:59:59.999; 120 in 11:00, the
  // first at 11:00:00.000 (every other one a hit).
  for (let index = 0; index < 300; index++) {
    const time = index === 299 ? at(10, 59, 59, 999) : at(10, index % 59, index % 60);
    events.push(queried('hot/a', time, index % 3 === 0));
  }
  for (let index = 0; index < 120; index++) {
    events.push(queried('hot/a', index === 0 ? at(11, 0) : at(11, index % 60, 1), index % 2 === 0));
  }
  // warm/b: 200 reads in 10:00, Anthropic Tier_2, never cached.
  for (let index = 0; index < 200; index++) {
    events.push(queried('warm/b', at(10, index % 60, 30), false, 'Anthropic', 'Tier_2'));
  }
  // cold/c: 50 reads in 11:00, all cached, as Tier_3 — and 10 earlier, in 10:00, as Tier_4.
  for (let index = 0; index < 50; index++)
    events.push(queried('cold/c', at(11, 30, index), true, 'OpenAI', 'Tier_3'));
  for (let index = 0; index < 10; index++)
    events.push(queried('cold/c', at(10, 5, index), true, 'OpenAI', 'Tier_4'));
  // 100 filters in 10:00: 60 by vendor OpenAI (10 results, has more), 40 by tier Tier_2 with a cursor
  // (0 results); 30 in 11:00 with nothing but the defaults (5 results).
  for (let index = 0; index < 60; index++) {
    events.push(
      filtered(at(10, index % 60, 10), { vendor_id: 'OpenAI', sort: 'model_id', limit: 10 }, 10, true),
    );
  }
  for (let index = 0; index < 40; index++) {
    events.push(
      filtered(
        at(10, index % 60, 20),
        { capability_tier: 'Tier_2', sort: '-context_window', limit: 50, cursor: true },
        0,
        false,
      ),
    );
  }
  for (let index = 0; index < 30; index++) {
    events.push(filtered(at(11, index, 40), { sort: 'model_id', limit: 50, cursor: false }, 5, false));
  }
  // Lifecycle: 3 registrations, 2 updates of which one changed nothing, 1 deactivation.
  const updated = exampleEvent('model.updated').data;
  for (let index = 0; index < 3; index++)
    events.push(exampleEvent('model.registered', { event_id: randomUUID() }));
  events.push(exampleEvent('model.updated', { event_id: randomUUID() }));
  events.push(
    exampleEvent('model.updated', { event_id: randomUUID(), data: { ...updated, changed: false } }),
  );
  events.push(exampleEvent('model.deactivated', { event_id: randomUUID() }));
  return events;
}

const events = workload();
const counters = () => harness.runtime.status().find((status) => status.name === 'analytics')?.counters;

async function rows<T>(text: string): Promise<T[]> {
  return (await harness.pool.query(text)).rows as T[];
}

describe('the analytics consumer', () => {
  test('a known workload, published twice, gives exact counts: duplicates are applied once', async () => {
    await harness.publish(events);
    await harness.waitUntil('all applied', () => (counters()?.applied ?? 0) >= events.length);
    // Again, shuffled: the same event ids, redelivered in another order.
    await harness.publish([...events].sort(() => Math.random() - 0.5));
    await harness.waitUntil('all seen as duplicates', () => (counters()?.duplicates ?? 0) >= events.length);
    assert.equal(counters()?.applied, events.length);
    assert.equal(counters()?.deadLettered, 0);
    assert.equal(counters()?.poison, 0);

    assert.deepEqual(
      await rows(
        `SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24:MI') AS hour, model_id, vendor_id, capability_tier,
                queries::int, cache_hits::int
         FROM analytics_model_queries ORDER BY hour, model_id, capability_tier`,
      ),
      [
        {
          hour: '10:00',
          model_id: 'cold/c',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_4',
          queries: 10,
          cache_hits: 10,
        },
        {
          hour: '10:00',
          model_id: 'hot/a',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_1',
          queries: 300,
          cache_hits: 100,
        },
        {
          hour: '10:00',
          model_id: 'warm/b',
          vendor_id: 'Anthropic',
          capability_tier: 'Tier_2',
          queries: 200,
          cache_hits: 0,
        },
        {
          hour: '11:00',
          model_id: 'cold/c',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_3',
          queries: 50,
          cache_hits: 50,
        },
        {
          hour: '11:00',
          model_id: 'hot/a',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_1',
          queries: 120,
          cache_hits: 60,
        },
      ],
    );
    assert.deepEqual(
      await rows(
        `SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24:MI') AS hour, executions::int, result_count_sum::int,
                zero_results::int, has_more::int, cache_hits::int
         FROM analytics_filter_executions ORDER BY hour`,
      ),
      [
        {
          hour: '10:00',
          executions: 100,
          result_count_sum: 600,
          zero_results: 40,
          has_more: 60,
          cache_hits: 0,
        },
        { hour: '11:00', executions: 30, result_count_sum: 150, zero_results: 0, has_more: 0, cache_hits: 0 },
      ],
    );
    assert.deepEqual(
      await rows(
        `SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24:MI') AS hour, parameter, executions::int
         FROM analytics_filter_parameters ORDER BY hour, parameter`,
      ),
      [
        { hour: '10:00', parameter: 'capability_tier', executions: 40 },
        { hour: '10:00', parameter: 'cursor', executions: 40 },
        { hour: '10:00', parameter: 'limit', executions: 100 },
        { hour: '10:00', parameter: 'sort', executions: 100 },
        { hour: '10:00', parameter: 'vendor_id', executions: 60 },
        { hour: '11:00', parameter: 'limit', executions: 30 },
        { hour: '11:00', parameter: 'sort', executions: 30 },
      ],
    );
    assert.deepEqual(
      await rows(
        `SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24:MI') AS hour, parameter, value, executions::int
         FROM analytics_filter_values ORDER BY hour, parameter, value`,
      ),
      [
        { hour: '10:00', parameter: 'capability_tier', value: 'Tier_2', executions: 40 },
        { hour: '10:00', parameter: 'sort', value: '-context_window', executions: 40 },
        { hour: '10:00', parameter: 'sort', value: 'model_id', executions: 60 },
        { hour: '10:00', parameter: 'vendor_id', value: 'OpenAI', executions: 60 },
        { hour: '11:00', parameter: 'sort', value: 'model_id', executions: 30 },
      ],
    );
    // The example events are all stamped 10:30:00.123.
    assert.deepEqual(
      await rows(
        `SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24:MI') AS hour, event_type, vendor_id, capability_tier,
                events::int, changes::int
         FROM analytics_model_lifecycle ORDER BY event_type`,
      ),
      [
        {
          hour: '10:00',
          event_type: 'model.deactivated',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_1',
          events: 1,
          changes: 1,
        },
        {
          hour: '10:00',
          event_type: 'model.registered',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_1',
          events: 3,
          changes: 3,
        },
        {
          hour: '10:00',
          event_type: 'model.updated',
          vendor_id: 'OpenAI',
          capability_tier: 'Tier_1',
          events: 2,
          changes: 1,
        },
      ],
    );
  });

  test('"last seen" per model: the newest version, the newest read, whatever order the batches took', async () => {
    assert.deepEqual(
      await rows(
        `SELECT model_id, last_sequence, last_event_type, is_active,
                to_char(last_queried_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') AS last_queried_at
         FROM analytics_model_activity ORDER BY model_id`,
      ),
      [
        {
          model_id: 'cold/c',
          last_sequence: 1,
          last_event_type: 'model.queried',
          is_active: true,
          last_queried_at: '11:30:49.000',
        },
        {
          model_id: 'hot/a',
          last_sequence: 1,
          last_event_type: 'model.queried',
          is_active: true,
          last_queried_at: '11:59:01.000',
        },
        // Registered (1), updated (2), deactivated (3): the deactivation, with no read.
        {
          model_id: 'openai/gpt-4-turbo',
          last_sequence: 3,
          last_event_type: 'model.deactivated',
          is_active: false,
          last_queried_at: null,
        },
        {
          model_id: 'warm/b',
          last_sequence: 1,
          last_event_type: 'model.queried',
          is_active: true,
          last_queried_at: '10:59:30.000',
        },
      ],
    );
  });

  test('popular models: ranked by reads over the hours that overlap the range, with the filters', async () => {
    const both = resolveTimeRange({ from: H10, to: '2025-01-15T12:00:00Z' });
    const all = await analytics.popularModels({ range: both });
    assert.equal(all.from, H10);
    assert.equal(all.to, '2025-01-15T12:00:00.000Z');
    assert.deepEqual(all.models, [
      {
        model_id: 'hot/a',
        vendor_id: 'OpenAI',
        capability_tier: 'Tier_1',
        queries: 420,
        cache_hits: 160,
        cache_hit_rate: 160 / 420,
      },
      {
        model_id: 'warm/b',
        vendor_id: 'Anthropic',
        capability_tier: 'Tier_2',
        queries: 200,
        cache_hits: 0,
        cache_hit_rate: 0,
      },
      // Its latest tier in the range, with the reads of both tiers.
      {
        model_id: 'cold/c',
        vendor_id: 'OpenAI',
        capability_tier: 'Tier_3',
        queries: 60,
        cache_hits: 60,
        cache_hit_rate: 1,
      },
    ]);

    const top = await analytics.popularModels({ range: both, limit: 1 });
    assert.deepEqual(
      top.models.map((entry) => entry.model_id),
      ['hot/a'],
    );

    // 11:00–11:00:00.001 overlaps only the 11:00 hour; 10:30–11:00 only the 10:00 hour (to is exclusive).
    const eleven = await analytics.popularModels({
      range: resolveTimeRange({ from: H11, to: '2025-01-15T11:00:00.001Z' }),
    });
    assert.deepEqual(
      eleven.models.map((entry) => [entry.model_id, entry.queries]),
      [
        ['hot/a', 120],
        ['cold/c', 50],
      ],
    );
    const ten = await analytics.popularModels({
      range: resolveTimeRange({ from: '2025-01-15T10:30:00Z', to: H11 }),
    });
    assert.deepEqual(
      ten.models.map((entry) => [entry.model_id, entry.queries, entry.capability_tier]),
      [
        ['hot/a', 300, 'Tier_1'],
        ['warm/b', 200, 'Tier_2'],
        ['cold/c', 10, 'Tier_4'],
      ],
    );

    const anthropic = await analytics.popularModels({ range: both, vendorId: 'Anthropic' });
    assert.deepEqual(
      anthropic.models.map((entry) => entry.model_id),
      ['warm/b'],
    );
    // Only the reads made while the model was in the tier.
    const tier4 = await analytics.popularModels({ range: both, capabilityTier: 'Tier_4' });
    assert.deepEqual(
      tier4.models.map((entry) => [entry.model_id, entry.queries, entry.capability_tier]),
      [['cold/c', 10, 'Tier_4']],
    );
    const none = await analytics.popularModels({
      range: resolveTimeRange({ from: '2025-01-16T00:00:00Z', to: '2025-01-17' }),
    });
    assert.deepEqual(none.models, []);
  });

  test('filter usage: executions, parameter shares, top values, result counts and rates', async () => {
    const usage = await analytics.filterUsage(resolveTimeRange({ from: H10, to: '2025-01-15T12:00:00Z' }));
    assert.equal(usage.executions, 130);
    assert.equal(usage.average_result_count, 750 / 130);
    assert.equal(usage.zero_result_rate, 40 / 130);
    assert.equal(usage.has_more_rate, 60 / 130);
    assert.equal(usage.cache_hit_rate, 0);
    assert.deepEqual(usage.parameters.slice(0, 5), [
      { parameter: 'limit', executions: 130, share: 1 },
      { parameter: 'sort', executions: 130, share: 1 },
      { parameter: 'vendor_id', executions: 60, share: 60 / 130 },
      { parameter: 'capability_tier', executions: 40, share: 40 / 130 },
      { parameter: 'cursor', executions: 40, share: 40 / 130 },
    ]);
    // Every other parameter is listed, unused.
    assert.deepEqual(
      usage.parameters.slice(5).map((entry) => [entry.parameter, entry.executions]),
      [
        ['function_call_support', 0],
        ['is_active', 0],
        ['max_cost_in_per_mil', 0],
        ['max_cost_out_per_mil', 0],
        ['min_context_window', 0],
      ],
    );
    assert.deepEqual(usage.top_values, {
      vendor_id: [{ value: 'OpenAI', executions: 60, share: 60 / 130 }],
      capability_tier: [{ value: 'Tier_2', executions: 40, share: 40 / 130 }],
      is_active: [],
      function_call_support: [],
      sort: [
        { value: 'model_id', executions: 90, share: 90 / 130 },
        { value: '-context_window', executions: 40, share: 40 / 130 },
      ],
    });

    const empty = await analytics.filterUsage(resolveTimeRange({ from: '2025-01-16', to: '2025-01-17' }));
    assert.equal(empty.executions, 0);
    assert.equal(empty.average_result_count, null);
    assert.equal(empty.zero_result_rate, null);
    assert.ok(empty.parameters.every((entry) => entry.executions === 0 && entry.share === 0));
  });

  test('eight transactions upserting the same 3,000 keys at once, from shuffled batches: no deadlock', async () => {
    // Measured: with half of the writers' rows in reverse order instead of sorted, 20 of these 24
    // transactions die in a deadlock; sorted, every one commits.
    const burst = Array.from({ length: 3000 }, (_, index) =>
      queried(`burst/${index}`, at(13, index % 60), index % 2 === 0),
    );
    const write = async () => {
      const client = await harness.pool.connect();
      try {
        await client.query('BEGIN');
        await writeAggregate(client, aggregateEvents([...burst].sort(() => Math.random() - 0.5)));
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    };
    for (let round = 0; round < 3; round++) {
      const results = await Promise.allSettled(Array.from({ length: 8 }, write));
      const failed = results.filter((result) => result.status === 'rejected');
      assert.deepEqual(failed, [], `round ${round}`);
    }
    const [total] = await rows<{ models: number; queries: number; hits: number }>(
      `SELECT count(DISTINCT model_id)::int AS models, sum(queries)::int AS queries, sum(cache_hits)::int AS hits
       FROM analytics_model_queries WHERE model_id LIKE 'burst/%'`,
    );
    assert.deepEqual(total, { models: 3000, queries: 3000 * 24, hits: 1500 * 24 });
    const [activity] = await rows<{ models: number }>(
      `SELECT count(*)::int AS models FROM analytics_model_activity WHERE model_id LIKE 'burst/%'`,
    );
    assert.deepEqual(activity, { models: 3000 });
  });
});
