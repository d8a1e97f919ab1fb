/**
 * The logging consumer on the real broker and database: api.error events with hostile user agents,
 * model ids and messages become one valid JSON line each, in the file and on stdout, with their fields,
 * the API key redacted and no raw CR, LF or ESC; a duplicate logs once; a stray event is dead-lettered,
 * not logged; the file rotates at its size limit and keeps maxFiles copies.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import type { EventOf } from '../../src/bus/event-schemas.ts';
import { EXCHANGES, QUEUES } from '../../src/bus/topology.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import {
  ERROR_LOG_FILE,
  type LoggingConsumer,
  loggingConsumer,
} from '../../src/consumers/logging/logging-consumer.ts';
import { rotatedPath } from '../../src/consumers/logging/rotating-file.ts';
import { consumerHarness } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { readQueues } from '../support/queue-reader.ts';

const MAX_FILE_BYTES = 16 * 1024;
const MAX_FILES = 2;
const KEY = `tb_${'k3Y-_'.repeat(8)}abc`; // tb_ + 43 base64url characters
const KEY_BODY = KEY.slice(3);

const directory = mkdtempSync(join(tmpdir(), 'logging-consumer-'));
const logPath = join(directory, ERROR_LOG_FILE);
const stdoutChunks: string[] = [];
const stdout = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    stdoutChunks.push(chunk.toString('utf8'));
    callback();
  },
});

let consumer: LoggingConsumer | undefined;
const harness = await consumerHarness({ after }, () => {
  consumer = loggingConsumer({ directory, maxFileBytes: MAX_FILE_BYTES, maxFiles: MAX_FILES, stdout });
  return [consumer];
});
// Registered after the harness's teardown, so it runs once the runtime has stopped.
after(() => {
  consumer?.close();
  rmSync(directory, { recursive: true, force: true });
});

type ApiError = EventOf<'api.error'>;

function apiError(options: {
  code?: number;
  userAgent?: string | null;
  message?: string;
  modelId?: string | null;
  stack?: string | null;
}): ApiError {
  const base = exampleEvent('api.error');
  return exampleEvent('api.error', {
    event_id: randomUUID(),
    correlation_id: `req-${randomUUID()}`,
    data: { ...base.data, model_id: options.modelId === undefined ? base.data.model_id : options.modelId },
    metadata: {
      ...base.metadata,
      response_code: options.code ?? 404,
      user_agent: options.userAgent === undefined ? base.metadata.user_agent : options.userAgent,
    },
    error: {
      type: (options.code ?? 404) >= 500 ? 'INTERNAL_ERROR' : 'MODEL_NOT_FOUND',
      message: options.message ?? base.error.message,
      stack_trace: options.stack ?? null,
    },
  });
}

/** Raw text of the log files still on disk, oldest first. */
function rawLog(): string {
  let text = '';
  for (let index = MAX_FILES; index >= 0; index--) {
    const path = rotatedPath(logPath, index);
    if (existsSync(path)) text += readFileSync(path, 'utf8');
  }
  return text;
}

function parsedLines(text: string): Array<Record<string, unknown>> {
  const lines = text.split('\n');
  assert.equal(lines.pop(), '', 'the log ends with a newline');
  return lines.map((line, index) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new assert.AssertionError({ message: `line ${index + 1} is not JSON: ${JSON.stringify(line)}` });
    }
  });
}

/** C0 and C1 control characters (and DEL) in `text`, as code points. */
function controlCharacters(text: string): number[] {
  return [...text]
    .map((character) => character.codePointAt(0) ?? 0)
    .filter((code) => code <= 0x1f || (code >= 0x7f && code <= 0x9f));
}

function linesOf(eventIds: string[]): Array<Record<string, unknown>> {
  const wanted = new Set(eventIds);
  return parsedLines(rawLog()).filter((line) => wanted.has(String(line.event_id)));
}

async function waitForLines(eventIds: string[]): Promise<void> {
  const wanted = new Set(eventIds);
  await harness.waitUntil(`${eventIds.length} log lines`, () => {
    const seen = new Set(linesOf(eventIds).map((line) => String(line.event_id)));
    return [...wanted].every((id) => seen.has(id));
  });
}

test('hostile user agents, model ids and messages: one valid JSON line per event, fields kept, key redacted, no raw CR/LF/ESC', async () => {
  const forgedAgent = `curl/8.5.0\r\nFAKE LOG LINE {"level":30,"msg":"admin logged in"}\u001b[31m red \u001b]0;pwned\u0007`;
  const notFound = apiError({
    code: 404,
    userAgent: forgedAgent,
    message: `model 'x' does not exist; request sent x-api-key ${KEY}\r\nFAKE LOG LINE`,
    // A model id is validated to a safe pattern before it is in an event (the schema refuses others).
    modelId: 'evil/model',
  });
  const serverError = apiError({
    code: 500,
    userAgent: `agent with key ${KEY}\u009b2J`,
    message: 'internal error',
    stack: `Error: connect ECONNREFUSED postgres://app:hunter2@db/registry\r\n    at connect (src/db.ts:1:1)\n    at run (src/x.ts:2:2)`,
  });
  const noAgent = apiError({ code: 401, userAgent: null, modelId: null });
  const events = [notFound, serverError, noAgent];
  await harness.publish(events);
  await waitForLines(events.map((event) => event.event_id));

  const raw = rawLog();
  for (const character of ['\r', '\u001b', '\u009b', '\u0007']) {
    assert.ok(!raw.includes(character), `no raw ${JSON.stringify(character)} in the file`);
  }
  assert.ok(!raw.includes(KEY_BODY), 'the API key appears nowhere');
  assert.ok(!raw.includes('hunter2'), 'the URL password appears nowhere');
  const lines = parsedLines(raw);
  assert.equal(lines.length, 3, 'one line per event: the forged "lines" are inside their fields');
  assert.ok(
    lines.every((line) => !String(line.msg).startsWith('admin')),
    'no line is the forged one',
  );

  const [first, second, third] = linesOf(events.map((event) => event.event_id)).sort(
    (a, b) =>
      events.findIndex((event) => event.event_id === a.event_id) -
      events.findIndex((event) => event.event_id === b.event_id),
  );
  assert.ok(first !== undefined && second !== undefined && third !== undefined);
  for (const [line, event] of [
    [first, notFound],
    [second, serverError],
    [third, noAgent],
  ] as const) {
    assert.equal(line.event_id, event.event_id);
    assert.equal(line.correlation_id, event.correlation_id);
    assert.equal(line.event_type, 'api.error');
    assert.equal(line.timestamp, event.timestamp);
    assert.equal(line.user_id, event.user_id);
    assert.equal(line.route, event.metadata.route);
    assert.equal(line.method, event.metadata.method);
    assert.equal(line.response_code, event.metadata.response_code);
    assert.equal(line.error_type, event.error.type);
    assert.equal(line.ip_address, event.metadata.ip_address);
    assert.equal(typeof line.time, 'string');
    // Decoded from JSON, as any log reader would: still no control character in any field.
    for (const [name, value] of Object.entries(line)) {
      if (typeof value !== 'string') continue;
      const controls = controlCharacters(value).filter((code) => !(name === 'stack_trace' && code === 0x0a));
      assert.deepEqual(controls, [], `${name} of ${event.event_id}`);
    }
  }

  assert.equal(first.level, 40, 'a 4xx is a warning');
  assert.equal(
    first.user_agent,
    'curl/8.5.0\\u000d\\u000aFAKE LOG LINE {"level":30,"msg":"admin logged in"}\\u001b[31m red \\u001b]0;pwned\\u0007',
  );
  assert.equal(
    first.error_message,
    "model 'x' does not exist; request sent x-api-key tb_[redacted]\\u000d\\u000aFAKE LOG LINE",
  );
  assert.equal(first.model_id, 'evil/model');
  assert.equal('stack_trace' in first, false, 'no stack for a 4xx');

  assert.equal(second.level, 50, 'a 5xx is an error');
  assert.equal(second.user_agent, 'agent with key tb_[redacted]\\u009b2J');
  assert.equal(
    second.stack_trace,
    'Error: connect ECONNREFUSED postgres://app:[redacted]@db/registry\n    at connect (src/db.ts:1:1)\n    at run (src/x.ts:2:2)',
  );
  assert.equal(second.msg, 'GET /models/:model_id 500 INTERNAL_ERROR');

  assert.equal(third.user_agent, null);
  assert.equal(third.model_id, null);

  // stdout got the same lines, byte for byte.
  await harness.waitUntil('stdout copies', () => stdoutChunks.join('').length >= raw.length);
  assert.equal(stdoutChunks.join(''), raw);
});

test('a duplicate (published again, before and after it was applied) is logged once', async () => {
  const event = apiError({ code: 409 });
  const marker = apiError({ code: 400 });
  const before = harness.runtime.status()[0]?.counters.duplicates ?? 0;
  await harness.publish([event, event]);
  await waitForLines([event.event_id]);
  await harness.publish([event, marker]);
  await waitForLines([marker.event_id]);
  await harness.waitUntil(
    'both duplicates seen',
    () => (harness.runtime.status()[0]?.counters.duplicates ?? 0) >= before + 2,
  );
  assert.equal(linesOf([event.event_id]).length, 1);
  assert.equal(linesOf([marker.event_id]).length, 1);
});

test('a stray event in logging.errors is dead-lettered, not logged', async () => {
  const dlq = await readQueues(harness.url, [QUEUES.deadLetters]);
  after(() => dlq.close());
  const stray = exampleEvent('model.queried', { event_id: randomUUID() });
  const loggedBefore = consumer?.counters.logged;
  await harness.publishRaw(EXCHANGES.errors, 'api.error', Buffer.from(JSON.stringify(stray)));
  const isStray = (message: { json: unknown }) =>
    (message.json as { event_id?: unknown })?.event_id === stray.event_id;
  const dead = (await dlq.waitFor((messages) => messages.some(isStray), 15_000)).find(isStray);
  assert.match(String(dead?.properties.headers?.[FAILURE_HEADERS.errorMessage]), /api\.error events only/);
  assert.equal(dead?.properties.headers?.[FAILURE_HEADERS.originalQueue], QUEUES.logging);
  assert.equal(linesOf([stray.event_id]).length, 0);
  assert.equal(consumer?.counters.logged, loggedBefore);
});

test('rotates at the size limit: errors.log, .1 and .2 kept, none over the limit, the newest lines in order', async () => {
  const events = Array.from({ length: 120 }, (_, index) =>
    apiError({
      code: 500,
      message: `failure ${index}`,
      stack: `Error: failure ${index}\n${'    at frame (src/f.ts:1:1)\n'.repeat(8)}`,
    }),
  );
  for (let index = 0; index < events.length; index += 20)
    await harness.publish(events.slice(index, index + 20));
  const last = events[events.length - 1] as ApiError;
  await harness.waitUntil('the last event logged', () =>
    readFileSync(logPath, 'utf8').includes(last.event_id),
  );

  assert.deepEqual(readdirSync(directory).sort(), ['errors.log', 'errors.log.1', 'errors.log.2']);
  for (const name of readdirSync(directory)) {
    const size = statSync(join(directory, name)).size;
    assert.ok(size <= MAX_FILE_BYTES, `${name} is ${size} bytes`);
    assert.ok(size > MAX_FILE_BYTES / 2 || name === 'errors.log', `${name} was filled before rotating`);
  }
  assert.ok((consumer?.file.rotations ?? 0) >= 3, 'more rotations than files kept: the oldest were dropped');

  // What is left is a contiguous run of the newest events, in publishing order, ending with the last.
  const ids = events.map((event) => event.event_id);
  const positions = parsedLines(rawLog())
    .map((line) => ids.indexOf(String(line.event_id)))
    .filter((position) => position >= 0);
  assert.ok(positions.length > 10 && positions.length < events.length, `${positions.length} lines kept`);
  assert.deepEqual(
    positions,
    Array.from({ length: positions.length }, (_, index) => events.length - positions.length + index),
  );
});
