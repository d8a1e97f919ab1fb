/**
 * `GET /audit`: the audit trail, filtered and paged; `GET /audit/keyless`: the keyless client errors it
 * keeps as counts. Admin only: the trail says who (which key) did and
 * read what, when, across every model — more than a reader or writer may see, and a map of everyone's
 * activity. Thin wiring to ../../consumers/audit/audit-query.ts.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import { AuditPage, AuditQuery, queryAuditTrail } from '../../consumers/audit/audit-query.ts';
import {
  KeylessCounts,
  KeylessCountsQuery,
  queryKeylessCounts,
} from '../../consumers/audit/keyless-counts.ts';
import { errorResponses } from '../error-response.ts';

export interface AuditRoutesOptions {
  pool: pg.Pool;
}

const auditRoutes: FastifyPluginAsyncTypebox<AuditRoutesOptions> = async (app, { pool }) => {
  app.get(
    '/audit',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['audit'],
        summary: 'The audit trail, newest first (keyset-paginated); admin only',
        description:
          'Every model lifecycle event, model read, filter and API error, with its full envelope. ' +
          '`from` is inclusive and `to` exclusive, both on the time the event occurred.',
        security: [{ apiKey: [] }],
        querystring: AuditQuery,
        response: { 200: AuditPage, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => queryAuditTrail(pool, request.query),
  );
  app.get(
    '/audit/keyless',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['audit'],
        summary:
          'Client errors of requests without a valid key, counted per day, status and code; admin only',
        description:
          'The audit trail keeps each keyless 4xx as a record for AUDIT_KEYLESS_RETENTION_DAYS, then only ' +
          'as a count (see docs/reference/security.md). `count` covers both; `pruned` is the part kept as ' +
          'a count only. `pruned_through` is the head of the latest pruning of the `~keyless` chain.',
        security: [{ apiKey: [] }],
        querystring: KeylessCountsQuery,
        response: { 200: KeylessCounts, ...errorResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => queryKeylessCounts(pool, request.query),
  );
};

export default auditRoutes;
