/**
 * Per-model "last seen" state on the real broker and database (issue 6, fault matrix scenario 10: "last
 * seen" fields never go backwards). One model's events are published out of order, one step at a time —
 * a newer change first, then an older one, a duplicate, an older read, a change that fails and comes back
 * from the retry ladder after a newer read, a stale cached read — and after every step the state is read
 * back: it never moves backwards, and ends where the full history says. The same history published at
 * once, shuffled, ends in the same row; `GET /analytics/models/:model_id` serves it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import Fastify from 'fastify';
import type { EventOf, TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { analyticsConsumer } from '../../src/consumers/analytics/analytics-consumer.ts';
import { AnalyticsQuery } from '../../src/consumers/analytics/analytics-query.ts';
import type { Consumer } from '../../src/consumers/consumer.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import errorHandler from '../../src/http/plugins/error-handler.ts';
import analyticsRoutes from '../../src/http/routes/analytics.ts';
import { schemaCompilers } from '../../src/http/schema-compilers.ts';
import { consumerHarness } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';

/**
 * Event ids that fail until they come back from the retry ladder (0.2 s here): the runtime re-applies a
 * failed batch message by message to find the failing one, so it must fail there too.
 */
const failFirstAttempt = new Set<string>();

/** The real analytics consumer, except that it refuses the events of `failFirstAttempt` on first delivery. */
function flakyAnalytics(): Consumer {
  const real = analyticsConsumer();
  return {
    ...real,
    writes(deliveries) {
      for (const delivery of deliveries) {
        if (
          failFirstAttempt.has(delivery.id) &&
          delivery.properties.headers[FAILURE_HEADERS.attempts] === undefined
        ) {
          throw new Error(`refusing ${delivery.id} until it is retried`);
        }
      }
      return real.writes?.(deliveries) ?? [];
    },
  };
}

const harness = await consumerHarness({ after }, () => [flakyAnalytics()], { batchSize: 20 });
const counters = () => {
  const status = harness.runtime.status().find((entry) => entry.name === 'analytics');
  assert.ok(status);
  return status.counters;
};

const app = Fastify();
app.setValidatorCompiler(schemaCompilers());
await app.register(errorHandler);
await app.register(analyticsRoutes, { analytics: new AnalyticsQuery(harness.pool) });
await app.ready();
after(() => app.close());

type Model = EventOf<'model.registered'>['data'];
const at = (minute: number) => new Date(Date.UTC(2025, 1, 10, 10, minute)).toISOString();

/** A model's history: a change every 10 minutes (version n at minute 10n), reads in between. */
function history(modelId: string) {
  const base: Model = { ...exampleEvent('model.registered').data, model_id: modelId };
  const version = (sequence: number, changes: Partial<Model>): Model => ({
    ...base,
    ...changes,
    version: sequence,
    updated_at: at(sequence * 10),
  });
  const v1 = version(1, {});
  const v2 = version(2, { capability_tier: 'Tier_2' });
  const v3 = version(3, { capability_tier: 'Tier_2', vendor_id: 'Acme' });
  const v4 = version(4, { capability_tier: 'Tier_2', vendor_id: 'Acme', is_active: false });
  const common = (minute: number, sequence: number) => ({
    event_id: randomUUID(),
    timestamp: at(minute),
    sequence,
  });
  const read = (minute: number, data: Model, cacheHit: boolean) =>
    exampleEvent('model.queried', {
      ...common(minute, data.version),
      data,
      metadata: { ...exampleEvent('model.queried').metadata, cache_hit: cacheHit },
    });
  return {
    registered: exampleEvent('model.registered', { ...common(10, 1), data: v1 }),
    read1: read(12, v1, false),
    tier: exampleEvent('model.updated', { ...common(20, 2), data: { ...v2, changed: true } }),
    read2: read(25, v2, true),
    vendor: exampleEvent('model.updated', { ...common(30, 3), data: { ...v3, changed: true } }),
    read3: read(35, v3, false),
    deactivated: exampleEvent('model.deactivated', { ...common(40, 4), data: { ...v4, changed: true } }),
    read4: read(45, v4, false),
    // Served from a cache that still held version 3, after the deactivation: the newest read, old state.
    staleRead: read(50, v3, true),
  };
}

interface State {
  last_sequence: number;
  last_event_at: string;
  last_event_type: string;
  last_event_id: string;
  last_changed_at: string;
  vendor_id: string;
  capability_tier: string;
  is_active: boolean;
  last_queried_at: string | null;
}

async function state(modelId: string): Promise<State | undefined> {
  const { rows } = await harness.pool.query<State>(
    `SELECT last_sequence, to_json(last_event_at) #>> '{}' AS last_event_at, last_event_type,
            last_event_id::text AS last_event_id, to_json(last_changed_at) #>> '{}' AS last_changed_at,
            vendor_id, capability_tier, is_active, to_json(last_queried_at) #>> '{}' AS last_queried_at
     FROM analytics_model_activity WHERE model_id = $1`,
    [modelId],
  );
  if (rows[0] === undefined) return undefined;
  // to_json gives the session's zone; compare as ISO UTC.
  const iso = (text: string) => new Date(text).toISOString();
  const row = rows[0];
  return {
    ...row,
    last_event_at: iso(row.last_event_at),
    last_changed_at: iso(row.last_changed_at),
    last_queried_at: row.last_queried_at === null ? null : iso(row.last_queried_at),
  };
}

/** The state an event leaves once applied over an older one. */
function stateOf(event: TelemetryEvent & { data: Model }, lastQueriedAt: string | null): State {
  return {
    last_sequence: event.data.version,
    last_event_at: event.timestamp,
    last_event_type: event.event_type,
    last_event_id: event.event_id,
    last_changed_at: event.data.updated_at,
    vendor_id: event.data.vendor_id,
    capability_tier: event.data.capability_tier,
    is_active: event.data.is_active,
    last_queried_at: lastQueriedAt,
  };
}

/** Asserts that `next` is not behind `previous` in any field that must only move forward. */
function assertForward(previous: State | undefined, next: State | undefined, step: string): void {
  assert.ok(next, `${step}: the model has a row`);
  if (previous === undefined) return;
  const position = (s: State) => [s.last_sequence, Date.parse(s.last_event_at), s.last_event_id] as const;
  const [ps, pa, pi] = position(previous);
  const [ns, na, ni] = position(next);
  assert.ok(ns > ps || (ns === ps && (na > pa || (na === pa && ni >= pi))), `${step}: state went backwards`);
  if (previous.last_queried_at !== null) {
    assert.ok(next.last_queried_at !== null, `${step}: last_queried_at went back to null`);
    assert.ok(
      Date.parse(next.last_queried_at) >= Date.parse(previous.last_queried_at),
      `${step}: read went back`,
    );
  }
}

describe('"last seen" state per model', () => {
  const ordered = history('acme/ordered');
  const final = stateOf(ordered.read4, at(45));

  test('out of order, one step at a time: the state only moves forward, and ends at the newest', async () => {
    let previous: State | undefined;
    let applied = counters().applied;
    let duplicates = counters().duplicates;
    /** Publishes, waits until applied (and seen as duplicates), checks the state moved only forward. */
    const step = async (
      name: string,
      events: TelemetryEvent[],
      expect: { applied: number; duplicates?: number },
    ) => {
      await harness.publish(events);
      applied += expect.applied;
      duplicates += expect.duplicates ?? 0;
      await harness.waitUntil(
        name,
        () => counters().applied >= applied && counters().duplicates >= duplicates,
      );
      const next = await state('acme/ordered');
      assertForward(previous, next, name);
      previous = next;
      return next;
    };

    // The newest change first.
    assert.deepEqual(
      await step('version 3', [ordered.vendor], { applied: 1 }),
      stateOf(ordered.vendor, null),
    );
    // An older change, applied late (as after a retry or a replay): nothing moves.
    assert.deepEqual(
      await step('version 2 late', [ordered.tier], { applied: 1 }),
      stateOf(ordered.vendor, null),
    );
    // A duplicate: de-duplicated by the runtime, nothing moves.
    assert.deepEqual(
      await step('version 3 again', [ordered.vendor], { applied: 0, duplicates: 1 }),
      stateOf(ordered.vendor, null),
    );
    // An older read: only the read time moves (from none).
    assert.deepEqual(
      await step('a read of version 2', [ordered.read2], { applied: 1 }),
      stateOf(ordered.vendor, at(25)),
    );

    // The deactivation fails once and is retried; meanwhile the read of version 4 behind it is applied.
    failFirstAttempt.add(ordered.deactivated.event_id);
    const retried = counters().retried;
    await harness.publish([ordered.deactivated, ordered.read4]);
    await harness.waitUntil('the read of version 4, before the retried deactivation', async () => {
      const current = await state('acme/ordered');
      return counters().retried > retried && current?.last_sequence === 4;
    });
    const beforeRetry = await state('acme/ordered');
    assertForward(previous, beforeRetry, 'the read of version 4');
    // The read carries version 4: its state, and the deactivation's time as the last change.
    assert.deepEqual(beforeRetry, final);
    assert.equal(counters().applied, applied + 1, 'the deactivation is not applied yet');
    previous = beforeRetry;
    assert.deepEqual(
      await step('the deactivation, retried late', [], { applied: 2 }),
      final,
      'the retried deactivation is older than the read: nothing moves',
    );

    // A stale cached read (version 3), newest in time: only the read time moves.
    const withStale = { ...final, last_queried_at: at(50) };
    assert.deepEqual(await step('a stale read', [ordered.staleRead], { applied: 1 }), withStale);
    // The rest of the old history, at last, in one batch: nothing moves.
    assert.deepEqual(
      await step('the old history', [ordered.read3, ordered.registered, ordered.read1], { applied: 3 }),
      withStale,
    );
    // Everything again, shuffled (a replay): all duplicates, nothing moves.
    const all = Object.values(ordered) as TelemetryEvent[];
    assert.deepEqual(
      await step(
        'a replay of everything',
        [...all].sort(() => Math.random() - 0.5),
        {
          applied: 0,
          duplicates: all.length,
        },
      ),
      withStale,
    );
    assert.equal(counters().deadLettered, 0);
  });

  test('the same history at once, shuffled, across batches: the same row', async () => {
    const batched = history('acme/batched');
    const events = Object.values(batched) as TelemetryEvent[];
    // Twice over, so that it spans batches of 20 with other models' events around it.
    const noise = Array.from({ length: 60 }, (_, index) => history(`acme/noise-${index % 7}`).read1);
    const applied = counters().applied;
    await harness.publish([...events, ...noise].sort(() => Math.random() - 0.5));
    await harness.waitUntil(
      'all applied',
      () => counters().applied >= applied + events.length + noise.length,
    );
    assert.deepEqual(await state('acme/batched'), stateOf(batched.read4, at(50)));
  });

  test('GET /analytics/models/:model_id: the state, and the reads in the range', async () => {
    const response = await app.inject({
      method: 'GET',
      url: '/analytics/models/acme%2Fordered?from=2025-02-10T10:00:00Z&to=2025-02-10T11:00:00Z',
    });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json();
    assert.ok(Date.parse(body.updated_at) > Date.now() - 600_000);
    delete body.updated_at;
    assert.deepEqual(body, {
      model_id: 'acme/ordered',
      last_sequence: 4,
      last_event_type: 'model.queried',
      last_event_id: ordered.read4.event_id,
      last_event_at: at(45),
      last_changed_at: at(40),
      vendor_id: 'Acme',
      capability_tier: 'Tier_2',
      is_active: false,
      last_queried_at: at(50),
      from: '2025-02-10T10:00:00.000Z',
      to: '2025-02-10T11:00:00.000Z',
      // read1 … read4 and the stale read; read2 and the stale one from the cache.
      queries: 5,
      cache_hits: 2,
      cache_hit_rate: 0.4,
    });

    // A range without its reads: the same state, no counts.
    const later = (
      await app.inject({
        method: 'GET',
        url: '/analytics/models/acme%2Fordered?from=2025-03-01&to=2025-03-02',
      })
    ).json();
    assert.equal(later.last_sequence, 4);
    assert.deepEqual([later.queries, later.cache_hits, later.cache_hit_rate], [0, 0, null]);
  });

  test('an unknown model is a 404 naming it; a bad range a 400 naming the field', async () => {
    const missing = await app.inject({ method: 'GET', url: '/analytics/models/acme%2Fnever-seen' });
    assert.equal(missing.statusCode, 404);
    const { error } = missing.json();
    assert.equal(error.code, 'MODEL_NOT_FOUND');
    assert.equal(error.field, 'model_id');
    assert.match(error.message, /'acme\/never-seen'/);

    const bad = await app.inject({ method: 'GET', url: '/analytics/models/acme%2Fordered?to=2025-02-30' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.field, 'to');
    const badId = await app.inject({ method: 'GET', url: '/analytics/models/bad%20id' });
    assert.equal(badId.statusCode, 400);
  });
});
