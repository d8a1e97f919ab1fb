/** Liveness (the process answers) and readiness (its dependencies answer). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import { type TSchema, Type } from 'typebox';
import type { EventBus } from '../../bus/event-bus.ts';
import type { QueueInspector } from '../../bus/queue-inspector.ts';
import { LedgerQuery } from '../../ledger/ledger-query.ts';
import type { EventLoopHealth } from '../../prometheus/event-loop-health.ts';
import { withTimeout } from '../../with-timeout.ts';
import { LedgerResponse } from './ledger.ts';

export interface HealthRoutesOptions {
  pool: pg.Pool;
  /** The telemetry bus, when on. */
  bus?: EventBus;
  /** Queue depths for GET /health, when the bus is on. */
  queues?: QueueInspector;
  /** The threads' event-loop delay and utilisation. */
  eventLoop?: EventLoopHealth | undefined;
  /** Time PostgreSQL gets to answer the readiness probe, in ms. @default {@link PROBE_TIMEOUT_MS} */
  probeTimeoutMs?: number;
}

/** Time PostgreSQL (and each health lookup) gets to answer by default, in milliseconds. */
const PROBE_TIMEOUT_MS = 2000;

/** The window of the loss ledger /health shows. */
const HEALTH_LEDGER_WINDOW_MS = 15 * 60_000;

const DependencyState = Type.Enum(['up', 'down']);
const BrokerState = Type.Enum(['up', 'down', 'blocked', 'off'], {
  description: 'off: telemetry is disabled. down or blocked: events wait in the spool and nothing is lost',
});
const Readiness = Type.Object({
  status: Type.Enum(['ready', 'not_ready']),
  checks: Type.Object({ postgres: DependencyState, broker: BrokerState }),
  notes: Type.Array(Type.String()),
});

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Count = Type.Integer({ minimum: 0 });

const Milliseconds = Nullable(Type.Number({ minimum: 0 }));

/** Publish latency over the last minute (src/bus/publish-latency.ts). */
const PublishLatencyWindow = Type.Object(
  {
    window_seconds: Count,
    count: Count,
    p50_ms: Milliseconds,
    p95_ms: Milliseconds,
    p99_ms: Milliseconds,
  },
  {
    description:
      'Emit to broker confirm of the messages confirmed in the last window_seconds: how many, and their p50/p95/p99 in ms (null when none)',
  },
);

const Health = Type.Object({
  status: Type.Enum(['ok', 'degraded']),
  checks: Type.Object({ postgres: DependencyState, broker: BrokerState }),
  publisher: Type.Union([
    Type.Object({
      state: Type.Enum(['connecting', 'connected', 'blocked', 'disconnected', 'stopped']),
      node: Type.Union([Type.String(), Type.Null()], {
        description: 'The RabbitMQ node (host:port) the publisher is connected to; null when none',
      }),
      since: Type.String({ format: 'date-time' }),
      last_error: Type.Union([Type.String(), Type.Null()]),
      unconfirmed: Count,
      window: Count,
      confirmed: Count,
      returned: Count,
      nacked: Count,
      resent: Count,
      confirm_timeouts: Count,
      connects: Count,
      connect_failures: Count,
      latency: PublishLatencyWindow,
      thread: Type.Union(
        [
          Type.Object({
            state: Type.Enum(['starting', 'running', 'restarting', 'stopped']),
            since: Type.String({ format: 'date-time' }),
            restarts: Count,
            last_error: Nullable(Type.String()),
            tid: Nullable(
              Type.Integer({
                description:
                  'Its OS thread id (/proc/<pid>/task/<tid>, named tb-publisher in top -H), for per-thread CPU; null while none runs or off Linux',
              }),
            ),
          }),
          Type.Null(),
        ],
        {
          description:
            'The publisher thread (tb-publisher): restarted with backoff after a crash, while events wait in the spool; null when publishing on the request thread',
        },
      ),
    }),
    Type.Null(),
  ]),
  events: Type.Union([
    Type.Object({
      emitted: Count,
      dropped: Type.Object({ spool_full: Count, write_error: Count, invalid_event: Count }),
      unpublished: Count,
    }),
    Type.Null(),
  ]),
  spool: Type.Union([
    Type.Object({
      bytes: Count,
      segments: Count,
      next_offset: Count,
      confirmed_offset: Type.Integer({ minimum: -1 }),
      torn_records: Count,
      corrupt_records: Count,
    }),
    Type.Null(),
  ]),
  queues: Type.Union([
    Type.Object({
      source: Type.Enum(['management', 'amqp'], {
        description:
          'Which source answered: the management API, or AMQP passive declares (no unacknowledged counts)',
      }),
      node: Type.Union([Type.String(), Type.Null()], { description: 'The node (host:port) that answered' }),
      error: Type.Union([Type.String(), Type.Null()]),
      fallback_reason: Type.Union([Type.String(), Type.Null()], {
        description: 'Why AMQP answered in place of the management API: its error',
      }),
      items: Type.Array(
        Type.Object({
          name: Type.String(),
          exists: Type.Boolean(),
          messages_ready: Nullable(Count),
          messages_unacknowledged: Nullable(Count),
          consumers: Nullable(Count),
        }),
      ),
    }),
    Type.Null(),
  ]),
  event_loop: Type.Union(
    [
      Type.Object({
        window_s: Type.Number({ minimum: 0, description: 'The window the figures cover, in seconds' }),
        request_thread: Type.Object({
          delay_ms: Type.Object(
            {
              p50: Type.Number({ minimum: 0 }),
              p99: Type.Number({ minimum: 0 }),
              max: Type.Number({ minimum: 0 }),
            },
            { description: 'Event-loop delay: how late a 10 ms timer fired, in ms' },
          ),
          utilization: Type.Number({
            minimum: 0,
            maximum: 1,
            description: 'Share of the window the loop was busy',
          }),
        }),
        publisher_thread: Type.Union(
          [Type.Object({ utilization: Type.Number({ minimum: 0, maximum: 1 }) }), Type.Null()],
          {
            description: 'null when the bus is off or its thread is restarting',
          },
        ),
      }),
      Type.Null(),
    ],
    { description: "Event-loop health of the API process's threads over the last complete window" },
  ),
  ledger: Type.Union([LedgerResponse, Type.Null()], {
    description:
      'The loss ledger of the last 15 minutes (GET /telemetry/ledger for any range); null if unreadable',
  }),
});

function brokerState(bus: EventBus | undefined): 'up' | 'down' | 'blocked' | 'off' {
  if (bus === undefined) return 'off';
  const state = bus.status().publisher.state;
  if (state === 'connected') return 'up';
  return state === 'blocked' ? 'blocked' : 'down';
}

/** `promise`'s value, or `fallback` if it fails or takes longer than `timeoutMs`. */
function within<T, F>(promise: Promise<T>, timeoutMs: number, fallback: F): Promise<T | F> {
  return withTimeout(promise, timeoutMs).catch(() => fallback);
}

function postgresUp(pool: pg.Pool, timeoutMs: number): Promise<boolean> {
  return within(
    pool.query('SELECT 1').then(() => true),
    timeoutMs,
    false,
  );
}

const healthRoutes: FastifyPluginAsyncTypebox<HealthRoutesOptions> = async (
  app,
  { pool, bus, queues, eventLoop, probeTimeoutMs = PROBE_TIMEOUT_MS },
) => {
  const ledger = new LedgerQuery(pool);
  app.get(
    '/livez',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process is serving',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: PostgreSQL answers (503 when it does not); a broker outage keeps it ready',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const up = await postgresUp(pool, probeTimeoutMs);
      const broker = brokerState(bus);
      const notes: string[] = [];
      if (broker === 'down' || broker === 'blocked') {
        notes.push(`RabbitMQ is ${broker}: events are kept in the spool and sent when it is back`);
      }
      if (!up) notes.push('PostgreSQL is unreachable: registry requests fail with 503');
      return reply.code(up ? 200 : 503).send({
        status: up ? 'ready' : 'not_ready',
        checks: { postgres: up ? 'up' : 'down', broker },
        notes,
      });
    },
  );

  app.get(
    '/health',
    {
      schema: {
        tags: ['health'],
        summary: 'The state of every part: PostgreSQL, the broker, the publisher, the spool, the queues',
        response: { 200: Health },
      },
    },
    async () => {
      const now = Date.now();
      const [postgres, report, ledgerWindow] = await Promise.all([
        postgresUp(pool, probeTimeoutMs),
        queues?.report(),
        within(
          ledger.summary({ from: new Date(now - HEALTH_LEDGER_WINDOW_MS), to: new Date(now) }),
          probeTimeoutMs,
          null,
        ),
      ]);
      const broker = brokerState(bus);
      const status = bus?.status();
      const publisher = status?.publisher;
      return {
        status: postgres && (broker === 'up' || broker === 'off') ? ('ok' as const) : ('degraded' as const),
        checks: { postgres: postgres ? ('up' as const) : ('down' as const), broker },
        publisher:
          publisher === undefined || bus === undefined
            ? null
            : {
                state: publisher.state,
                node: publisher.node,
                since: publisher.since,
                last_error: publisher.lastError,
                unconfirmed: publisher.unconfirmed,
                window: publisher.window,
                confirmed: publisher.counters.confirmed,
                returned: publisher.counters.returned,
                nacked: publisher.counters.nacked,
                resent: publisher.counters.resent,
                confirm_timeouts: publisher.counters.confirmTimeouts,
                connects: publisher.counters.connects,
                connect_failures: publisher.counters.connectFailures,
                latency: bus.publishLatency.recent(now),
                thread:
                  status?.publisherThread == null
                    ? null
                    : {
                        state: status.publisherThread.state,
                        since: status.publisherThread.since,
                        restarts: status.publisherThread.restarts,
                        last_error: status.publisherThread.lastError,
                        tid: status.publisherThread.tid,
                      },
              },
        events:
          status === undefined
            ? null
            : { emitted: status.emitted, dropped: status.dropped, unpublished: status.spool.unconfirmed },
        spool:
          status === undefined
            ? null
            : {
                bytes: status.spool.bytes,
                segments: status.spool.segments,
                next_offset: status.spool.nextOffset,
                confirmed_offset: status.spool.confirmedOffset,
                torn_records: status.spool.tornRecords,
                corrupt_records: status.spool.corruptRecords,
              },
        queues:
          report === undefined
            ? null
            : {
                source: report.source,
                node: report.node,
                error: report.error,
                fallback_reason: report.fallbackReason,
                items: report.queues,
              },
        event_loop: eventLoop?.snapshot() ?? null,
        ledger: ledgerWindow,
      };
    },
  );
};

export default healthRoutes;
