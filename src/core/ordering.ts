import { isPurgeMarker, type StoredEvent } from "./types.js";

export interface Readiness {
  /** Events to deliver now, in sequence order (void and expired ones left out). */
  events: StoredEvent[];
  /** The new cursor: every sequence up to it has been delivered or passed. */
  next: number;
  /**
   * Delivery stopped at sequences that are taken but not stored: `from` is the first missing
   * sequence, `to` the last one a reader would have to claim to go on (the end of the gap, or the
   * end of the batch the gap is in). Absent when nothing blocked delivery.
   */
  hole?: { from: number; to: number };
}

/**
 * Decides what a reader at `cursor` may deliver from `docs` (stored events with seq > cursor, in
 * ascending order, as the store returned them). Pure: no clocks but `now` for expiry.
 *
 * - Only contiguous sequences: if 5 is missing, 6 waits (a publisher may have taken 5 and not
 *   stored it yet). The reader never decides on its own that 5 is gone: it reports the hole, and
 *   the caller claims it (a void placeholder under the unique {stream, seq} index) once it has
 *   waited long enough by its own clock. A claimed sequence can no longer be stored by its
 *   publisher, so that publish fails and is never acknowledged.
 * - The events of one multi-event publish (`batchEnd`) are delivered together or not at all: a
 *   batch with a missing member is a hole; a batch with a void member (its publish failed, or a
 *   reader claimed the rest of it) is passed whole, never delivered in part.
 * - Void placeholders and events past their `expireAt` advance the cursor but are not delivered.
 * - A purge marker (a void event created at the epoch) stands for every sequence up to it that is
 *   gone (purged, expired, trimmed): the range before it is passed at once.
 */
export function ready(docs: readonly StoredEvent[], cursor: number, now: number, truncated: boolean): Readiness {
  const events: StoredEvent[] = [];
  let next = cursor;
  let i = 0;
  while (i < docs.length) {
    const first = docs[i]!;
    if (first.seq <= next) {
      i++;
      continue;
    }
    if (first.seq > next + 1) {
      if (!isPurgeMarker(first)) return { events, next, hole: { from: next + 1, to: first.seq - 1 } };
      next = first.seq - 1;
    }
    const end = first.batchEnd !== undefined && first.batchEnd > first.seq ? first.batchEnd : first.seq;
    const lastIndex = i + (end - first.seq);
    // The page ended inside this batch: deliver what came before and read on from there.
    if (truncated && lastIndex >= docs.length) break;
    // Sequences are unique and ascending, so the batch is complete iff its last member sits where
    // it would if none were missing.
    if (docs[lastIndex]?.seq !== end) {
      let missing = first.seq;
      for (let k = i; k < docs.length && docs[k]!.seq === missing && missing <= end; k++) missing++;
      return { events, next, hole: { from: missing, to: end } };
    }
    const members = docs.slice(i, lastIndex + 1);
    // A batch with a void member failed as a whole: pass all of it.
    if (end === first.seq || !members.some((e) => e.void)) {
      for (const e of members) if (!e.void && !(e.expireAt && e.expireAt.getTime() <= now)) events.push(e);
    }
    next = end;
    i = lastIndex + 1;
  }
  return { events, next };
}

/**
 * When this process first saw each hole, on its own monotonic clock. A hole is claimed only once
 * it has stayed open for the hole timeout as measured here: never from another process's clock
 * (an event's created_at), which may be skewed or belong to a publisher that is merely stalled.
 * Shared by every reader of the log, so a page reader and a subscriber agree on a hole's age.
 */
export class HoleClock {
  readonly #seen = new Map<string, number>();
  constructor(
    private readonly clock: () => number = () => performance.now(),
    private readonly max = 10_000,
  ) {}

  /** How long (ms) this hole (stream, first missing sequence) has been seen open. */
  age(stream: string, from: number): number {
    const key = `${stream}\n${from}`;
    const now = this.clock();
    const first = this.#seen.get(key);
    if (first !== undefined) return now - first;
    // Bounded: the oldest entry goes (its hole, if still open, starts its wait again: later, never earlier).
    if (this.#seen.size >= this.max) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(key, now);
    return 0;
  }

  forget(stream: string, from: number): void {
    this.#seen.delete(`${stream}\n${from}`);
  }
}
