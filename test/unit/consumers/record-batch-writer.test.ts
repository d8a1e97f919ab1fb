/**
 * The audit consumer's insert buffer: jsonb's binary input holding each record's canonical document with
 * its place and hashes, where the hash is the one audit-hash.ts defines over exactly the bytes written.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  documentHash,
  documentText,
  GENESIS_HASH,
  openDocument,
} from '../../../src/consumers/audit/audit-hash.ts';
import { RecordBatchWriter } from '../../../src/consumers/audit/record-batch-writer.ts';
import { exampleEvent } from '../../support/event-examples.ts';

const RECORDED_AT = '2025-01-15T10:30:01.456000Z';

function open(index: number, envelope: Record<string, unknown>) {
  return openDocument({
    event_id: `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`,
    event_type: 'model.updated',
    model_id: index % 2 === 0 ? 'openai/gpt-4o' : null,
    correlation_id: `req-${index}-"quoted"\\`,
    user_id: index % 3 === 0 ? null : 'u',
    sequence: index % 3 === 0 ? null : index,
    occurred_at: '2025-01-15T10:30:00.123000Z',
    envelope,
  });
}

describe('RecordBatchWriter', () => {
  test('writes jsonb binary input: each record the canonical document with n, chain_key, prev_hash and hash', () => {
    const envelopes: Array<Record<string, unknown>> = [
      exampleEvent('model.updated') as unknown as Record<string, unknown>,
      { é: 'ünïcødé ✓ 𝄞', '\u2028': 'x\u0001', nested: [{ b: 1, a: [null, true] }] },
      { long: 'x'.repeat(300_000) },
    ];
    const writer = new RecordBatchWriter(RECORDED_AT);
    const expected: Array<Record<string, unknown>> = [];
    let prev = GENESIS_HASH;
    for (let n = 0; n < 9; n++) {
      const document = open(n, envelopes[n % envelopes.length] as Record<string, unknown>);
      const text = documentText(document, n + 1, RECORDED_AT);
      // Chain keys of every kind: a model id, the shared chains, and one with characters to escape.
      const chainKey = ['openai/gpt-4', '~global', '~keyless', 'é"\\'][n % 4] as string;
      const hash = writer.add(n, chainKey, document, n + 1, prev);
      assert.deepEqual(hash, documentHash(prev, text));
      expected.push({
        n,
        chain_key: chainKey,
        prev_hash: prev.toString('hex'),
        hash: hash.toString('hex'),
        ...JSON.parse(text),
      });
      prev = hash;
    }
    const bytes = writer.finish();
    assert.equal(bytes[0], 1, 'jsonb binary format version');
    assert.deepEqual(JSON.parse(bytes.subarray(1).toString('utf8')), expected);
  });

  test('an empty batch is an empty array; a bad position or previous hash is refused', () => {
    const writer = new RecordBatchWriter(RECORDED_AT);
    assert.equal(writer.finish().subarray(1).toString(), '[]');
    assert.throws(() => writer.add(0, '~global', open(0, {}), 1.5, GENESIS_HASH), RangeError);
    assert.throws(() => writer.add(0, '~global', open(0, {}), 1, Buffer.alloc(31)), RangeError);
  });
});
