/**
 * The fast `date-time` format gives ajv-formats' full `date-time` answer for every string: hand-picked
 * edge cases (calendar, leap years and seconds, zones, separators) and 200,000 mutations of valid ones.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fullFormats } from 'ajv-formats/dist/formats.js';
import { isDateTime } from '../../../src/bus/date-time-format.ts';

const reference = (fullFormats['date-time'] as { validate: (text: string) => boolean }).validate;

const CASES = [
  '2025-01-15T10:30:00.123Z',
  '2025-01-15T10:30:00Z',
  '2025-01-15t10:30:00z',
  '2025-01-15 10:30:00Z',
  '2025-01-15\u00a010:30:00Z',
  '2025-01-15T10:30:00',
  '2025-01-15T10:30:00+01:00',
  '2025-01-15T10:30:00+0100',
  '2025-01-15T10:30:00+01',
  '2025-01-15T10:30:00-24:00',
  '2025-01-15T10:30:00+01:60',
  '2024-02-29T00:00:00Z',
  '2025-02-29T00:00:00Z',
  '1900-02-29T00:00:00Z',
  '2000-02-29T00:00:00Z',
  '2025-04-31T00:00:00Z',
  '2025-13-01T00:00:00Z',
  '2025-00-01T00:00:00Z',
  '2025-01-00T00:00:00Z',
  '0000-01-01T00:00:00Z',
  '2025-01-15T24:00:00Z',
  '2025-01-15T23:60:00Z',
  '2016-12-31T23:59:60Z',
  '2016-12-31T23:59:60.999Z',
  '2016-12-31T23:59:61Z',
  '2016-12-31T22:59:60Z',
  '2017-01-01T00:59:60+01:00',
  '2016-12-31T18:59:60-05:00',
  '2016-12-31T23:59:60+00:30',
  '2025-01-15T10:30:00.Z',
  '2025-01-15TT10:30:00Z',
  '2025-01-15T10:30:00Zt',
  '2025-1-15T10:30:00Z',
  '12025-01-15T10:30:00Z',
  '2025-01-15T10:30Z',
  '',
  'T',
  '２０２５-01-15T10:30:00Z',
];

test('edge cases: the same answer as ajv-formats', () => {
  for (const text of CASES) assert.equal(isDateTime(text), reference(text), JSON.stringify(text));
});

test('200,000 mutations of valid date-times: the same answer as ajv-formats', () => {
  let seed = 17;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const alphabet = '0123456789-:.+TtZz \t';
  let valid = 0;
  for (let i = 0; i < 200_000; i++) {
    let text = CASES[Math.floor(random() * 12)] as string;
    const edits = 1 + Math.floor(random() * 3);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(random() * (text.length + 1));
      const char = alphabet[Math.floor(random() * alphabet.length)] as string;
      const kind = random();
      text =
        kind < 0.5
          ? text.slice(0, at) + char + text.slice(at + 1)
          : kind < 0.75
            ? text.slice(0, at) + char + text.slice(at)
            : text.slice(0, at) + text.slice(at + 1);
    }
    const expected = reference(text);
    if (expected) valid++;
    assert.equal(isDateTime(text), expected, JSON.stringify(text));
  }
  assert.ok(valid > 1000, `${valid} of the mutations are valid: both answers are exercised`);
});
