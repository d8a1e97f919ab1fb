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

/**
 * A key anywhere in a text: `tb_` and 43 or more base64url characters (a key glued to other text too;
 * shorter `tb_` names, of databases or tables, are not keys).
 */
const KEY_IN_TEXT = /tb_[A-Za-z0-9_-]{43,}/g;

/**
 * What replaces a key in an event: a text every pattern of the event schema takes where a key could be
 * (a model id, a vendor, a correlation id), so a redacted event is still a valid one.
 */
export const REDACTED_KEY = 'tb_redacted';

/** Whether a text holds something shaped like an API key. */
export function containsApiKey(text: string): boolean {
  KEY_IN_TEXT.lastIndex = 0;
  return KEY_IN_TEXT.test(text);
}

/** The text with every key-shaped run replaced by `replacement` (@default {@link REDACTED_KEY}). */
export function redactApiKeys(text: string, replacement: string = REDACTED_KEY): string {
  return text.includes('tb_') ? text.replace(KEY_IN_TEXT, replacement) : text;
}
