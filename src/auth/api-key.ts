import { hash, randomBytes } from 'node:crypto';

/** Keys look like `tb_` + 32 random bytes in base64url: recognisable in a leak scan, 256 bits strong. */
const KEY_PREFIX = 'tb_';
const KEY_PATTERN = /^tb_[A-Za-z0-9_-]{43}$/;

export function generateApiKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

/**
 * Hex SHA-256 of the key: what is stored (as bytes), and the `user_id` telemetry carries. A fast hash
 * suffices because keys are random 256-bit secrets, not passwords that could be guessed. (`crypto.hash`,
 * one call without a Hash object, matters here: it runs on every request.)
 */
export function hashApiKey(key: string): string {
  return hash('sha256', key);
}

export function looksLikeApiKey(value: string): boolean {
  return KEY_PATTERN.test(value);
}
