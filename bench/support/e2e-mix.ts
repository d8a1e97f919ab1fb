/**
 * The request mix of the end-to-end benchmark (bench/e2e.ts): what a registry's clients do, reads first,
 * with every kind of write and the errors clients make. Each connection loops over blocks of 20 requests:
 *
 * | requests per 20 | request                                                  | status | event             |
 * | --------------: | -------------------------------------------------------- | -----: | ----------------- |
 * |              10 | GET /models/{id} of a seeded model                       |    200 | model.queried     |
 * |               4 | GET /models?… (4 different filters, sorts and pages)     |    200 | filter.executed   |
 * |               1 | POST /models, a new unique model id                      |    201 | model.registered  |
 * |               2 | PATCH /models/{id}: a seeded model, and the connection's last registered one | 200 | model.updated |
 * |               1 | POST /models/{id}/deactivate of the connection's last registered model | 200 | model.deactivated |
 * |               1 | GET /models/{id} of a model that does not exist (intended) |  404 | api.error         |
 * |               1 | POST /models with context_window −5 (intended)           |    400 | api.error         |
 *
 * So 75% reads (70% without the 404), 20% writes, 10% intended client errors, and every request is one
 * event routed to the audit trail (all of them), analytics (all but the errors), the error log (the
 * errors) and the metrics queue (all). Seeded models patched by different connections are disjoint, so
 * no two connections update the same model at once; a connection deactivates and patches only a model it
 * registered itself (in an earlier block, so it exists).
 *
 * Every request knows its own expected status: any other status is "unexpected" and counted as such,
 * as are connection errors and time-outs.
 */
import type { Request } from 'autocannon';
import { createdModel } from './seed-models.ts';

export type RequestKind =
  | 'get'
  | 'filter'
  | 'register'
  | 'update'
  | 'deactivate'
  | 'missing (404)'
  | 'invalid (400)';

export const EXPECTED_STATUS: Record<RequestKind, number> = {
  get: 200,
  filter: 200,
  register: 201,
  update: 200,
  deactivate: 200,
  'missing (404)': 404,
  'invalid (400)': 400,
};

/** The mix, as documented above: the kinds in one block's order. */
export const BLOCK: readonly RequestKind[] = [
  'get',
  'filter',
  'get',
  'register',
  'get',
  'update',
  'get',
  'filter',
  'get',
  'missing (404)',
  'get',
  'deactivate',
  'get',
  'filter',
  'get',
  'update',
  'get',
  'invalid (400)',
  'get',
  'filter',
];

export const FILTER_QUERIES = [
  '/models?limit=50',
  '/models?vendor_id=Anthropic&is_active=true&limit=20',
  '/models?capability_tier=Tier_1&function_call_support=true&sort=-context_window&limit=50',
  '/models?min_context_window=128000&max_cost_in_per_mil=5&sort=cost_in_per_mil&limit=100',
];

/** Responses by kind and status, and what did not match the kind's expected status. */
export class StatusTally {
  readonly counts: Record<string, Record<string, number>> = {};
  unexpected = 0;
  intendedErrors = 0;
  total = 0;

  record(kind: RequestKind, status: number): void {
    const ofKind = this.counts[kind] ?? {};
    this.counts[kind] = ofKind;
    ofKind[status] = (ofKind[status] ?? 0) + 1;
    this.total++;
    if (status !== EXPECTED_STATUS[kind]) this.unexpected++;
    else if (status >= 400) this.intendedErrors++;
  }
}

/** What the mix needs of a run: the seeded ids, a unique tag for new ids, and where to count responses. */
export interface MixContext {
  seededIds: readonly string[];
  /** Unique per phase of the benchmark run, so registered model ids never collide. */
  tag: string;
  tally: StatusTally;
  /** Registered so far in this phase, over all connections. */
  registered: { next: number };
}

const modelPath = (id: string) => `/models/${encodeURIComponent(id)}`;
const json = { 'content-type': 'application/json' };

/** The requests connection `client` (of `connections`) loops over. */
export function mixRequests(context: MixContext, client: number, connections: number): Request[] {
  const { seededIds, tally } = context;
  /** This connection's own state: the model it registered last (null until its first 201). */
  const own = { lastRegistered: null as string | null, gets: client * 7919, updates: 0, misses: 0 };
  /** Seeded models only this connection patches (disjoint between connections). */
  const mine = seededIds.filter((_, index) => index % connections === client % connections);
  const patchable = mine.length > 0 ? mine : seededIds;
  const count = (kind: RequestKind) => (status: number) => tally.record(kind, status);
  const requests: Request[] = [];
  let filter = 0;
  let update = 0;
  for (const kind of BLOCK) {
    switch (kind) {
      case 'get':
        requests.push({
          method: 'GET',
          path: modelPath(seededIds[0] as string),
          setupRequest: (request) => {
            request.path = modelPath(seededIds[own.gets++ % seededIds.length] as string);
            return request;
          },
          onResponse: count(kind),
        });
        break;
      case 'filter':
        requests.push({
          method: 'GET',
          path: FILTER_QUERIES[filter++ % FILTER_QUERIES.length] as string,
          onResponse: count(kind),
        });
        break;
      case 'register':
        requests.push({
          method: 'POST',
          path: '/models',
          headers: json,
          setupRequest: (request) => {
            const n = context.registered.next++;
            request.body = JSON.stringify(createdModel(`e2e-${context.tag}/m-${n}`, n));
            return request;
          },
          onResponse: (status, body) => {
            tally.record(kind, status);
            if (status === 201) own.lastRegistered = (JSON.parse(body) as { model_id: string }).model_id;
          },
        });
        break;
      case 'update': {
        const ofOwn = update++ % 2 === 1;
        requests.push({
          method: 'PATCH',
          headers: json,
          setupRequest: (request) => {
            const n = own.updates++;
            const target =
              ofOwn && own.lastRegistered !== null
                ? own.lastRegistered
                : (patchable[n % patchable.length] as string);
            request.path = modelPath(target);
            request.body = JSON.stringify({
              cost_in_per_mil: Math.round((1 + (n % 500) * 0.01) * 100) / 100,
            });
            return request;
          },
          onResponse: count(kind),
        });
        break;
      }
      case 'deactivate':
        requests.push({
          method: 'POST',
          setupRequest: (request) => {
            // Before the connection's first registration: a seeded model of its own (idempotent).
            request.path = `${modelPath(own.lastRegistered ?? (patchable[0] as string))}/deactivate`;
            return request;
          },
          onResponse: count(kind),
        });
        break;
      case 'missing (404)':
        requests.push({
          method: 'GET',
          setupRequest: (request) => {
            request.path = modelPath(`missing/e2e-${client}-${own.misses++}`);
            return request;
          },
          onResponse: count(kind),
        });
        break;
      case 'invalid (400)':
        requests.push({
          method: 'POST',
          path: '/models',
          headers: json,
          body: JSON.stringify({
            model_id: `invalid/e2e-${client}`,
            vendor_id: 'BenchVendor',
            capability_tier: 'Tier_2',
            context_window: -5,
            cost_in_per_mil: 1,
            cost_out_per_mil: 2,
            function_call_support: false,
          }),
          onResponse: count(kind),
        });
        break;
    }
  }
  return requests;
}

/** The event types of one block, in order (what the raw broker loop publishes); the rest are api.error. */
const EVENT_TYPE = {
  get: 'model.queried',
  filter: 'filter.executed',
  register: 'model.registered',
  update: 'model.updated',
  deactivate: 'model.deactivated',
} as const;
export const BLOCK_EVENT_TYPES = BLOCK.map(
  (kind) =>
    (EVENT_TYPE as Partial<Record<RequestKind, (typeof EVENT_TYPE)[keyof typeof EVENT_TYPE]>>)[kind] ??
    'api.error',
);
