/**
 * Rate limiting, two limits on one store: per API key for requests with a valid key, and per client
 * address for requests without one (issue 17, item 2: keyless traffic to an unknown route, or with a
 * missing or wrong key, is cheap to send and each request used to become an audit row). The keyed limit
 * runs after authentication so that it counts by key, not by a header anyone can vary; the keyless one
 * runs in `onRequest`, after authentication has said whether the key is valid but before a refused key
 * is answered (see authentication.ts), so a flood of bad keys is limited like a flood without any.
 *
 * Every refusal is counted in `telemetry_http_rate_limited_total{by}`. A keyless refusal emits no event:
 * a flood that is refused must not become a flood of audit rows; the counter is its record.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, type Registry } from 'prom-client';
import { AppError } from '../../errors.ts';

export const RATE_LIMITED_METRIC = 'telemetry_http_rate_limited_total';

/** Routes never limited: orchestrators probe them, often, from one address. */
const PROBES = new Set(['/livez', '/readyz']);

export interface RateLimitOptions {
  /** Requests per API key per minute; 0 disables this limit. */
  perMinute: number;
  /** Requests without a valid key per client address per minute; 0 disables this limit. */
  keylessPerMinute: number;
  /** Where refusals are counted; not counted when absent. */
  registry?: Registry | undefined;
}

function refusals(registry: Registry | undefined): Counter<'by'> | undefined {
  if (registry === undefined) return undefined;
  const existing = registry.getSingleMetric(RATE_LIMITED_METRIC) as Counter<'by'> | undefined;
  if (existing !== undefined) return existing;
  const counter = new Counter({
    name: RATE_LIMITED_METRIC,
    help: 'Requests refused with 429 by a rate limit: by="key" per API key, by="address" per client address for requests without a valid key',
    labelNames: ['by'],
    registers: [registry],
  });
  counter.inc({ by: 'key' }, 0);
  counter.inc({ by: 'address' }, 0);
  return counter;
}

function limited(max: number, what: string): AppError {
  return new AppError('RATE_LIMITED', `rate limit of ${max} requests per minute ${what} exceeded`);
}

export default fp<RateLimitOptions>(
  async function rateLimiting(app: FastifyInstance, { perMinute, keylessPerMinute, registry }) {
    if (perMinute === 0 && keylessPerMinute === 0) return;
    const counter = refusals(registry);
    // One store (an LRU of 5,000 keys by default, so bounded) for both limits; they never share a key.
    await app.register(rateLimit, { global: false, timeWindow: 60_000 });
    if (keylessPerMinute > 0) {
      const keyless = app.createRateLimit({
        max: keylessPerMinute,
        timeWindow: 60_000,
        keyGenerator: (request: FastifyRequest) => `address:${request.ip}`,
      });
      app.addHook('onRequest', async (request, reply) => {
        if (request.principal !== undefined) return;
        if (PROBES.has(request.routeOptions.url ?? '')) return;
        const result = await keyless(request);
        if (result.isAllowed || !result.isExceeded) return;
        counter?.inc({ by: 'address' });
        request.telemetryEmitted = true;
        reply.header('retry-after', String(result.ttlInSeconds));
        throw limited(keylessPerMinute, 'per client address without a valid API key');
      });
    }
    if (perMinute > 0) {
      const keyed = app.rateLimit({
        max: perMinute,
        timeWindow: 60_000,
        keyGenerator: (request: FastifyRequest) => `key:${request.principal?.keyId}`,
        // Only authenticated requests: health probes never are, and a request without a valid key is
        // the keyless limit's.
        allowList: (request: FastifyRequest) => request.principal === undefined,
        onExceeded: () => counter?.inc({ by: 'key' }),
        errorResponseBuilder: (_request, context) => limited(context.max, 'per API key'),
      });
      app.addHook('preHandler', keyed);
    }
  },
  { name: 'rate-limit', dependencies: ['authentication', 'telemetry'] },
);
