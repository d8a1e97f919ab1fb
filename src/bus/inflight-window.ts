/**
 * The messages a publisher has in flight, in publish order, and the contiguous prefix the broker has
 * confirmed. Confirms can settle messages in any order (a nack, a multiple-ack); the spool may only be
 * told about an offset once everything before it is settled too.
 *
 * Plain arrays indexed by a sequence number given at publish time: no Map or Set entry per message, which
 * at thousands of messages a second is garbage the collector would otherwise chase.
 */
/** What an entry is: its event's type and time (epoch ms). */
export interface Label {
  eventType: string;
  timestampMs: number;
}

export class InflightWindow {
  #offsets: number[] = [];
  #sentAt: number[] = [];
  #settled: boolean[] = [];
  /** What each entry is, for whoever counts confirmed events (undefined: nothing to count). */
  #labels: (Label | undefined)[] = [];
  /** Sequence number of the entry at index #head. */
  #base = 0;
  #head = 0;

  /** Entries published and not yet part of the settled prefix. */
  get size(): number {
    return this.#offsets.length - this.#head;
  }

  /** Records a publish; the returned sequence number settles it. */
  push(offset: number, now: number, label?: Label): number {
    this.#offsets.push(offset);
    this.#sentAt.push(now);
    this.#settled.push(false);
    this.#labels.push(label);
    return this.#base + this.#offsets.length - 1;
  }

  /**
   * Marks one entry settled. Returns the highest offset of the settled prefix that this call completed,
   * or -1 when the prefix did not grow. A sequence number from before a `clear()` is ignored.
   * `onPrefix` is called with the label of each entry as it joins the prefix: once per entry, however
   * often it was confirmed (a resent copy is a new entry only after a `clear()`).
   */
  settle(sequence: number, onPrefix?: (label: Label) => void): number {
    const index = sequence - this.#base;
    if (index < this.#head || index >= this.#offsets.length) return -1;
    this.#settled[index] = true;
    let confirmedUpTo = -1;
    while (this.#head < this.#offsets.length && this.#settled[this.#head] === true) {
      confirmedUpTo = this.#offsets[this.#head] as number;
      const label = this.#labels[this.#head];
      if (label !== undefined) onPrefix?.(label);
      this.#head++;
    }
    if (this.#head > 4096 && this.#head * 2 > this.#offsets.length) this.#compact();
    return confirmedUpTo;
  }

  /** When the oldest unsettled entry was published, or undefined when none is. */
  oldestSentAt(): number | undefined {
    return this.#head < this.#offsets.length ? this.#sentAt[this.#head] : undefined;
  }

  /** Restarts every unsettled entry's clock (time spent blocked by the broker does not count). */
  restartClocks(now: number): void {
    for (let index = this.#head; index < this.#sentAt.length; index++) this.#sentAt[index] = now;
  }

  /** Forgets everything; returns how many entries were unsettled. Later settles of them are ignored. */
  clear(): number {
    const unsettled = this.size;
    this.#base += this.#offsets.length;
    this.#offsets = [];
    this.#sentAt = [];
    this.#settled = [];
    this.#labels = [];
    this.#head = 0;
    return unsettled;
  }

  #compact(): void {
    this.#offsets = this.#offsets.slice(this.#head);
    this.#sentAt = this.#sentAt.slice(this.#head);
    this.#settled = this.#settled.slice(this.#head);
    this.#labels = this.#labels.slice(this.#head);
    this.#base += this.#head;
    this.#head = 0;
  }
}
