/**
 * Who published an event, and where in that publisher's stream it is: the consumers' de-duplication
 * without a row per event (src/consumers/deduplication/) works as Kafka's idempotent producer does.
 *
 * Each process that emits is a producer with an id of its own, new at every start (a UUIDv7: it also
 * says when the producer started); every event it keeps in its spool gets the next number of the
 * producer's sequence for that event's type: 1, 2, 3, … with no gap. Per type, because routing is by
 * type — a queue receives every event of a type or none — so a consumer sees each stream it receives
 * whole and in order, and a number it did not see is one still to come (a retry, a replay, a message the
 * broker refused and the publisher sent again), never one that went elsewhere. The numbers are in the
 * spool record (./outbound-message.ts), so a resend after a reconnect or a restart carries the same
 * ones; a new process, with a new id, starts again at 1 without meeting the old numbers.
 *
 * On the message: the headers {@link PRODUCER_HEADERS}. A message without them (published by a release
 * before them, or by hand) is de-duplicated by its event id instead.
 */

import { newEventId } from './event-id.ts';
import { EVENT_TYPES, type EventType } from './event-types.ts';

/** The AMQP headers of a message's place in its producer's stream. */
export const PRODUCER_HEADERS = {
  /** The producer's id: a UUID. */
  producer: 'x-producer',
  /** The event's number in the producer's sequence of its type: 1, 2, 3, … */
  sequence: 'x-sequence',
} as const;

/** An event's place in its producer's stream of its type. */
export interface ProducerStamp {
  producer: string;
  sequence: number;
}

export class ProducerSequences {
  /** This producer's id. */
  readonly producer: string;
  // One property per type, as the event bus counts emits: no Map lookup per event.
  readonly #last = Object.fromEntries(EVENT_TYPES.map((type) => [type, 0])) as Record<EventType, number>;

  constructor(producer: string = newEventId()) {
    this.producer = producer;
  }

  /** The next number of `type`'s stream. Give it back with {@link unclaim} if the event was not kept. */
  claim(type: EventType): number {
    this.#last[type]++;
    return this.#last[type];
  }

  /** Gives back the number {@link claim} returned last for `type`: the event it was for is not kept. */
  unclaim(type: EventType): void {
    this.#last[type]--;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/**
 * The producer id {@link stampOf} found valid last: a queue's messages come from a few producers, mostly
 * one after another, so the pattern runs once per run of a producer rather than once per message.
 */
let lastProducer: string | undefined;

/** A message's stamp from its headers, or undefined when it carries none (or one that cannot be). */
export function stampOf(headers: Record<string, unknown> | undefined): ProducerStamp | undefined {
  if (headers === undefined) return undefined;
  const producer = headers[PRODUCER_HEADERS.producer];
  const sequence = headers[PRODUCER_HEADERS.sequence];
  const text = typeof producer === 'string' ? producer : Buffer.isBuffer(producer) ? producer.toString() : '';
  const number =
    typeof sequence === 'number' ? sequence : typeof sequence === 'string' ? Number(sequence) : NaN;
  if (!Number.isSafeInteger(number) || number < 1) return undefined;
  if (text !== lastProducer) {
    if (!UUID.test(text)) return undefined;
    lastProducer = text;
  }
  return { producer: text, sequence: number };
}
