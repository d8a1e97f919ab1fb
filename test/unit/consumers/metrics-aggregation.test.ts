/** Folding a batch into rollup rows: one count per event at each granularity, keys and sort order. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { aggregateFacts, bucketStartOf, toFact } from '../../../src/consumers/metrics/metrics-aggregation.ts';
import { exampleEvent } from '../../support/event-examples.ts';

test('every event counts once per granularity, in the bucket of its timestamp', () => {
  const queried = exampleEvent('model.queried', { timestamp: '2026-11-27T23:59:59.999Z' });
  const error = exampleEvent('api.error', { timestamp: '2026-11-28T00:00:00.000Z' });
  const filter = exampleEvent('filter.executed', { timestamp: '2026-11-28T00:00:30.000Z' });
  const applied = Date.parse('2026-11-28T00:00:31.000Z');
  const { facts, rollups, totals } = aggregateFacts(
    [queried, error, filter].map((event) => toFact(event, applied)),
  );
  assert.equal(facts.length, 3);
  assert.equal(rollups.length, 9);
  for (const granularity of ['1m', '1h', '1d']) {
    const rows = rollups.filter((row) => row.granularity === granularity);
    assert.equal(
      rows.reduce((sum, row) => sum + row.requests, 0),
      3,
    );
  }
  const day = totals.filter((row) => row.granularity === '1d');
  assert.deepEqual(
    day.map((row) => [row.bucketStart, row.requests, row.errors]),
    [
      ['2026-11-27T00:00:00.000Z', 1, 0],
      ['2026-11-28T00:00:00.000Z', 2, 1],
    ],
  );
  const errorRow = rollups.find((row) => row.eventType === 'api.error' && row.granularity === '1m');
  assert.equal(errorRow?.statusClass, 4);
  assert.equal(errorRow?.errorType, 'MODEL_NOT_FOUND');
  assert.equal(errorRow?.vendorId, '');
  const filterRow = rollups.find((row) => row.eventType === 'filter.executed' && row.granularity === '1h');
  assert.equal(filterRow?.capabilityTier, 'Tier_1', 'a filter by tier counts under that tier');
  assert.equal(filterRow?.vendorId, '');
  assert.equal(filterRow?.cacheMisses, 1);
  const queriedRow = rollups.find((row) => row.eventType === 'model.queried' && row.granularity === '1d');
  assert.equal(queriedRow?.cacheHits, 1);
  assert.equal(queriedRow?.vendorId, 'OpenAI');
  // Processing latency: timestamp → applied.
  assert.equal(facts[0]?.processingMs, 31_001);
});

test('rows are sorted by key, whatever the order of the batch', () => {
  const events = ['model.queried', 'api.request', 'model.registered', 'api.error'] as const;
  const forward = aggregateFacts(events.map((type) => toFact(exampleEvent(type), 0))).rollups;
  const backward = aggregateFacts([...events].reverse().map((type) => toFact(exampleEvent(type), 0))).rollups;
  const keys = (rows: typeof forward) =>
    rows.map((row) => `${row.granularity}|${row.eventType}|${row.route}`);
  assert.deepEqual(keys(forward), keys(backward));
});

test('a clock behind the event gives 0, not a negative latency; buckets align on the epoch', () => {
  assert.equal(toFact(exampleEvent('api.request'), 0).processingMs, 0);
  assert.equal(
    bucketStartOf(Date.parse('2026-11-28T11:38:27.500Z'), '1h'),
    Date.parse('2026-11-28T11:00:00Z'),
  );
  assert.equal(bucketStartOf(-1, '1m'), -60_000);
});

test('behind the compaction watermark an event also counts in its hour and day, and names its day', () => {
  const watermark = Date.parse('2026-11-28T10:00:00Z');
  const early = exampleEvent('model.queried', { timestamp: '2026-11-28T09:59:59.000Z' });
  const onTime = exampleEvent('model.queried', { timestamp: '2026-11-28T10:00:00.000Z' });
  const { rollups, totals, lateDays } = aggregateFacts(
    [early, onTime].map((event) => toFact(event, 0)),
    watermark,
  );
  assert.deepEqual(
    rollups.map((row) => [row.granularity, row.bucketStart, row.requests]),
    [
      ['1d', '2026-11-28T00:00:00.000Z', 1],
      ['1h', '2026-11-28T09:00:00.000Z', 1],
      ['1m', '2026-11-28T09:59:00.000Z', 1],
      ['1m', '2026-11-28T10:00:00.000Z', 1],
    ],
  );
  assert.deepEqual(lateDays, ['2026-11-28T00:00:00.000Z']);
  // An hour row counts its requests per minute of the hour; other rows do not.
  const hour = totals.find((row) => row.granularity === '1h');
  assert.equal(hour?.minuteRequests?.length, 60);
  assert.equal(hour?.minuteRequests?.[59], 1);
  assert.equal(
    hour?.minuteRequests?.reduce((a, b) => a + b, 0),
    1,
  );
  assert.equal(totals.find((row) => row.granularity === '1m')?.minuteRequests, null);
  assert.deepEqual(aggregateFacts([toFact(onTime, 0)], watermark).lateDays, []);
});
