import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decideFailure,
  ERROR_STACK_MAX_LENGTH,
  FAILURE_HEADERS,
  type FailedMessage,
} from '../../../src/consumers/failure-policy.ts';
import { PoisonMessageError } from '../../../src/consumers/poison-message-error.ts';

const delays = [1000, 5000, 30000];
const now = new Date('2026-11-28T10:00:00.000Z');
const first: FailedMessage = {
  queue: 'audit.trail',
  exchange: 'models.events',
  routingKey: 'model.updated',
  headers: { traceparent: 't' },
};
const decide = (message: FailedMessage, poison = false) =>
  decideFailure(message, new Error('boom'), { poison, retryDelaysMs: delays, now, deadLetterId: 'dl-1' });

describe('the retry ladder', () => {
  test('three failures retry after 1 s, 5 s and 30 s, into the queue that failed; the fourth dead-letters', () => {
    let message = first;
    for (const [index, delay] of delays.entries()) {
      const decision = decide(message);
      assert.equal(decision.action, 'retry');
      if (decision.action !== 'retry') return;
      assert.equal(decision.delayMs, delay);
      assert.equal(decision.exchange, `retry.${delay / 1000}s`);
      assert.equal(decision.routingKey, 'audit.trail');
      assert.equal(decision.headers[FAILURE_HEADERS.attempts], index + 1);
      // As it comes back to the queue through retry.requeue.
      message = { ...first, exchange: 'retry.requeue', routingKey: 'audit.trail', headers: decision.headers };
    }
    const last = decide(message);
    assert.equal(last.action, 'dead-letter');
    assert.equal(last.headers[FAILURE_HEADERS.attempts], 4);
    assert.equal(last.headers[FAILURE_HEADERS.originalExchange], 'models.events');
    assert.equal(last.headers[FAILURE_HEADERS.originalRoutingKey], 'model.updated');
    assert.equal(last.headers[FAILURE_HEADERS.originalQueue], 'audit.trail');
    assert.equal(last.headers[FAILURE_HEADERS.deadLetterId], 'dl-1');
    assert.equal(last.headers.traceparent, 't', 'the message’s own headers are kept');
  });

  test('first and last failure times: the first is kept across retries', () => {
    const once = decide(first);
    const later = decideFailure({ ...first, headers: once.headers }, new Error('again'), {
      poison: false,
      retryDelaysMs: delays,
      now: new Date('2026-11-28T10:00:06.000Z'),
      deadLetterId: 'x',
    });
    assert.equal(later.headers[FAILURE_HEADERS.firstFailureAt], '2026-11-28T10:00:00.000Z');
    assert.equal(later.headers[FAILURE_HEADERS.lastFailureAt], '2026-11-28T10:00:06.000Z');
    assert.equal(later.headers[FAILURE_HEADERS.errorMessage], 'again');
  });

  test('a poison message is dead-lettered at once, with its error type', () => {
    const decision = decideFailure(first, new PoisonMessageError('not JSON'), {
      poison: true,
      retryDelaysMs: delays,
      now,
      deadLetterId: 'p',
    });
    assert.equal(decision.action, 'dead-letter');
    assert.equal(decision.headers[FAILURE_HEADERS.errorType], 'POISON_MESSAGE');
    assert.equal(decision.headers[FAILURE_HEADERS.attempts], 1);
  });

  test('stack traces are cut to the documented size', () => {
    const error = new Error('deep');
    error.stack = 'x'.repeat(ERROR_STACK_MAX_LENGTH * 2);
    const decision = decideFailure(first, error, {
      poison: false,
      retryDelaysMs: delays,
      now,
      deadLetterId: 'd',
    });
    assert.equal(String(decision.headers[FAILURE_HEADERS.errorStack]).length, ERROR_STACK_MAX_LENGTH);
  });

  test('a garbled attempts header counts as a first failure, and a shorter ladder is honoured', () => {
    const decision = decideFailure(
      { ...first, headers: { [FAILURE_HEADERS.attempts]: 'many' } },
      new Error('x'),
      { poison: false, retryDelaysMs: [250], now, deadLetterId: 'd' },
    );
    assert.equal(decision.action, 'retry');
    assert.ok(decision.action === 'retry' && decision.exchange === 'retry.250ms');
  });
});
