/** `POST /telemetry/selftest` (admin): a synthetic event through every exchange and queue, timed. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import { Type } from 'typebox';
import type { EventBus } from '../../bus/event-bus.ts';
import { LEDGER_CONSUMERS } from '../../ledger/ledger-summary.ts';
import { runSelfTest } from '../../ledger/self-test.ts';
import { errorResponses } from '../error-response.ts';

export interface SelfTestRoutesOptions {
  bus: EventBus;
  pool: pg.Pool;
}

const SelfTestResponse = Type.Object({
  ok: Type.Boolean({ description: 'Every consumer applied every synthetic event routed to it in time' }),
  correlation_id: Type.String({
    description: 'Of the synthetic events (they appear in no audit record or metric)',
  }),
  consumers: Type.Array(
    Type.Object({
      consumer: Type.Enum(Object.keys(LEDGER_CONSUMERS)),
      queue: Type.String(),
      sent: Type.Integer({ minimum: 0 }),
      applied: Type.Integer({ minimum: 0 }),
      latency_ms: Type.Union([Type.Number({ minimum: 0 }), Type.Null()], {
        description:
          'From emit to the consumer applying the last of them, in ms; null if not all were applied',
      }),
    }),
  ),
});

const selfTestRoutes: FastifyPluginAsyncTypebox<SelfTestRoutesOptions> = async (app, { bus, pool }) => {
  app.post(
    '/telemetry/selftest',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['telemetry'],
        summary: 'Send a synthetic event through every exchange and queue and time each consumer',
        description:
          'Three events marked source "selftest" (a model read, an error, a plain request) go through the ' +
          'spool, the broker and every queue; each consumer records them as applied without any effect. ' +
          'Answers when all are applied or after timeout_ms, with ok false and the consumers that did not.',
        security: [{ apiKey: [] }],
        querystring: Type.Object(
          {
            timeout_ms: Type.Optional(
              Type.Integer({
                minimum: 100,
                maximum: 60_000,
                default: 10_000,
                description: 'Time to wait, in ms',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: SelfTestResponse, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) =>
      runSelfTest({
        bus,
        pool,
        timeoutMs: request.query.timeout_ms,
        userId: request.principal?.userId ?? null,
      }),
  );
};

export default selfTestRoutes;
