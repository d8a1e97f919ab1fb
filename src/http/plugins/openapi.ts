/** The OpenAPI document, generated from the route schemas, with its UI at /docs. */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { ErrorResponse } from '../error-response.ts';

export default fp(
  async function openapi(app: FastifyInstance) {
    app.addSchema(ErrorResponse);
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'telemetry-bus: Model Registry API',
          description:
            'An LLM model registry whose every request is observed by the telemetry bus. ' +
            'Send an API key in `x-api-key`; roles: reader < writer < admin.',
          version: '0.1.0',
        },
        components: {
          securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' } },
        },
        tags: [
          { name: 'models', description: 'Register, read, update, deactivate and filter models' },
          { name: 'health', description: 'Liveness, readiness and the state of the bus' },
          { name: 'events', description: 'JSON Schemas of the telemetry events' },
          { name: 'dlq', description: 'Dead letters: list, inspect, replay, delete (admin only)' },
          { name: 'audit', description: 'The tamper-evident audit trail (admin only)' },
          {
            name: 'analytics',
            description: 'Usage analytics from the telemetry bus: popular models and filter usage, by hour',
          },
        ],
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  },
  { name: 'openapi' },
);
