/**
 * An API key sent where it does not belong — in the URL path, the user agent, `x-correlation-id`, a
 * filter value — used to travel with the request's event into the spool, every consumer's tables and the
 * dashboard's recent errors. The event is redacted once, as it is built, so everything downstream of it
 * gets the redacted text and none needs a rule of its own.
 */
import { redactApiKeys } from '../auth/api-key.ts';

/**
 * Replaces every key-shaped run (`tb_` + 43 base64url characters or more) in every string of `value`, in
 * place, object keys included; returns `value`. A string without `tb_` is left as it is, which is all but
 * every string, so the walk costs a substring test per field.
 */
export function redactApiKeysIn<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const item = value[index];
      if (typeof item === 'string') value[index] = redactApiKeys(item);
      else redactApiKeysIn(item);
    }
    return value;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    const item = record[key];
    if (typeof item === 'string') record[key] = redactApiKeys(item);
    else redactApiKeysIn(item);
    const redactedKey = redactApiKeys(key);
    if (redactedKey !== key) {
      record[redactedKey] = record[key];
      delete record[key];
    }
  }
  return value;
}
