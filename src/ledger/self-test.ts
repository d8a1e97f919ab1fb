/**
 * The bus's self-test: one synthetic event into each exchange (a model read, an error, a plain request),
 * emitted through the spool like any request's event, then watched for in `consumer_applied_events` until
 * every consumer that should apply it has, or the time is up. The answer is each consumer's end-to-end
 * latency, from emit to its commit.
 *
 * Synthetic events carry `source: 'selftest'`: the consumer runtime records them as applied (and in the
 * ledger, which they pass through like any event) but never hands them to a consumer, so they appear in
 * no audit record, count, metric or log line.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { EventBus } from '../bus/event-bus.ts';
import { newEventId } from '../bus/event-id.ts';
import type { TelemetryEvent } from '../bus/event-schemas.ts';
import { SCHEMA_VERSION } from '../bus/event-types.ts';
import { childTraceparent } from '../bus/trace-context.ts';
import { LEDGER_CONSUMERS, type LedgerConsumer, routedTypes } from './ledger-summary.ts';

/** The model id of the self-test's model read (no consumer applies it, so it may name a real one). */
export const SELFTEST_MODEL_ID = 'telemetry-bus/selftest';

export interface SelfTestResult {
  ok: boolean;
  correlation_id: string;
  consumers: {
    consumer: LedgerConsumer;
    queue: string;
    /** Synthetic events routed to its queue, and how many it applied in time. */
    sent: number;
    applied: number;
    /** Emit → the consumer's commit of its last synthetic event, in ms; null until all are applied. */
    latency_ms: number | null;
  }[];
}

export interface SelfTestOptions {
  bus: EventBus;
  pool: pg.Pool;
  /** Time to wait for every consumer, in ms. @default 10000 */
  timeoutMs?: number;
  /** Who asked (the key's hash), recorded as the events' user_id. */
  userId: string | null;
}

export async function runSelfTest(options: SelfTestOptions): Promise<SelfTestResult> {
  const correlationId = `selftest-${randomUUID()}`;
  const sentAt = Date.now();
  const events = syntheticEvents(correlationId, options.userId, sentAt);
  for (const event of events) options.bus.emit(event, childTraceparent(undefined), sentAt);

  const consumers = Object.keys(LEDGER_CONSUMERS) as LedgerConsumer[];
  const expected = new Map(
    consumers.map((consumer) => {
      const routed = routedTypes(consumer);
      return [
        consumer,
        events.filter((event) => routed.has(event.event_type)).map((event) => event.event_id),
      ];
    }),
  );
  const deadline = sentAt + (options.timeoutMs ?? 10_000);
  let applied = new Map<string, { count: number; lastMs: number }>();
  for (;;) {
    applied = await appliedSoFar(
      options.pool,
      events.map((event) => event.event_id),
    );
    const done = consumers.every(
      (consumer) => (applied.get(consumer)?.count ?? 0) >= (expected.get(consumer)?.length ?? 0),
    );
    if (done || Date.now() >= deadline) break;
    await sleep(50);
  }
  const results = consumers.map((consumer) => {
    const sent = expected.get(consumer)?.length ?? 0;
    const seen = applied.get(consumer);
    const count = seen?.count ?? 0;
    return {
      consumer,
      queue: LEDGER_CONSUMERS[consumer],
      sent,
      applied: count,
      latency_ms: count >= sent && seen !== undefined ? Math.max(0, seen.lastMs - sentAt) : null,
    };
  });
  return {
    ok: results.every((result) => result.applied >= result.sent),
    correlation_id: correlationId,
    consumers: results,
  };
}

async function appliedSoFar(
  pool: pg.Pool,
  eventIds: string[],
): Promise<Map<string, { count: number; lastMs: number }>> {
  // clock_timestamp() is not what applied_at holds (the transaction's start): the commit follows within
  // the batch's few milliseconds, so this is the latency to within a batch.
  const { rows } = await pool.query<{ consumer: string; count: number; last_ms: number }>(
    `SELECT consumer, count(*)::int AS count, (extract(epoch FROM max(applied_at)) * 1000)::float8 AS last_ms
     FROM consumer_applied_events WHERE event_id = ANY($1::uuid[]) GROUP BY consumer`,
    [eventIds],
  );
  return new Map(rows.map((row) => [row.consumer, { count: row.count, lastMs: row.last_ms }]));
}

function syntheticEvents(correlationId: string, userId: string | null, nowMs: number): TelemetryEvent[] {
  const timestamp = new Date(nowMs).toISOString();
  const common = {
    schema_version: SCHEMA_VERSION,
    timestamp,
    source: 'selftest' as const,
    correlation_id: correlationId,
    user_id: userId,
  };
  const metadata = (route: string, responseCode: number) => ({
    request_duration_ms: 0,
    response_code: responseCode,
    user_agent: 'telemetry-bus selftest',
    ip_address: '127.0.0.1',
    route,
    method: 'POST',
    cache_hit: null,
  });
  const noError = { type: null, message: null, stack_trace: null };
  return [
    {
      ...common,
      event_id: newEventId(),
      event_type: 'model.queried',
      sequence: 1,
      data: {
        model_id: SELFTEST_MODEL_ID,
        vendor_id: 'selftest',
        capability_tier: 'Tier_1',
        context_window: 1,
        cost_in_per_mil: 0,
        cost_out_per_mil: 0,
        function_call_support: false,
        is_active: true,
        version: 1,
        created_at: timestamp,
        updated_at: timestamp,
      },
      metadata: metadata('/telemetry/selftest', 200),
      error: noError,
    },
    {
      ...common,
      event_id: newEventId(),
      event_type: 'api.error',
      data: { model_id: null, field: null },
      metadata: metadata('/telemetry/selftest', 599),
      error: { type: 'SELFTEST', message: 'a synthetic error of the self-test', stack_trace: null },
    },
    {
      ...common,
      event_id: newEventId(),
      event_type: 'api.request',
      data: {},
      metadata: metadata('/telemetry/selftest', 200),
      error: noError,
    },
  ];
}
