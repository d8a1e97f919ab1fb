/**
 * The event schemas, compiled exactly as a consumer would (ajv 8 in strict mode, with formats): the
 * example of each type is valid, and each way an event can be wrong is caught. The invalid events are
 * built by breaking one thing of a valid example, so each case fails for the reason it names.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import {
  DLQ_REPLAYED_MAX_DEAD_LETTERS,
  EVENT_SCHEMAS,
  eventJsonSchemas,
  STACK_TRACE_MAX_LENGTH,
} from '../../../src/bus/event-schemas.ts';
import { EVENT_TYPES, type EventType, MODEL_EVENT_TYPES } from '../../../src/bus/event-types.ts';
import { exampleEvent } from '../../support/event-examples.ts';

// Strict mode with nothing relaxed: TypeBox's output has no unknown keywords, no union `type` arrays and
// declares every required property, so a schema that stops compiling here would also be rejected by a
// strict consumer.
const ajv = new Ajv({ strict: true, allErrors: true });
addFormats.default(ajv);
const schemas = eventJsonSchemas();
const validators = Object.fromEntries(
  EVENT_TYPES.map((type) => [type, ajv.compile(schemas[type])]),
) as Record<EventType, ValidateFunction>;

const isModelEvent = (type: EventType) => (MODEL_EVENT_TYPES as readonly string[]).includes(type);
/** Operators' actions: no request metadata. */
const isAdminEvent = (type: EventType) => type === 'dlq.replayed';

type Json = Record<string, unknown>;

/** A copy of the example of `type` with `change` applied to it. */
function broken(type: EventType, change: (event: Json) => void): Json {
  const event = exampleEvent(type) as unknown as Json;
  change(event);
  return event;
}

function assertValid(type: EventType, event: unknown): void {
  const validate = validators[type];
  assert.ok(validate(event), `${type}: ${ajv.errorsText(validate.errors)}`);
}

/** Invalid, and for the expected reason: an error at `instancePath` with `keyword`. */
function assertInvalid(type: EventType, event: unknown, keyword: string, instancePath = ''): void {
  const validate = validators[type];
  assert.equal(validate(event), false, `${type}: accepted ${JSON.stringify(event).slice(0, 200)}`);
  const reasons = (validate.errors ?? []).map((error) => `${error.instancePath} ${error.keyword}`);
  assert.ok(
    reasons.includes(`${instancePath} ${keyword}`),
    `${type}: expected ${instancePath} ${keyword}, got ${reasons.join(', ')}`,
  );
}

test('every schema compiles, has its own $id and is the JSON of its TypeBox schema', () => {
  const ids = EVENT_TYPES.map((type) => schemas[type].$id);
  assert.equal(new Set(ids).size, EVENT_TYPES.length);
  for (const type of EVENT_TYPES) {
    assert.equal(schemas[type].title, type);
    assert.match(String(schemas[type].$id), new RegExp(`/${type.replace('.', '\\.')}\\.json$`));
    assert.deepEqual(schemas[type], JSON.parse(JSON.stringify(EVENT_SCHEMAS[type])));
  }
});

for (const type of EVENT_TYPES) {
  describe(type, () => {
    test('the example is valid', () => {
      assertValid(type, exampleEvent(type));
    });

    test('a missing required field is rejected', () => {
      const required = schemas[type].required as string[];
      assert.ok(required.length > 0);
      for (const field of required) {
        assertInvalid(
          type,
          broken(type, (event) => delete event[field]),
          'required',
        );
      }
    });

    test('another event type is rejected', () => {
      const other = EVENT_TYPES.find((candidate) => candidate !== type) as EventType;
      assertInvalid(
        type,
        broken(type, (event) => (event.event_type = other)),
        'const',
        '/event_type',
      );
      assertInvalid(
        type,
        broken(type, (event) => (event.schema_version = 2)),
        'const',
        '/schema_version',
      );
    });

    test('an extra field is rejected, at the top and inside', () => {
      assertInvalid(
        type,
        broken(type, (event) => (event.extra = 1)),
        'additionalProperties',
      );
      for (const part of isAdminEvent(type) ? ['data', 'error'] : ['data', 'metadata', 'error']) {
        assertInvalid(
          type,
          broken(type, (event) => ((event[part] as Json).extra = 1)),
          'additionalProperties',
          `/${part}`,
        );
      }
    });

    test('event_id must be a UUID', () => {
      for (const id of [
        'not-a-uuid',
        '0b3f6a1c7d2e4c5b9a8f000000000001',
        '0b3f6a1c-7d2e-4c5b-9a8f-00000000000',
      ]) {
        assertInvalid(
          type,
          broken(type, (event) => (event.event_id = id)),
          'format',
          '/event_id',
        );
      }
      // ajv's uuid format takes these; the uuid columns (urn) and the text ones (case) would not agree.
      for (const id of [
        'urn:uuid:0b3f6a1c-7d2e-4c5b-9a8f-000000000001',
        '0B3F6A1C-7D2E-4C5B-9A8F-000000000001',
      ]) {
        assertInvalid(
          type,
          broken(type, (event) => (event.event_id = id)),
          'pattern',
          '/event_id',
        );
      }
    });

    test('user_id is 64 lower-case hex digits, or null', () => {
      assertValid(type, exampleEvent(type, { user_id: null }));
      assertValid(type, exampleEvent(type, { user_id: 'a'.repeat(64) }));
      for (const userId of ['A'.repeat(64), 'g'.repeat(64), 'a'.repeat(63), 'a'.repeat(65), 'sk-live-key']) {
        assertInvalid(
          type,
          broken(type, (event) => (event.user_id = userId)),
          'pattern',
          '/user_id',
        );
      }
    });

    test('timestamp is UTC with milliseconds', () => {
      for (const timestamp of [
        '2025-01-15T10:30:00Z',
        '2025-01-15T10:30:00.123+00:00',
        '2025-01-15T10:30:00.1Z',
      ]) {
        assertInvalid(
          type,
          broken(type, (event) => (event.timestamp = timestamp)),
          'pattern',
          '/timestamp',
        );
      }
      // Matches the pattern, but is no date: the format catches it.
      assertInvalid(
        type,
        broken(type, (event) => (event.timestamp = '2025-13-45T10:30:00.123Z')),
        'format',
        '/timestamp',
      );
    });

    test('source and correlation_id are constrained', () => {
      assertInvalid(
        type,
        broken(type, (event) => (event.source = 'cron')),
        'enum',
        '/source',
      );
      for (const correlationId of ['', 'has space', 'x'.repeat(129), 'ünïcode']) {
        assertInvalid(
          type,
          broken(type, (event) => (event.correlation_id = correlationId)),
          'pattern',
          '/correlation_id',
        );
      }
    });

    if (isModelEvent(type)) {
      test('sequence is required, a positive integer', () => {
        assertInvalid(
          type,
          broken(type, (event) => delete event.sequence),
          'required',
        );
        assertInvalid(
          type,
          broken(type, (event) => (event.sequence = 0)),
          'minimum',
          '/sequence',
        );
        assertInvalid(
          type,
          broken(type, (event) => (event.sequence = 1.5)),
          'type',
          '/sequence',
        );
      });
    } else {
      test('sequence is not allowed', () => {
        assertInvalid(
          type,
          broken(type, (event) => (event.sequence = 1)),
          'additionalProperties',
        );
      });
    }

    if (type === 'api.error') {
      test('error is filled in: type and message strings, a stack trace of bounded length or null', () => {
        assertValid(
          type,
          exampleEvent(type, {
            error: { type: 'INTERNAL_ERROR', message: 'internal error', stack_trace: 'at x' },
          }),
        );
        assertInvalid(
          type,
          broken(type, (event) => (event.error = { type: null, message: null, stack_trace: null })),
          'type',
          '/error/type',
        );
        assertInvalid(
          type,
          broken(
            type,
            (event) =>
              (event.error = {
                type: 'X',
                message: 'm',
                stack_trace: 's'.repeat(STACK_TRACE_MAX_LENGTH + 1),
              }),
          ),
          'maxLength',
          '/error/stack_trace',
        );
      });
    } else {
      test('error fields must all be null on a success event', () => {
        for (const field of ['type', 'message', 'stack_trace']) {
          assertInvalid(
            type,
            broken(type, (event) => ((event.error as Json)[field] = 'MODEL_NOT_FOUND')),
            'type',
            `/error/${field}`,
          );
        }
      });
    }

    if (isAdminEvent(type)) {
      test('metadata is null: an operator action is not a request', () => {
        assertInvalid(
          type,
          broken(type, (event) => {
            event.metadata = exampleEvent('api.request').metadata;
          }),
          'type',
          '/metadata',
        );
      });
      return;
    }

    test('metadata is checked: response code range, nullable fields', () => {
      assertInvalid(
        type,
        broken(type, (event) => ((event.metadata as Json).response_code = 600)),
        'maximum',
        '/metadata/response_code',
      );
      assertInvalid(
        type,
        broken(type, (event) => ((event.metadata as Json).request_duration_ms = -1)),
        'minimum',
        '/metadata/request_duration_ms',
      );
      assertInvalid(
        type,
        broken(type, (event) => ((event.metadata as Json).ip_address = null)),
        'type',
        '/metadata/ip_address',
      );
      assertValid(
        type,
        broken(type, (event) =>
          Object.assign(event.metadata as Json, { user_agent: null, route: null, cache_hit: null }),
        ),
      );
    });
  });
}

test('filter.executed data: filters as applied, cursor a flag', () => {
  const data = (change: (filters: Json) => void) =>
    broken('filter.executed', (event) => change((event.data as { filters: Json }).filters));
  assertValid(
    'filter.executed',
    data((filters) => Object.assign(filters, { vendor_id: 'OpenAI', min_context_window: 8000 })),
  );
  assertInvalid(
    'filter.executed',
    data((filters) => (filters.cursor = 'abc')),
    'type',
    '/data/filters/cursor',
  );
  assertInvalid(
    'filter.executed',
    data((filters) => (filters.capability_tier = 'Tier_9')),
    'enum',
    '/data/filters/capability_tier',
  );
});

test('dlq.replayed data: one part of a replay, its dead letters bounded in number', () => {
  assertValid(
    'dlq.replayed',
    broken('dlq.replayed', (event) => {
      Object.assign(event.data as Json, {
        selection: { ids: 3, filter: null, max: 1000 },
        dead_letters: [],
      });
    }),
  );
  const entry = (exampleEvent('dlq.replayed').data.dead_letters[0] ?? {}) as Json;
  assertInvalid(
    'dlq.replayed',
    broken('dlq.replayed', (event) => {
      (event.data as Json).dead_letters = Array.from(
        { length: DLQ_REPLAYED_MAX_DEAD_LETTERS + 1 },
        () => entry,
      );
    }),
    'maxItems',
    '/data/dead_letters',
  );
  assertInvalid(
    'dlq.replayed',
    broken('dlq.replayed', (event) => {
      (event.data as Json).part = 0;
    }),
    'minimum',
    '/data/part',
  );
  assertInvalid(
    'dlq.replayed',
    broken('dlq.replayed', (event) => {
      (event.data as Json).dead_letters = [{ ...entry, id: 'not-a-uuid' }];
    }),
    'format',
    '/data/dead_letters/0/id',
  );
});

test('model data is a whole model', () => {
  for (const type of MODEL_EVENT_TYPES) {
    assertInvalid(
      type,
      broken(type, (event) => delete (event.data as Json).version),
      'required',
      '/data',
    );
  }
  assertInvalid(
    'model.updated',
    broken('model.updated', (event) => delete (event.data as Json).changed),
    'required',
    '/data',
  );
});
