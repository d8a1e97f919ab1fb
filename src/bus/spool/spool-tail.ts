/**
 * Where the spool's tail is, in shared memory: the request thread appends and publishes here how far
 * the records go; the publisher thread (../publisher-thread/) reads it to know which bytes on disk are
 * whole records, and waits on its wake counter instead of being sent a message per event.
 *
 * One writer (the spool's thread), any number of readers. The three numbers change together, so they sit
 * behind a sequence lock: the writer makes the sequence odd, writes, makes it even again; a reader retries
 * until it read the same even sequence before and after. No allocation on either side.
 */

/** A consistent reading of the tail. */
export interface TailSnapshot {
  /** Offset the next append gets: every lower offset is a whole record on disk (or a dropped gap). */
  nextOffset: number;
  /** First offset of the segment being written, whose file grows. */
  writerFirstOffset: number;
  /** Bytes of whole records in that segment. */
  writerBytes: number;
}

/** Node 20 has it; the ES2023 lib this project compiles against does not declare it yet. */
interface AtomicsWaitAsync {
  waitAsync(
    array: Int32Array,
    index: number,
    value: number,
    timeoutMs: number,
  ): { async: false; value: string } | { async: true; value: Promise<string> };
}

const SEQUENCE = 0;
const WAKE = 1;
const INTS = 2;
const NEXT_OFFSET = 0;
const WRITER_FIRST = 1;
const WRITER_BYTES = 2;
const FLOATS = 3;

export class SpoolTail {
  readonly buffer: SharedArrayBuffer;
  readonly #ints: Int32Array;
  readonly #floats: Float64Array;

  /** A new tail, or a view of one another thread made (`buffer` from its {@link SpoolTail.buffer}). */
  constructor(buffer = new SharedArrayBuffer(8 * FLOATS + 4 * INTS)) {
    this.buffer = buffer;
    this.#floats = new Float64Array(buffer, 0, FLOATS);
    this.#ints = new Int32Array(buffer, 8 * FLOATS, INTS);
  }

  /** The writer's side: after an append (or a new segment), before anyone is woken. */
  publish(nextOffset: number, writerFirstOffset: number, writerBytes: number): void {
    Atomics.add(this.#ints, SEQUENCE, 1);
    this.#floats[NEXT_OFFSET] = nextOffset;
    this.#floats[WRITER_FIRST] = writerFirstOffset;
    this.#floats[WRITER_BYTES] = writerBytes;
    Atomics.add(this.#ints, SEQUENCE, 1);
  }

  /** The reader's side; fills `into` (reused by the caller) and returns it. */
  read(into: TailSnapshot): TailSnapshot {
    for (;;) {
      const before = Atomics.load(this.#ints, SEQUENCE);
      if ((before & 1) === 0) {
        into.nextOffset = this.#floats[NEXT_OFFSET] as number;
        into.writerFirstOffset = this.#floats[WRITER_FIRST] as number;
        into.writerBytes = this.#floats[WRITER_BYTES] as number;
        if (Atomics.load(this.#ints, SEQUENCE) === before) return into;
      }
    }
  }

  /** Wakes a waiter of {@link waitForWake}: once per event-loop turn of appends, not once per append. */
  wake(): void {
    Atomics.add(this.#ints, WAKE, 1);
    Atomics.notify(this.#ints, WAKE);
  }

  /** The wake counter now; pass it to {@link waitForWake} to sleep until it changes. */
  wakeCount(): number {
    return Atomics.load(this.#ints, WAKE);
  }

  /** Resolves once the wake counter differs from `seen` (at once if it already does), or after `timeoutMs`. */
  async waitForWake(seen: number, timeoutMs: number): Promise<void> {
    const result = (Atomics as unknown as AtomicsWaitAsync).waitAsync(this.#ints, WAKE, seen, timeoutMs);
    if (result.async) await result.value;
  }
}
