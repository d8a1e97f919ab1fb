/** `GET /telemetry/ledger`: the loss ledger of a time range — events per stage, and per consumer what is missing. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { LedgerQuery } from '../../ledger/ledger-query.ts';
import { LEDGER_CONSUMERS } from '../../ledger/ledger-summary.ts';
import { resolveTimeRange } from '../../time-range.ts';
import { errorResponses } from '../error-response.ts';
import { rangeFields } from '../time-range-query.ts';

export interface LedgerRoutesOptions {
  ledger: LedgerQuery;
}

const Count = (description: string) => Type.Integer({ description });

export const LedgerResponse = Type.Object({
  from: Type.String({ format: 'date-time' }),
  to: Type.String({ format: 'date-time' }),
  emitted: Count('Events the API emitted (one per request)'),
  spooled: Count('Events written to a spool'),
  dropped: Count('emitted − spooled: refused by the spool; /health says why'),
  confirmed: Count('Spooled events the broker confirmed'),
  unconfirmed: Count('spooled − confirmed: still in a spool, waiting for the broker'),
  consumers: Type.Array(
    Type.Object({
      consumer: Type.Enum(Object.keys(LEDGER_CONSUMERS)),
      queue: Type.String(),
      expected: Count('Spooled events of the types routed to its queue'),
      applied: Count('Events it applied (each once, whatever was redelivered)'),
      missing: Type.Integer({
        minimum: 0,
        description:
          'Spooled events (as the API has counted them so far) not applied: in transit, in its queue, or dead-lettered (see GET /dlq). Never negative; zero once settled',
      }),
      applied_unflushed: Type.Integer({
        minimum: 0,
        description:
          'Events applied whose count the API has not written yet (every LEDGER_FLUSH_INTERVAL_MS), per minute and type: in flight in the ledger, left out of missing',
      }),
    }),
  ),
});

const ledgerRoutes: FastifyPluginAsyncTypebox<LedgerRoutesOptions> = async (app, { ledger }) => {
  app.get(
    '/telemetry/ledger',
    {
      config: { role: 'reader' },
      schema: {
        tags: ['telemetry'],
        summary: 'The loss ledger: events per stage and per consumer, and the gap between them',
        description:
          'Counted per minute of the events’ own timestamps, so all stages cover the same events. A gap in ' +
          'the last seconds is events in transit; a gap that stays is events waiting (broker down, consumer ' +
          'stopped, dead letters) or lost.',
        security: [{ apiKey: [] }],
        querystring: Type.Object(rangeFields('minute'), { additionalProperties: false }),
        response: { 200: LedgerResponse, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => ledger.summary(resolveTimeRange(request.query)),
  );
};

export default ledgerRoutes;
