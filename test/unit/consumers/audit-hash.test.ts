/**
 * The canonical form of an audit record's hash: stable under key order and a JSON round trip (what jsonb
 * does to a stored envelope), sensitive to every hashed field and to the previous hash, and pinned to a
 * known value so that a change of the form cannot go unnoticed (old chains would stop verifying).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  type AuditRecordFields,
  canonicalEventTimestamp,
  canonicalJson,
  canonicalTimestamp,
  chainKeyOf,
  documentHash,
  documentText,
  GENESIS_HASH,
  GLOBAL_CHAIN_KEY,
  hashedDocument,
  openDocument,
  recordHash,
} from '../../../src/consumers/audit/audit-hash.ts';
import { MODEL_ID_PATTERN } from '../../../src/registry/model-schemas.ts';
import { exampleEvent } from '../../support/event-examples.ts';

function fields(overrides: Partial<AuditRecordFields> = {}): AuditRecordFields {
  const event = exampleEvent('model.updated');
  return {
    chain_position: 2,
    event_id: event.event_id,
    event_type: event.event_type,
    model_id: event.data.model_id,
    correlation_id: event.correlation_id,
    user_id: event.user_id,
    sequence: 2,
    occurred_at: '2025-01-15T10:30:00.123000Z',
    recorded_at: '2025-01-15T10:30:01.456000Z',
    envelope: event as unknown as Record<string, unknown>,
    ...overrides,
  };
}

describe('canonicalJson', () => {
  test('sorts keys at every depth and writes no whitespace', () => {
    assert.equal(
      canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } }),
      '{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}',
    );
  });

  test('the same for any key order and after a JSON round trip', () => {
    const event = exampleEvent('api.error');
    const reversed = Object.fromEntries(Object.entries(event).reverse());
    assert.equal(canonicalJson(reversed), canonicalJson(event));
    assert.equal(canonicalJson(JSON.parse(JSON.stringify(event))), canonicalJson(event));
  });

  test('numbers and strings as JSON.stringify writes them (RFC 8785 for these values)', () => {
    assert.equal(
      canonicalJson([4.2, 1e21, -0, 0.1 + 0.2, 'é\u2028"\\\n']),
      '[4.2,1e+21,0,0.30000000000000004,"é\u2028\\"\\\\\\n"]',
    );
  });

  test('sorts keys by UTF-16 code units, not by locale', () => {
    assert.equal(canonicalJson({ b: 1, B: 2, é: 3, a: 4 }), '{"B":2,"a":4,"b":1,"é":3}');
  });

  test('leaves out undefined members, as JSON.stringify does; refuses what JSON cannot hold', () => {
    assert.equal(canonicalJson({ a: undefined, b: [undefined] }), '{"b":[null]}');
    assert.throws(() => canonicalJson(Number.NaN), TypeError);
    assert.throws(() => canonicalJson({ a: Number.POSITIVE_INFINITY }), TypeError);
    assert.throws(() => canonicalJson(10n), TypeError);
  });
});

describe('recordHash', () => {
  test('is SHA-256 of the previous hash followed by the canonical document', () => {
    const record = fields();
    const expected = createHash('sha256')
      .update(GENESIS_HASH)
      .update(canonicalJson(hashedDocument(record)))
      .digest();
    assert.deepEqual(recordHash(GENESIS_HASH, record), expected);
    assert.equal(GENESIS_HASH.length, 32);
    assert.ok(GENESIS_HASH.every((byte) => byte === 0));
  });

  test('is pinned: the canonical form of version 1 never changes', () => {
    const minimal: AuditRecordFields = {
      chain_position: 1,
      event_id: 'e',
      event_type: 'filter.executed',
      model_id: null,
      correlation_id: 'c',
      user_id: null,
      sequence: null,
      occurred_at: '2025-01-01T00:00:00.000000Z',
      recorded_at: '2025-01-01T00:00:01.000000Z',
      envelope: { b: [1, 2], a: 'x' },
    };
    const document =
      '{"chain_position":1,"correlation_id":"c","envelope":{"a":"x","b":[1,2]},"event_id":"e",' +
      '"event_type":"filter.executed","model_id":null,"occurred_at":"2025-01-01T00:00:00.000000Z",' +
      '"recorded_at":"2025-01-01T00:00:01.000000Z","sequence":null,"user_id":null}';
    assert.equal(canonicalJson(hashedDocument(minimal)), document);
    // Computed once, independently: sha256(32 zero bytes ‖ document).
    assert.equal(
      recordHash(GENESIS_HASH, minimal).toString('hex'),
      '087cd464cd7b446b07005c5a97563c59b5e61b40b3ae3f4f13e809a6fcb91bbe',
    );
  });

  test('changes with every hashed field, with the envelope, and with the previous hash', () => {
    const base = recordHash(GENESIS_HASH, fields()).toString('hex');
    const variants: Array<Partial<AuditRecordFields>> = [
      { chain_position: 3 },
      { event_id: '00000000-0000-4000-8000-000000000000' },
      { event_type: 'model.deactivated' },
      { model_id: 'other/model' },
      { model_id: null },
      { correlation_id: 'req-other' },
      { user_id: null },
      { sequence: 3 },
      { sequence: null },
      { occurred_at: '2025-01-15T10:30:00.123001Z' },
      { recorded_at: '2025-01-15T10:30:01.456001Z' },
      { envelope: { ...fields().envelope, correlation_id: 'req-other' } },
    ];
    const seen = new Set([base]);
    for (const variant of variants) {
      const hash = recordHash(GENESIS_HASH, fields(variant)).toString('hex');
      assert.ok(!seen.has(hash), `changing ${JSON.stringify(variant)} must change the hash`);
      seen.add(hash);
    }
    const previous = createHash('sha256').update('previous').digest();
    assert.notEqual(recordHash(previous, fields()).toString('hex'), base);
  });

  test('ignores fields it does not cover (the row id, the stored hashes)', () => {
    const withExtras = { ...fields(), id: 42, hash: 'x', prev_hash: 'y' } as AuditRecordFields;
    assert.deepEqual(recordHash(GENESIS_HASH, withExtras), recordHash(GENESIS_HASH, fields()));
  });

  test('refuses a previous hash that is not 32 bytes', () => {
    assert.throws(() => recordHash(Buffer.alloc(31), fields()), RangeError);
  });
});

describe('openDocument and documentText: the document written once per event, completed per record', () => {
  const cases: Array<[string, AuditRecordFields]> = [
    ['a model event', fields()],
    ['no model, no user, no sequence', fields({ model_id: null, user_id: null, sequence: null })],
    [
      'strings that need escaping, and keys that sort by code unit',
      fields({
        correlation_id: 'req-"quoted"\\\n',
        envelope: { é: 1, B: [true, null, 1.5e-7], a: { '\u2028': 'x\u0001', b: '' } },
      }),
    ],
    ['a large chain position', fields({ chain_position: 9_007_199_254_740_991 })],
    ...(['model.queried', 'filter.executed', 'api.error', 'dlq.replayed'] as const).map(
      (type): [string, AuditRecordFields] => {
        const event = exampleEvent(type);
        return [
          type,
          fields({
            event_id: event.event_id,
            event_type: event.event_type,
            model_id: ((event.data as { model_id?: string }).model_id ?? null) as string | null,
            correlation_id: event.correlation_id,
            user_id: event.user_id,
            envelope: event as unknown as Record<string, unknown>,
          }),
        ];
      },
    ),
  ];
  for (const [name, record] of cases) {
    test(`is exactly the canonical document: ${name}`, () => {
      const { chain_position, recorded_at, ...rest } = record;
      const text = documentText(openDocument(rest), chain_position, recorded_at);
      assert.equal(text, canonicalJson(hashedDocument(record)));
      assert.deepEqual(documentHash(GENESIS_HASH, text), recordHash(GENESIS_HASH, record));
    });
  }

  test('leaves out an undefined member, as canonicalJson does', () => {
    const record = { ...fields(), user_id: undefined } as unknown as AuditRecordFields;
    const { chain_position, recorded_at, ...rest } = record;
    assert.equal(
      documentText(openDocument(rest), chain_position, recorded_at),
      canonicalJson(hashedDocument(record)),
    );
  });

  test('refuses a chain position that is not an integer, and a previous hash that is not 32 bytes', () => {
    const { chain_position, recorded_at, ...rest } = fields();
    void chain_position;
    assert.throws(() => documentText(openDocument(rest), 1.5, recorded_at), RangeError);
    assert.throws(() => documentHash(Buffer.alloc(31), '{}'), RangeError);
  });
});

describe('timestamps and chain keys', () => {
  test('timestamps have six fractional digits, as PostgreSQL stores them', () => {
    assert.equal(canonicalTimestamp(new Date('2025-01-15T10:30:00.123Z')), '2025-01-15T10:30:00.123000Z');
    assert.equal(canonicalEventTimestamp('2025-01-15T10:30:00.123Z'), '2025-01-15T10:30:00.123000Z');
  });

  test('a leap second becomes the next second, as PostgreSQL reads it', () => {
    assert.equal(canonicalEventTimestamp('2016-12-31T23:59:60.500Z'), '2017-01-01T00:00:00.500000Z');
    assert.throws(() => canonicalEventTimestamp('not a time'), RangeError);
  });

  test('records without a model share a chain no model_id can name', () => {
    assert.equal(chainKeyOf('openai/gpt-4'), 'openai/gpt-4');
    assert.equal(chainKeyOf(null), GLOBAL_CHAIN_KEY);
    assert.ok(!new RegExp(MODEL_ID_PATTERN).test(GLOBAL_CHAIN_KEY));
  });
});
