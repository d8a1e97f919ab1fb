/**
 * The request mix of the end-to-end benchmark: what a registry's clients do, reads first, with every kind
 * of write and the errors clients make. Each connection loops over blocks of 20 requests (BLOCK): 10 GET
 * /models/{id} of a seeded model (200, model.queried), 4 GET /models?… with 4 different filters, sorts and
 * pages (200, filter.executed), 1 POST /models of a new unique id (201, model.registered), 2 PATCH
 * /models/{id} of a seeded model and of the connection's last registered one (200, model.updated), 1 POST
 * /models/{id}/deactivate of the connection's last registered model (200, model.deactivated), 1 GET of a
 * model that does not exist (404) and 1 POST with context_window −5 (400), both api.error. So 75% reads,
 * 20% writes, 10% intended client errors, and each request is one event. Seeded models patched by
 * different connections are disjoint. Every request knows its expected status: any other is "unexpected".
 */
import type { Request } from 'autocannon';
import { createdModel } from './seed-models.ts';

/** Each kind: its expected status and event type. */
const KINDS = {
  get: [200, 'model.queried'],
  filter: [200, 'filter.executed'],
  register: [201, 'model.registered'],
  update: [200, 'model.updated'],
  deactivate: [200, 'model.deactivated'],
  'missing (404)': [404, 'api.error'],
  'invalid (400)': [400, 'api.error'],
} as const;

export type RequestKind = keyof typeof KINDS;

export const EXPECTED_STATUS = Object.fromEntries(
  Object.entries(KINDS).map(([kind, [status]]) => [kind, status]),
) as Record<RequestKind, number>;

/** The kinds in one block's order. */
export const BLOCK: readonly RequestKind[] = [
  ...['get', 'filter', 'get', 'register', 'get', 'update', 'get', 'filter', 'get', 'missing (404)'],
  ...['get', 'deactivate', 'get', 'filter', 'get', 'update', 'get', 'invalid (400)', 'get', 'filter'],
] as RequestKind[];

/** The event types of one block, in order (what the raw broker loop publishes). */
export const BLOCK_EVENT_TYPES = BLOCK.map((kind) => KINDS[kind][1]);

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
  const setup = (change: (request: Request) => void) => (request: Request) => {
    change(request);
    return request;
  };
  let filters = 0;
  let updates = 0;
  const build: Record<RequestKind, () => Request> = {
    get: () => ({
      method: 'GET',
      path: modelPath(seededIds[0] as string),
      setupRequest: setup((r) => {
        r.path = modelPath(seededIds[own.gets++ % seededIds.length] as string);
      }),
    }),
    filter: () => ({ method: 'GET', path: FILTER_QUERIES[filters++ % FILTER_QUERIES.length] as string }),
    register: () => ({
      method: 'POST',
      path: '/models',
      headers: json,
      setupRequest: setup((r) => {
        const n = context.registered.next++;
        r.body = JSON.stringify(createdModel(`e2e-${context.tag}/m-${n}`, n));
      }),
      onResponse: (status, body) => {
        tally.record('register', status);
        if (status === 201) own.lastRegistered = (JSON.parse(body) as { model_id: string }).model_id;
      },
    }),
    update: () => {
      // Every other update patches the connection's own last registered model.
      const ofOwn = updates++ % 2 === 1;
      return {
        method: 'PATCH',
        headers: json,
        setupRequest: setup((r) => {
          const n = own.updates++;
          const target =
            ofOwn && own.lastRegistered !== null ? own.lastRegistered : patchable[n % patchable.length];
          r.path = modelPath(target as string);
          r.body = JSON.stringify({ cost_in_per_mil: Math.round((1 + (n % 500) * 0.01) * 100) / 100 });
        }),
      };
    },
    deactivate: () => ({
      method: 'POST',
      // Before the connection's first registration: a seeded model of its own (idempotent).
      setupRequest: setup((r) => {
        r.path = `${modelPath(own.lastRegistered ?? (patchable[0] as string))}/deactivate`;
      }),
    }),
    'missing (404)': () => ({
      method: 'GET',
      setupRequest: setup((r) => {
        r.path = modelPath(`missing/e2e-${client}-${own.misses++}`);
      }),
    }),
    'invalid (400)': () => ({
      method: 'POST',
      path: '/models',
      headers: json,
      body: JSON.stringify({ ...createdModel(`invalid/e2e-${client}`, 0), context_window: -5 }),
    }),
  };
  return BLOCK.map((kind) => ({
    onResponse: (status: number) => tally.record(kind, status),
    ...build[kind](),
  }));
}
