/** Liveness (the process answers) and readiness (its dependencies answer). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type pg from 'pg';
import { Type } from 'typebox';

export interface HealthRoutesOptions {
  pool: pg.Pool;
  /** Time PostgreSQL gets to answer the readiness probe, in milliseconds. @default 2000 */
  probeTimeoutMs?: number;
}

const DependencyState = Type.Enum(['up', 'down']);
const Readiness = Type.Object({
  status: Type.Enum(['ready', 'not_ready']),
  checks: Type.Object({ postgres: DependencyState }),
});

async function postgresUp(pool: pg.Pool, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const probe = pool.query('SELECT 1').then(
    () => true,
    () => false,
  );
  try {
    return await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const healthRoutes: FastifyPluginAsyncTypebox<HealthRoutesOptions> = async (
  app,
  { pool, probeTimeoutMs },
) => {
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
        summary: 'Readiness: PostgreSQL answers (503 when it does not)',
        response: { 200: Readiness, 503: Readiness },
      },
    },
    async (_request, reply) => {
      const up = await postgresUp(pool, probeTimeoutMs ?? 2000);
      return reply
        .code(up ? 200 : 503)
        .send({ status: up ? 'ready' : 'not_ready', checks: { postgres: up ? 'up' : 'down' } });
    },
  );
};

export default healthRoutes;
