import type { FastifyReply } from 'fastify';
import type { CachedRead } from '../registry/read-cache.ts';

/**
 * Serialises each cached read once. A cache hit hands back the very same object, so its JSON text can be
 * remembered beside it (weakly: it goes when the cache drops the object) instead of being re-serialised on
 * every request; for a page of 50 models that was about 40% of the request's CPU.
 *
 * Only for objects that already have exactly their response schema's shape and are never mutated: the
 * text is sent as is, past the schema's serialiser.
 */
export class SerializedJson {
  readonly #texts = new WeakMap<object, string>();

  of(value: object): string {
    let text = this.#texts.get(value);
    if (text === undefined) {
      text = JSON.stringify(value);
      this.#texts.set(value, text);
    }
    return text;
  }
}

/** Sends a cached read as JSON text remembered by `json`, saying in `x-cache` whether it was a hit. */
export function sendCachedRead(
  reply: FastifyReply,
  read: CachedRead<object>,
  json: SerializedJson,
): FastifyReply {
  return reply
    .header('x-cache', read.hit ? 'hit' : 'miss')
    .type('application/json; charset=utf-8')
    .send(json.of(read.value));
}
