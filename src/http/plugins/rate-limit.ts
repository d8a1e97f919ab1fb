/**
 * Per-API-key rate limiting (per client address for requests without a valid key). Runs after
 * authentication so that it counts by key, not by a header anyone can vary.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../../errors.ts';

export interface RateLimitOptions {
  /** Requests per key per minute; 0 disables the limiter. */
  perMinute: number;
}

export default fp<RateLimitOptions>(
  async function rateLimiting(app: FastifyInstance, { perMinute }) {
    if (perMinute === 0) return;
    await app.register(rateLimit, {
      global: true,
      hook: 'preHandler',
      max: perMinute,
      timeWindow: 60_000,
      keyGenerator: (request) => request.principal?.keyId ?? `ip:${request.ip}`,
      // Only authenticated routes are limited: health probes never are, and a request without a valid
      // key is turned away before this hook runs.
      allowList: (request) => request.routeOptions.config.role === undefined,
      errorResponseBuilder: (_request, context) =>
        new AppError('RATE_LIMITED', `rate limit of ${context.max} requests per minute exceeded`),
    });
  },
  { name: 'rate-limit', dependencies: ['authentication'] },
);
