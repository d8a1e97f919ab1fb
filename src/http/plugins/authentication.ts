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
    /** Why a route that needs a key refuses this request's (missing, unknown or revoked). */
    authFailure: AuthError | undefined;
  }
}

export interface AuthenticationOptions {
  apiKeys: ApiKeyStore;
}

export default fp<AuthenticationOptions>(
  async function authentication(app: FastifyInstance, { apiKeys }) {
    app.decorateRequest('principal', undefined);
    app.decorateRequest('authFailure', undefined);
    // A missing or refused key is answered (401) in preParsing, not here: the keyless rate limit's
    // onRequest hook (rate-limit.ts) runs in between, so requests with a bad key are limited per address
    // like those with none.
    app.addHook('onRequest', async (request) => {
      const required = request.routeOptions.config.role;
      if (required === undefined) return;
      const header = request.headers['x-api-key'];
      if (typeof header !== 'string' || header === '') {
        request.authFailure = new AuthError('UNAUTHENTICATED', 'missing x-api-key header', {
          field: 'x-api-key',
        });
        return;
      }
      const principal = await apiKeys.verify(header);
      if (principal === undefined) {
        request.authFailure = new AuthError('UNAUTHENTICATED', 'unknown or revoked API key', {
          field: 'x-api-key',
        });
        return;
      }
      request.principal = principal;
      if (!roleAllows(principal.role, required)) {
        throw new AuthError(
          'FORBIDDEN',
          `this action needs the '${required}' role; the key has '${principal.role}'`,
        );
      }
    });
    app.addHook('preParsing', async (request) => {
      if (request.authFailure !== undefined) throw request.authFailure;
    });
  },
  { name: 'authentication', dependencies: ['error-handler'] },
);
