import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppError, ModelNotFoundError } from '../../../src/errors.ts';
import { fieldOfIssue, toAppError } from '../../../src/http/plugins/error-handler.ts';

test('the field of a validation issue', () => {
  const issue = (keyword: string, instancePath: string, params: Record<string, unknown> = {}) => ({
    keyword,
    instancePath,
    params,
  });
  assert.equal(fieldOfIssue(issue('required', '', { missingProperty: 'vendor_id' }), 'body'), 'vendor_id');
  assert.equal(fieldOfIssue(issue('additionalProperties', '', { additionalProperty: 'x' }), 'body'), 'x');
  assert.equal(fieldOfIssue(issue('type', '/context_window'), 'body'), 'context_window');
  assert.equal(fieldOfIssue(issue('pattern', '/model_id'), 'params'), 'model_id');
  assert.equal(fieldOfIssue(issue('type', ''), 'body'), 'body');
  assert.equal(fieldOfIssue(issue('minProperties', ''), 'querystring'), 'querystring');
  assert.equal(fieldOfIssue(issue('type', '/a~1b/c'), 'body'), 'a/b.c');
});

test('mapping to the code table', () => {
  const validation = Object.assign(new Error('x'), {
    validation: [
      { keyword: 'enum', instancePath: '/capability_tier', params: { allowedValues: ['Tier_1'] } },
    ],
    validationContext: 'body',
  });
  const mapped = toAppError(validation);
  assert.equal(mapped.code, 'VALIDATION_FAILED');
  assert.equal(mapped.field, 'capability_tier');
  assert.equal(mapped.message, 'capability_tier must be one of: Tier_1');

  const notFound = new ModelNotFoundError('m');
  assert.equal(toAppError(notFound), notFound);
  assert.equal(
    toAppError(Object.assign(new Error(), { code: 'FST_ERR_CTP_BODY_TOO_LARGE' })).code,
    'PAYLOAD_TOO_LARGE',
  );
  assert.equal(toAppError(Object.assign(new Error(), { code: 'ECONNREFUSED' })).code, 'SERVICE_UNAVAILABLE');
  const unknown = toAppError(new TypeError('secret detail'));
  assert.equal(unknown.code, 'INTERNAL_ERROR');
  assert.equal(unknown.message, 'internal error');
  assert.ok(unknown instanceof AppError && unknown.cause instanceof TypeError);
});
