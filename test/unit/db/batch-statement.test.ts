import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type BatchWrite, batchStatement } from '../../../src/db/batch-statement.ts';

const write = (name: string): BatchWrite => ({ name, text: 'INSERT INTO t VALUES ($1)', values: [name] });

test('a short statement name is kept whole', () => {
  assert.equal(batchStatement('batch.audit', [write('records')]).name, 'batch.audit:records');
});

test('long statement names stay within 63 bytes and apart when PostgreSQL would cut them to the same head', () => {
  const common = Array.from({ length: 8 }, (_, index) => `write_number_${index}`);
  const first = batchStatement('batch.metrics', [...common.map(write), write('tail_a')]);
  const second = batchStatement('batch.metrics', [...common.map(write), write('tail_b')]);
  assert.ok(first.name.length <= 63 && second.name.length <= 63, `${first.name} / ${second.name}`);
  assert.notEqual(first.name, second.name);
  assert.notEqual(first.text, second.text);
  // The same writes always get the same name: a prepared statement is reused, not re-parsed.
  assert.equal(batchStatement('batch.metrics', [...common.map(write), write('tail_a')]).name, first.name);
});

test('the parameters are renumbered across writes', () => {
  const statement = batchStatement('t', [write('a'), write('b')]);
  assert.match(
    statement.text,
    /a AS \(INSERT INTO t VALUES \(\$1\)\),\nb AS \(INSERT INTO t VALUES \(\$2\)\)/,
  );
  assert.deepEqual(statement.values, ['a', 'b']);
});
