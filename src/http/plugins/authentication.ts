/**
 * API-key authentication and role checks. A route opts in with `config: { role }`; routes without it
 * (health, docs) are public. The key is hashed at once and never logged.
 */
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ApiKeyStore, Principal } from '../../auth/api-key-store.ts';
import type { Role } from '../../auth/roles.ts';
import { roleAllows } from '../../auth/roles.ts';
import { AuthError } from '../../errors.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least role allowed to call the route; absent for public routes. */
    role?: Role;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

export interface AuthenticationOptions {
  apiKeys: ApiKeyStore;
}

export default fp<AuthenticationOptions>(
  async function authentication(app: FastifyInstance, { apiKeys }) {
    app.decorateRequest('principal', undefined);
    app.addHook('onRequest', async (request) => {
      const required = request.routeOptions.config.role;
      if (required === undefined) return;
      const header = request.headers['x-api-key'];
      if (typeof header !== 'string' || header === '') {
        throw new AuthError('UNAUTHENTICATED', 'missing x-api-key header', { field: 'x-api-key' });
      }
      const principal = await apiKeys.verify(header);
      if (principal === undefined) {
        throw new AuthError('UNAUTHENTICATED', 'unknown or revoked API key', { field: 'x-api-key' });
      }
      request.principal = principal;
      if (!roleAllows(principal.role, required)) {
        throw new AuthError(
          'FORBIDDEN',
          `this action needs the '${required}' role; the key has '${principal.role}'`,
        );
      }
    });
  },
  { name: 'authentication', dependencies: ['error-handler'] },
);
