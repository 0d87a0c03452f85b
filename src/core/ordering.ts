import { isPurgeMarker, type StoredEvent } from "./types.js";

export interface Readiness {
  /** Events to deliver now, in sequence order (void and expired ones left out). */
  events: StoredEvent[];
  /** The new cursor: every sequence up to it has been delivered or skipped. */
  next: number;
  /** Sequences skipped as holes (taken, never stored, and waited for long enough). */
  holesSkipped: number;
  /** When delivery stopped at a hole that is still young: the instant it may be skipped. */
  blockedUntil?: number;
}

/**
 * Decides what a reader at `cursor` may deliver from `docs` (stored events with seq > cursor, in
 * ascending order, as the store returned them):
 *
 * - only contiguous sequences: if 5 is missing, 6 waits (a publisher may have taken 5 and not
 *   stored it yet);
 * - a hole is skipped once `holeTimeoutMs` has passed since the event after it was created (its
 *   publisher has crashed; a failed publish writes placeholders instead and never leaves one);
 * - the events of one multi-event publish (`batchEnd`) are delivered together or not at all;
 * - void placeholders and events past their `expireAt` advance the cursor but are not delivered;
 * - a purge marker (created at the epoch) is older than any deadline, so the purged range before it
 *   is passed at once.
 */
export function ready(
  docs: readonly StoredEvent[],
  cursor: number,
  now: number,
  holeTimeoutMs: number,
  truncated: boolean,
): Readiness {
  const events: StoredEvent[] = [];
  let next = cursor;
  let holesSkipped = 0;
  let i = 0;
  while (i < docs.length) {
    const first = docs[i]!;
    if (first.seq <= next) {
      i++;
      continue;
    }
    const end = first.batchEnd !== undefined && first.batchEnd > first.seq ? first.batchEnd : first.seq;
    const lastIndex = i + (end - first.seq);
    // The page ended inside this batch: deliver what came before and read on from there.
    if (truncated && lastIndex >= docs.length) break;
    const gapBefore = first.seq > next + 1;
    // Sequences are unique and ascending, so the batch is complete iff its last member sits where
    // it would if none were missing.
    const complete = docs[lastIndex]?.seq === end;
    if (gapBefore || !complete) {
      const deadline = first.createdAt.getTime() + holeTimeoutMs;
      if (now < deadline) return { events, next, holesSkipped, blockedUntil: deadline };
      if (gapBefore) {
        // Purged sequences are gone, not holes.
        if (!isPurgeMarker(first)) holesSkipped += first.seq - next - 1;
        next = first.seq - 1;
      }
      if (!complete) {
        // A batch whose publisher died part-way: skip all of it, so that it is never seen in part.
        let present = 0;
        while (i < docs.length && docs[i]!.seq <= end) {
          present++;
          i++;
        }
        holesSkipped += end - next - present;
        next = end;
        continue;
      }
    }
    for (let k = i; k <= lastIndex; k++) {
      const e = docs[k]!;
      if (!e.void && !(e.expireAt && e.expireAt.getTime() <= now)) events.push(e);
    }
    next = end;
    i = lastIndex + 1;
  }
  return { events, next, holesSkipped };
}
