/**
 * One parse and one validation per event in a process, not per delivery: an event routed to several
 * queues reaches a worker that runs their consumers once per queue (metrics, analytics, audit, logging:
 * up to four copies within milliseconds). The first copy is parsed and validated; the next ones, whose
 * bytes are the same, take that event. Bounded by count: the oldest entries go first.
 *
 * The consumers read events and never change them (each is shared by the consumers that got a copy).
 */
import type { TelemetryEvent } from '../bus/event-schemas.ts';

/** Events remembered, at most: a few batches of each queue. @default 4096 */
export const PARSED_EVENTS_LIMIT = 4096;

export class ParsedEvents {
  readonly #limit: number;
  readonly #events = new Map<string, { content: Buffer; event: TelemetryEvent }>();
  /**
   * The ids remembered, in a ring, oldest at `#next`: evicting the oldest by the Map's own order
   * (`keys().next()`) walks over the slots of every key deleted before it until the Map is rehashed,
   * which cost about 7 µs an event at 4,096 entries; the ring costs a delete.
   */
  readonly #order: Array<string | undefined>;
  #next = 0;

  constructor(limit: number = PARSED_EVENTS_LIMIT) {
    this.#limit = limit;
    this.#order = new Array<string | undefined>(limit).fill(undefined);
  }

  /** The event parsed from the same bytes under the same message id, if still remembered. */
  get(messageId: string | undefined, content: Buffer): TelemetryEvent | undefined {
    if (messageId === undefined) return undefined;
    const entry = this.#events.get(messageId);
    return entry?.content.equals(content) ? entry.event : undefined;
  }

  /** Remembers a valid event parsed from `content` (copied: a delivery's bytes may share a larger buffer). */
  set(messageId: string | undefined, content: Buffer, event: TelemetryEvent): void {
    if (messageId === undefined || this.#limit === 0) return;
    if (!this.#events.has(messageId)) {
      const oldest = this.#order[this.#next];
      if (oldest !== undefined) this.#events.delete(oldest);
      this.#order[this.#next] = messageId;
      this.#next = (this.#next + 1) % this.#limit;
    }
    this.#events.set(messageId, { content: Buffer.from(content), event });
  }
}
