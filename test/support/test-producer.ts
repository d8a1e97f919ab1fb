/**
 * Test support: stamps events as one API process stamps what it emits (src/bus/producer-sequence.ts):
 * each event gets the next number of its type's stream the first time it is published, and keeps it when
 * published again — a republished event is a copy, exactly as a resend from the spool is.
 */
import type { TelemetryEvent } from '../../src/bus/event-schemas.ts';
import { ProducerSequences, type ProducerStamp } from '../../src/bus/producer-sequence.ts';

export class TestProducer {
  readonly #sequences = new ProducerSequences();
  readonly #stamps = new Map<string, ProducerStamp>();

  stamp(event: TelemetryEvent): ProducerStamp {
    let stamp = this.#stamps.get(event.event_id);
    if (stamp === undefined) {
      stamp = { producer: this.#sequences.producer, sequence: this.#sequences.claim(event.event_type) };
      this.#stamps.set(event.event_id, stamp);
    }
    return stamp;
  }
}
