/**
 * The retry ladder with its real delays, once: a handler that always fails is attempted at about +1 s,
 * +5 s and +30 s (±20%) after the previous attempt, then exactly one copy reaches the dead-letter queue
 * carrying the stack trace. (Every other test uses a shortened ladder.)
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_RETRY_DELAYS_MS, QUEUES } from '../../src/bus/topology.ts';
import { FAILURE_HEADERS } from '../../src/consumers/failure-policy.ts';
import { consumerHarness } from '../support/consumer-harness.ts';
import { exampleEvent } from '../support/event-examples.ts';
import { readQueues } from '../support/queue-reader.ts';

const attempts: number[] = [];
const harness = await consumerHarness(
  { after },
  () => [
    {
      name: 'always-fails',
      queue: QUEUES.analytics,
      async apply() {
        attempts.push(Date.now());
        throw new Error('this consumer never succeeds');
      },
    },
  ],
  { retryDelaysMs: DEFAULT_RETRY_DELAYS_MS },
);

test('attempts at +1 s, +5 s and +30 s (±20%), then exactly one dead letter with the stack trace', {
  timeout: 90_000,
}, async () => {
  const dlq = await readQueues(harness.url, [QUEUES.deadLetters]);
  after(() => dlq.close());
  const event = exampleEvent('model.queried', { event_id: randomUUID(), correlation_id: randomUUID() });
  await harness.publish([event]);
  const [dead] = await dlq.waitFor(
    (messages) => messages.some((message) => message.properties.messageId === event.event_id),
    60_000,
  );
  assert.equal(attempts.length, 4, 'the first attempt and one per delay');
  for (const [index, delay] of DEFAULT_RETRY_DELAYS_MS.entries()) {
    const gap = (attempts[index + 1] as number) - (attempts[index] as number);
    assert.ok(
      gap >= delay * 0.8 && gap <= delay * 1.2,
      `retry ${index + 1} came ${gap} ms after, for a ${delay} ms delay`,
    );
  }
  // A copy that would come late (a second dead-lettering) has time to arrive.
  await sleep(1000);
  const copies = dlq
    .messages(QUEUES.deadLetters)
    .filter((message) => message.properties.messageId === event.event_id);
  assert.equal(copies.length, 1);
  const headers = dead?.properties.headers ?? {};
  assert.equal(headers[FAILURE_HEADERS.attempts], 4);
  assert.equal(headers[FAILURE_HEADERS.originalQueue], QUEUES.analytics);
  assert.match(String(headers[FAILURE_HEADERS.errorStack]), /^Error: this consumer never succeeds\n\s+at /);
});
