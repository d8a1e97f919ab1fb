/**
 * De-duplication by producer streams, as pure logic (the runtime's database side is ./stream-store.ts).
 *
 * A stream is one producer's events of one type (src/bus/producer-sequence.ts), numbered 1, 2, 3, …; a
 * consumer receives each stream it is bound to whole, in queue order. Per stream it keeps:
 * - `high`: the highest number it applied;
 * - gaps: the ranges at or below `high` that it has not applied — numbers `high` jumped over.
 *
 * So the numbers it applied are exactly 1 … high minus the gaps, and a copy of an event is new if and
 * only if its number is above `high` or in a gap. That holds whatever happens to a message:
 * - a failed message (retried, dead-lettered, poison) is not applied by the transaction that moves `high`
 *   past it, so that transaction records it as a gap — nothing to record when it fails;
 * - a message the broker refused or lost and the publisher sent again, or dead-lettered itself (delivery
 *   limit), comes after later numbers: a gap, filled when it comes;
 * - a redelivered, resent or replayed copy of an applied event is at or below `high` and in no gap.
 * A stream seen for the first time has `high` 0: numbers below its first one are gaps (they may still
 * come, e.g. from the retry queue), recorded as one range.
 */

/** A range of numbers not applied: `first` … `last`, both included. */
export interface Gap {
  first: number;
  last: number;
}

/** One copy in a batch: its stream (an opaque key) and its number. */
export interface StreamCopy {
  stream: string;
  sequence: number;
}

export type CopyVerdict = 'new' | 'below' | 'repeat';

/**
 * First look at a batch, against the streams' highs (0 for a stream not known): `new` above its high
 * (the first copy of that number in the batch), `repeat` for a second copy of a number within the batch,
 * `below` at or below the high — new only if it is in a gap ({@link claimGaps}).
 */
export function classify(copies: readonly StreamCopy[], highs: ReadonlyMap<string, number>): CopyVerdict[] {
  const seen = new Map<string, Set<number>>();
  return copies.map((copy) => {
    let numbers = seen.get(copy.stream);
    if (numbers === undefined) {
      numbers = new Set();
      seen.set(copy.stream, numbers);
    }
    if (numbers.has(copy.sequence)) return 'repeat';
    numbers.add(copy.sequence);
    return copy.sequence > (highs.get(copy.stream) ?? 0) ? 'new' : 'below';
  });
}

/** What claiming numbers out of a stream's gaps changes: rows to shorten, delete and add. */
export interface GapEdits {
  /** Gaps (by their `first`) that now end earlier. */
  shortened: Array<{ stream: string; first: number; last: number }>;
  /** Gaps (by their `first`) that are gone, or now start later (their rest is in `added`). */
  removed: Array<{ stream: string; first: number }>;
  added: Array<{ stream: string } & Gap>;
}

/**
 * Takes `numbers` (of one stream, each once) out of its `gaps`. Returns the numbers that were in a gap
 * (new events) and the edits; a gap's row keeps its `first` when its start is not claimed (shortened),
 * so added rows never start where an existing row does.
 */
export function claimGaps(
  stream: string,
  numbers: readonly number[],
  gaps: readonly Gap[],
  edits: GapEdits,
): Set<number> {
  const claimed = new Set<number>();
  for (const gap of gaps) {
    const inside = numbers.filter((n) => n >= gap.first && n <= gap.last).sort((a, b) => a - b);
    if (inside.length === 0) continue;
    for (const n of inside) claimed.add(n);
    const pieces: Gap[] = [];
    let from = gap.first;
    for (const n of inside) {
      if (n > from) pieces.push({ first: from, last: n - 1 });
      from = n + 1;
    }
    if (from <= gap.last) pieces.push({ first: from, last: gap.last });
    const [head, ...rest] = pieces;
    if (head !== undefined && head.first === gap.first) {
      edits.shortened.push({ stream, first: gap.first, last: head.last });
      for (const piece of rest) edits.added.push({ stream, ...piece });
    } else {
      edits.removed.push({ stream, first: gap.first });
      for (const piece of pieces) edits.added.push({ stream, ...piece });
    }
  }
  return claimed;
}

/**
 * The new high of a stream whose numbers `applied` (each once, all above `high`) a transaction applies,
 * and the gaps it jumps over. `applied` empty: the high stays and there is no gap.
 */
export function advance(high: number, applied: readonly number[]): { high: number; gaps: Gap[] } {
  if (applied.length === 0) return { high, gaps: [] };
  const sorted = [...applied].sort((a, b) => a - b);
  const gaps: Gap[] = [];
  let next = high + 1;
  for (const n of sorted) {
    if (n > next) gaps.push({ first: next, last: n - 1 });
    next = n + 1;
  }
  return { high: next - 1, gaps };
}
