import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateApiKey, hashApiKey, looksLikeApiKey } from '../../../src/auth/api-key.ts';
import { isRole, roleAllows } from '../../../src/auth/roles.ts';

test('keys are 256-bit, distinct, recognisable, and hashed with SHA-256', () => {
  const key = generateApiKey();
  assert.match(key, /^tb_[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(key.slice(3), 'base64url').length, 32);
  assert.notEqual(generateApiKey(), key);
  assert.equal(looksLikeApiKey(key), true);
  assert.equal(looksLikeApiKey(`${key}x`), false);
  // echo -n tb_abc | sha256sum
  assert.equal(hashApiKey('tb_abc'), '47a5b4a222928136ad6bc0ff9583f658b7a44355d7a07a3dfdafb8adcc1ab29c');
});

test('roles: each allows what the lesser ones do', () => {
  assert.equal(roleAllows('admin', 'writer'), true);
  assert.equal(roleAllows('writer', 'writer'), true);
  assert.equal(roleAllows('writer', 'admin'), false);
  assert.equal(roleAllows('reader', 'writer'), false);
  assert.equal(isRole('admin'), true);
  assert.equal(isRole('root'), false);
});
