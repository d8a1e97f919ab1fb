/**
 * GET /schemas/events and /schemas/events/:event_type: the served schemas are the code's and the docs',
 * an unknown type is a 400 in the API's error format, and the routes are public. Most cases run on a bare
 * Fastify instance (error handler, validators, this plugin); the last one checks the real app once the
 * plugin is registered there.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import Fastify, { type FastifyInstance } from 'fastify';
import { eventJsonSchemas } from '../../src/bus/event-schemas.ts';
import { EVENT_TYPES, SCHEMA_VERSION } from '../../src/bus/event-types.ts';
import errorHandler from '../../src/http/plugins/error-handler.ts';
import eventSchemaRoutes from '../../src/http/routes/event-schemas.ts';
import { schemaCompilers } from '../../src/http/schema-compilers.ts';
import { build } from '../helper.ts';
import { exampleEvent } from '../support/event-examples.ts';

async function bareApp(): Promise<FastifyInstance> {
  const app = Fastify();
  app.setValidatorCompiler(schemaCompilers());
  await app.register(errorHandler);
  await app.register(eventSchemaRoutes);
  await app.ready();
  after(() => app.close());
  return app;
}

const app = await bareApp();
const schemas = eventJsonSchemas();

describe('GET /schemas/events', () => {
  test('lists every event type with its schema and the schema version', async () => {
    const response = await app.inject({ method: 'GET', url: '/schemas/events' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
    const body = response.json();
    assert.deepEqual(body, { schema_version: SCHEMA_VERSION, events: schemas });
    assert.deepEqual(Object.keys(body.events), [...EVENT_TYPES]);
  });

  test('answers the same bytes every time', async () => {
    const first = await app.inject({ method: 'GET', url: '/schemas/events' });
    const second = await app.inject({ method: 'GET', url: '/schemas/events' });
    assert.equal(first.body, second.body);
  });
});

describe('GET /schemas/events/:event_type', () => {
  for (const type of EVENT_TYPES) {
    test(`${type}: the schema of the code and of docs/events, which accepts the example event`, async () => {
      const response = await app.inject({ method: 'GET', url: `/schemas/events/${type}` });
      assert.equal(response.statusCode, 200);
      assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
      const served = response.json();
      assert.deepEqual(served, schemas[type]);
      const documented = JSON.parse(
        readFileSync(new URL(`../../docs/events/${type}.json`, import.meta.url), 'utf8'),
      );
      assert.deepEqual(served, documented);

      // What a consumer does with it: a fresh validator built from the served document alone.
      const ajv = new Ajv({ strict: true, allErrors: true });
      addFormats.default(ajv);
      const validate = ajv.compile(served);
      assert.ok(validate(exampleEvent(type)), ajv.errorsText(validate.errors));
      assert.equal(validate(exampleEvent(type, { event_id: 'nope' })), false);
    });
  }

  for (const unknown of ['model.deleted', 'model.registered.json', 'MODEL.REGISTERED', '%20']) {
    test(`an unknown event type (${unknown}) is 400 VALIDATION_FAILED naming event_type`, async () => {
      const response = await app.inject({ method: 'GET', url: `/schemas/events/${unknown}` });
      assert.equal(response.statusCode, 400);
      const { error } = response.json();
      assert.equal(error.code, 'VALIDATION_FAILED');
      assert.equal(error.field, 'event_type');
      assert.equal(error.message, `event_type must be one of: ${EVENT_TYPES.join(', ')}`);
    });
  }

  test('a path below an event type is ROUTE_NOT_FOUND', async () => {
    const response = await app.inject({ method: 'GET', url: '/schemas/events/api.error/extra' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.json().error.code, 'ROUTE_NOT_FOUND');
  });
});

test('in the real app: public, and in the OpenAPI document under the events tag', async (t) => {
  const { app: real } = await build({ after });
  if (!real.hasRoute({ method: 'GET', url: '/schemas/events/:event_type' })) {
    t.skip('src/http/routes/event-schemas.ts is not registered in src/http/app.ts yet');
    return;
  }
  for (const url of ['/schemas/events', '/schemas/events/api.error']) {
    const response = await real.inject({ method: 'GET', url });
    assert.equal(response.statusCode, 200, `${url} without an API key`);
  }
  const openapi = real.swagger() as { paths?: Record<string, { get?: { tags?: string[] } }> };
  const operation = openapi.paths?.['/schemas/events/{event_type}']?.get;
  assert.deepEqual(operation?.tags, ['events']);
});
