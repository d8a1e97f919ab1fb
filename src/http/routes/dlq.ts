/** The dead-letter archive's admin routes: thin wiring from HTTP to {@link DlqService}. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import {
  DeadLetterDetail,
  DeadLetterIdParams,
  DeadLetterListQuery,
  DeadLetterPage,
  ReplayBody,
  ReplayResultSchema,
} from '../../consumers/dlq/dlq-schemas.ts';
import type { DlqService } from '../../consumers/dlq/dlq-service.ts';
import type { DlqActor } from '../../consumers/dlq/dlq-store.ts';
import { DeadLetterNotFoundError } from '../../errors.ts';
import { errorResponses } from '../error-response.ts';

export interface DlqRoutesOptions {
  dlq: DlqService;
}

const security = [{ apiKey: [] }];

/** The key that asked: every admin route has one (the authentication hook refused the rest). */
function actorOf(request: FastifyRequest): DlqActor {
  const principal = request.principal;
  if (principal === undefined) throw new Error('an admin route ran without a principal');
  return { label: `api-key:${principal.keyId}`, keyId: principal.keyId, userId: principal.userId };
}

const dlqRoutes: FastifyPluginAsyncTypebox<DlqRoutesOptions> = async (app, { dlq }) => {
  app.get(
    '/dlq',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['dlq'],
        summary: 'List dead letters, newest first (keyset-paginated)',
        security,
        querystring: DeadLetterListQuery,
        response: { 200: DeadLetterPage, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => dlq.list(request.query),
  );

  app.get(
    '/dlq/:id',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['dlq'],
        summary: 'Get a dead letter: error, stack trace, headers (x-death included) and body',
        security,
        params: DeadLetterIdParams,
        response: { 200: DeadLetterDetail, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const deadLetter = await dlq.get(request.params.id);
      if (deadLetter === undefined) throw new DeadLetterNotFoundError(request.params.id);
      return deadLetter;
    },
  );

  app.post(
    '/dlq/replay',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['dlq'],
        summary: 'Republish dead letters to the queue they failed in, with a fresh retry budget',
        description:
          'By ids or by filter, oldest first, at most `max`. Each copy goes only to its original queue, ' +
          'confirmed by RabbitMQ before the dead letter is marked replayed. Consumers de-duplicate by ' +
          'event id, so an event already applied changes nothing. Recorded with the key in dlq_operations ' +
          'and in the audit trail (`dlq.replayed` records: GET /audit?event_type=dlq.replayed).',
        security,
        body: ReplayBody,
        response: { 200: ReplayResultSchema, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const traceparent = request.headers.traceparent;
      return dlq.replay(request.body, {
        actor: actorOf(request),
        correlationId: request.correlationId || undefined,
        traceparent: typeof traceparent === 'string' ? traceparent : undefined,
      });
    },
  );

  app.delete(
    '/dlq/:id',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['dlq'],
        summary: 'Delete a dead letter (recorded with the key in dlq_operations)',
        security,
        params: DeadLetterIdParams,
        response: {
          204: Type.Null({ description: 'Deleted' }),
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      if (!(await dlq.delete(request.params.id, actorOf(request)))) {
        throw new DeadLetterNotFoundError(request.params.id);
      }
      return reply.code(204).send(null);
    },
  );
};

export default dlqRoutes;
