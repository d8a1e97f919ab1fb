/**
 * The logging consumer writes a line without pino's redaction when the paths cannot reach any of its
 * fields: topLevelNames must name every top-level key a path censors, and the lines written either way
 * must be the same bytes when nothing is censored.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { topLevelNames } from '../../../src/consumers/logging/logging-consumer.ts';

test('topLevelNames: plain, dotted, bracketed and wildcard paths', () => {
  assert.deepEqual(
    [
      ...topLevelNames([
        'password',
        'headers.authorization',
        'req.headers["x-api-key"]',
        '["x-api-key"]',
        "['odd.name'].x",
        '*.password',
        'api_key',
      ]),
    ].sort(),
    ['api_key', 'headers', 'odd.name', 'password', 'req', 'x-api-key'],
  );
});

test('a path censors only keys topLevelNames names (flat fields), and otherwise the lines are identical', () => {
  const paths = ['password', 'headers.authorization', '["x-api-key"]', '*.password', 'key'];
  const names = topLevelNames(paths);
  const write = (redact: boolean, fields: Record<string, unknown>) => {
    const lines: string[] = [];
    const destination = { write: (line: string) => lines.push(line) };
    const logger = pino(
      { base: null, timestamp: false, ...(redact ? { redact: { paths, censor: '[redacted]' } } : {}) },
      destination,
    );
    logger.warn(fields, 'message');
    return lines[0];
  };
  for (const key of ['password', 'headers', 'x-api-key', 'key', 'field', 'user_agent', 'passwords']) {
    const fields = { event_id: 'e', [key]: 'secret value', response_code: 404, model_id: null };
    const same = write(true, fields) === write(false, fields);
    // names may name more than is censored (a primitive under `headers`), never less.
    if (!same) assert.ok(names.has(key), key);
    if (!names.has(key)) assert.ok(same, key);
  }
  assert.ok(names.has('password') && !names.has('passwords') && !names.has('*'));
  // A wildcard reaches into object values: the consumer writes those with redaction.
  const nested = { event_id: 'e', detail: { password: 'x' } };
  assert.notEqual(write(true, nested), write(false, nested));
});
