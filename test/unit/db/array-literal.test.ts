import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import fc from 'fast-check';
import { arrayLiteral } from '../../../src/db/array-literal.ts';

// node-postgres's own conversion of a parameter: what it would send for the same array.
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as {
  prepareValue(value: unknown): unknown;
};

test('the same text node-postgres sends, for the arrays a batch carries', () => {
  const arrays: unknown[][] = [
    [],
    ['0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', 'plain', '', ' spaced ', 'NULL', 'a,b', '{x}'],
    ['say "hi"', 'back\\slash', '\\"', 'ünïcödé ✓', '\u0001'],
    [null, undefined, 'x', null],
    [0, -0, 1.5, -2, 1e21, 5e-324, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
    [true, false, null],
  ];
  for (const array of arrays) assert.equal(arrayLiteral(array), prepareValue(array), JSON.stringify(array));
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.string(), fc.double(), fc.boolean(), fc.constant(null))), (array) => {
      assert.equal(arrayLiteral(array), prepareValue(array));
    }),
  );
});

test('anything else is left to node-postgres', () => {
  assert.equal(arrayLiteral([Buffer.from('x')]), undefined);
  assert.equal(arrayLiteral([new Date(0)]), undefined);
  assert.equal(arrayLiteral([['nested']]), undefined);
  assert.equal(arrayLiteral(['x', { a: 1 }]), undefined);
});
