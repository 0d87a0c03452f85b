import { eventCost } from "../json.js";
import { isPurgeMarker, type StoredEvent } from "../types.js";

/** Recent events kept per followed stream for subscribers that keep up (and at most tailBytes in all). */
const TAIL_EVENTS = 4096;

/** The estimated heap bytes of some events. */
function weightOf(events: readonly StoredEvent[]): number {
  let w = 0;
  for (const e of events) w += eventCost(e).weight;
  return w;
}

/**
 * The tail of each followed stream: contiguous sequences only, at most TAIL_EVENTS, as committed
 * by this process or read from the store by one of its subscribers (another instance's appends:
 * one store read, then every local subscriber is served from here). Subscribers that keep up read
 * from here instead of the store (one store write, N subscribers, no N store reads). Anything else
 * (a gap, an older position, events with an expiry that another publish may extend) is read from
 * the store.
 */
export class TailCache {
  readonly #tails = new Map<string, StoredEvent[]>();
  /** Estimated heap bytes held by #tails, per stream and in all. */
  readonly #tailWeights = new Map<string, number>();
  #tailTotal = 0;
  /** The expiry of each tail's stream as last slid here (a tail past it is not served). */
  readonly #tailExpiry = new Map<string, Date>();

  constructor(
    /** Estimated heap bytes of all tails together. */
    private readonly tailBytes: number,
    private readonly now: () => number,
  ) {}

  /** Adds events just committed here to their stream's tail (the caller checks the stream is followed). */
  remember(name: string, events: StoredEvent[], streamExpireAt: Date | undefined): void {
    if (events.some((e) => e.expireAt !== undefined)) {
      this.drop(name);
      return;
    }
    const slid = this.#tailExpiry.get(name);
    if (streamExpireAt && (!slid || streamExpireAt > slid)) this.#tailExpiry.set(name, streamExpireAt);
    const tail = this.#tails.get(name);
    if (tail && tail.length > 0 && tail[tail.length - 1]!.seq + 1 === events[0]!.seq) {
      tail.push(...events);
      this.#tailWeights.set(name, (this.#tailWeights.get(name) ?? 0) + weightOf(events));
      this.#tailTotal += weightOf(events);
      if (tail.length > TAIL_EVENTS) this.#trimTail(name, tail, tail.length - TAIL_EVENTS);
    } else {
      this.drop(name);
      const kept = events.slice(-TAIL_EVENTS);
      this.#tails.set(name, kept);
      this.#tailWeights.set(name, weightOf(kept));
      this.#tailTotal += weightOf(kept);
    }
    // Over the budget: this stream's oldest events go first, then other streams' (readers of a
    // trimmed range read the store instead).
    const own = this.#tails.get(name)!;
    while (this.#tailTotal > this.tailBytes && own.length > 1) this.#trimTail(name, own, Math.max(1, own.length >> 1));
    for (const [other, t] of this.#tails) {
      if (this.#tailTotal <= this.tailBytes) break;
      if (other !== name) this.drop(other);
      else if (t.length > 0 && weightOf(t) > this.tailBytes) this.drop(name);
    }
  }

  /**
   * Adds what a subscriber read from the store after `cursor` and passed (every sequence up to
   * `next`: delivered, void, or a whole batch with a void member) when it continues the tail, so
   * the stream's other subscribers here need no read of their own. Only plain events are kept: not
   * a purge marker, nor events with an expiry (the stream's may slide on another instance), and
   * never past `next`, so the tail never ends inside a batch or before a hole.
   */
  extend(name: string, cursor: number, docs: readonly StoredEvent[], next: number): void {
    const tail = this.#tails.get(name);
    if (tail && tail.length > 0 && tail[tail.length - 1]!.seq !== cursor) return;
    let n = 0;
    while (n < docs.length && docs[n]!.seq === cursor + 1 + n && docs[n]!.seq <= next) {
      const e = docs[n]!;
      if (e.expireAt !== undefined || isPurgeMarker(e)) break;
      n++;
    }
    // Stop at the last batch boundary within the prefix (a batch cut by an expiring member).
    while (n > 0 && (docs[n - 1]!.batchEnd ?? docs[n - 1]!.seq) > docs[n - 1]!.seq) n--;
    if (n > 0) this.remember(name, docs.slice(0, n), undefined);
  }

  /**
   * Adds events another instance stored, as its insert was reported (not read: the stream record's
   * floor and expiry are not known, so only where extend() would take them from a read), when they
   * continue the tail (else the stream's subscribers read the store).
   */
  carry(name: string, events: readonly StoredEvent[]): void {
    const tail = this.#tails.get(name);
    if (!tail || tail.length === 0 || events.length === 0) return;
    const last = tail[tail.length - 1]!.seq;
    if (events[0]!.seq === last + 1) this.extend(name, last, events, events[events.length - 1]!.seq);
  }

  /**
   * Whether every sequence from..to is in the stream's tail or in `pending` (a range this process
   * has reserved and is storing): the watcher's report of an append that is this process's own.
   */
  covers(name: string, from: number, to: number, pending?: { first: number; last: number }): boolean {
    const tail = this.#tails.get(name);
    const spans: { first: number; last: number }[] = [];
    if (tail && tail.length > 0) spans.push({ first: tail[0]!.seq, last: tail[tail.length - 1]!.seq });
    if (pending) spans.push(pending);
    let at = from;
    for (let moved = true; moved && at <= to; ) {
      moved = false;
      for (const s of spans) {
        if (at >= s.first && at <= s.last) {
          at = s.last + 1;
          moved = true;
        }
      }
    }
    return at > to;
  }

  /** Drops the first `n` events of a tail. */
  #trimTail(name: string, tail: StoredEvent[], n: number): void {
    const gone = weightOf(tail.splice(0, n));
    this.#tailWeights.set(name, (this.#tailWeights.get(name) ?? 0) - gone);
    this.#tailTotal -= gone;
  }

  drop(name: string): void {
    this.#tailTotal -= this.#tailWeights.get(name) ?? 0;
    this.#tailWeights.delete(name);
    this.#tails.delete(name);
    this.#tailExpiry.delete(name);
  }

  /** Events after `cursor` from the tail, when the tail holds cursor + 1 (else undefined: read the store). */
  read(name: string, cursor: number, limit: number): StoredEvent[] | undefined {
    const tail = this.#tails.get(name);
    if (!tail || tail.length === 0) return undefined;
    // A stream with an expiry that may have passed (another instance's publishes may have slid it
    // further): the store knows.
    const expireAt = this.#tailExpiry.get(name);
    if (expireAt && expireAt.getTime() <= this.now()) return undefined;
    const first = tail[0]!.seq;
    const last = tail[tail.length - 1]!.seq;
    if (cursor + 1 < first || cursor >= last) return undefined;
    return tail.slice(cursor + 1 - first, cursor + 1 - first + limit);
  }
}
