/**
 * The newest records of the spool, kept in memory as they are appended, so that a reader keeping up
 * with the writer (the publisher, almost always) gets them without a disk read: at a thousand events a
 * second, one file read per event was most of the publisher's cost on the request thread. Bounded by
 * bytes; a reader that falls behind (an outage, a restart) reads from disk as before.
 */
import type { SpoolRecord } from './spool.ts';

export class RecentRecords {
  readonly #maxBytes: number;
  #offsets: number[] = [];
  #payloads: Array<Buffer | string> = [];
  #sizes: number[] = [];
  #head = 0;
  #bytes = 0;

  /** @param maxBytes bytes of payload kept, at most */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  get enabled(): boolean {
    return this.#maxBytes > 0;
  }

  /** Remembers an appended record; offsets must follow one another (a gap starts the memory afresh). */
  add(offset: number, payload: Buffer | string, size: number): void {
    const last = this.#offsets[this.#offsets.length - 1];
    if (last !== undefined && offset !== last + 1) this.clear();
    this.#offsets.push(offset);
    this.#payloads.push(payload);
    this.#sizes.push(size);
    this.#bytes += size;
    while (this.#bytes > this.#maxBytes && this.#head < this.#offsets.length) {
      this.#bytes -= this.#sizes[this.#head] as number;
      this.#payloads[this.#head] = '';
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#offsets.length) {
      this.#offsets = this.#offsets.slice(this.#head);
      this.#payloads = this.#payloads.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The records from `fromOffset` on, if memory still holds that offset; undefined otherwise. */
  read(fromOffset: number, maxRecords: number, maxBytes: number): SpoolRecord[] | undefined {
    if (!this.enabled) return undefined;
    const first = this.#offsets[this.#head];
    if (first === undefined || fromOffset < first) return undefined;
    const start = this.#head + (fromOffset - first);
    if (start >= this.#offsets.length)
      return fromOffset === first + (this.#offsets.length - this.#head) ? [] : undefined;
    const records: SpoolRecord[] = [];
    let bytes = 0;
    for (let index = start; index < this.#offsets.length && records.length < maxRecords; index++) {
      if (records.length > 0 && bytes + (this.#sizes[index] as number) > maxBytes) break;
      const payload = this.#payloads[index] as Buffer | string;
      records.push({
        offset: this.#offsets[index] as number,
        payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      });
      bytes += this.#sizes[index] as number;
    }
    return records;
  }

  clear(): void {
    this.#offsets = [];
    this.#payloads = [];
    this.#sizes = [];
    this.#head = 0;
    this.#bytes = 0;
  }
}
