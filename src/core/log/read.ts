import { HoleClock, ready } from "../ordering.js";
import { eventCost } from "../json.js";
import type { StoredEvent, StreamId } from "../types.js";
import type { LogContext, Page } from "./options.js";

/** A subscriber's first read from the store: small, until it knows how large the stream's events are. */
const FIRST_READ = 16;

/** The longest prefix of `events` within `budget` bytes of JSON (always at least one event). */
export function withinBytes(events: StoredEvent[], budget: number): StoredEvent[] {
  let bytes = 0;
  for (let i = 0; i < events.length; i++) {
    bytes += eventCost(events[i]!).bytes;
    if (bytes > budget && i > 0) return events.slice(0, i);
  }
  return events;
}

/**
 * Reads from the store, sized by what the stream's events weigh, and hole claims: what pages
 * (list, listBefore) and subscribers share.
 */
export class Reader {
  /** Average JSON bytes of the events lately read, per stream (at most 10,000 streams): sizes store reads. */
  readonly #avgBytes = new Map<string, number>();
  readonly #holes: HoleClock;
  /** Store reads and head() calls in flight, shared by the subscribers that need the same one. */
  readonly #reads = new Map<string, Promise<{ docs: StoredEvent[]; truncated: boolean }>>();
  readonly #heads = new Map<string, Promise<number>>();

  constructor(private readonly ctx: LogContext) {
    this.#holes = new HoleClock(ctx.mono);
  }

  /**
   * Reads from the store at most about responseBytes, judged by the sizes of the stream's events
   * read before (a stream of 4 MiB events is read one or two at a time, not `limit` at a time),
   * but never less than the multi-event publish at the cursor, which readers take whole.
   */
  async read(stream: StreamId, name: string, cursor: number, limit: number): Promise<{ docs: StoredEvent[]; truncated: boolean }> {
    const avg = this.#avgBytes.get(name);
    let n = Math.min(limit, avg === undefined ? FIRST_READ : Math.max(2, Math.ceil(this.ctx.opts.responseBytes / Math.max(avg, 1)) + 1));
    let docs = await this.ctx.store.read(stream, cursor, n);
    const end = docs[0]?.batchEnd;
    if (docs.length === n && end !== undefined && end > docs[docs.length - 1]!.seq) {
      n = end - cursor;
      docs = await this.ctx.store.read(stream, cursor, n);
    }
    if (docs.length > 0) {
      let bytes = 0;
      for (const e of docs) bytes += eventCost(e).bytes;
      this.#noteSize(name, bytes / docs.length);
    }
    return { docs, truncated: docs.length === n };
  }

  /**
   * read(), shared: subscribers of the stream here at the same cursor (woken together by one
   * append) wait for one store read rather than each making its own.
   */
  shared(stream: StreamId, name: string, cursor: number, limit: number): Promise<{ docs: StoredEvent[]; truncated: boolean }> {
    const key = `${cursor}\n${limit}\n${name}`;
    let p = this.#reads.get(key);
    if (!p) {
      p = this.read(stream, name, cursor, limit).finally(() => this.#reads.delete(key));
      this.#reads.set(key, p);
    }
    return p;
  }

  /** The stream's last sequence handed out, one store call for every subscriber here that asks at once. */
  head(stream: StreamId, name: string): Promise<number> {
    let p = this.#heads.get(name);
    if (!p) {
      p = this.ctx.store.head(stream).finally(() => this.#heads.delete(name));
      this.#heads.set(name, p);
    }
    return p;
  }

  /** Folds the average size of events just read into the stream's estimate (at most 10,000 streams tracked). */
  #noteSize(name: string, avgBytes: number): void {
    const before = this.#avgBytes.get(name);
    if (before === undefined && this.#avgBytes.size >= 10_000) this.#avgBytes.delete(this.#avgBytes.keys().next().value!);
    this.#avgBytes.set(name, before === undefined ? avgBytes : (before + avgBytes) / 2);
  }

  /**
   * A reader stopped at a hole. Once this process has seen the hole open for the hole timeout (on
   * its own monotonic clock) it claims it: void placeholders under the unique {stream, seq} index,
   * so the publisher that took those sequences can no longer store them (its publish fails and is
   * never acked) and every reader passes them. Returns 0 when claimed (read again now), else how
   * long to wait at most before looking again.
   */
  async atHole(stream: StreamId, name: string, hole: { from: number; to: number }): Promise<number> {
    const { opts } = this.ctx;
    const age = this.#holes.age(name, hole.from);
    if (age < opts.holeTimeoutMs) return opts.holeTimeoutMs - age;
    const claimed = await this.ctx.store.voidRange(stream, hole.from, hole.to, new Date(this.ctx.now()), []);
    this.#holes.forget(name, hole.from);
    if (claimed > 0) {
      this.ctx.stats.holesSkipped += claimed;
      opts.log?.("claimed sequences that were taken but not stored in time (their publish fails)", { stream: name, from: hole.from, to: hole.to, claimed });
    }
    this.ctx.hub.notify(name);
    return 0;
  }

  /** One page of events after `after`, in order, applying the same ordering rules as subscribe(). */
  async list(stream: StreamId, name: string, after: number, limit: number): Promise<Page> {
    const { opts } = this.ctx;
    const events: StoredEvent[] = [];
    let bytes = 0;
    let cursor = after;
    for (let claims = 0; ; ) {
      const want = Math.max(limit - events.length, 1);
      const { docs, truncated } = await this.read(stream, name, cursor, Math.max(want + 1, opts.readBatch));
      const r = ready(docs, cursor, this.ctx.now(), truncated);
      for (const e of r.events) {
        // A page ends at `limit` events or at responseBytes (one larger event comes alone).
        const b = eventCost(e).bytes;
        if (events.length === limit || (events.length > 0 && bytes + b > opts.responseBytes)) return { events, next: events[events.length - 1]!.seq, hasMore: true };
        events.push(e);
        bytes += b;
      }
      const progressed = r.next > cursor;
      cursor = r.next;
      if (r.hole) {
        // A page never waits: it ends before a young hole (the next page call looks again).
        if (claims++ < 3 && (await this.atHole(stream, name, r.hole)) === 0) continue;
        return { events, next: cursor, hasMore: true };
      }
      if (!progressed || !truncated) return { events, next: cursor, hasMore: docs.some((d) => d.seq > cursor) };
    }
  }

  /**
   * One page of events before `before`, newest first (void and expired ones left out), ending at
   * `limit` events or responseBytes (a larger event comes alone). Reads the store by the same
   * size estimate as subscribers do.
   */
  async listBefore(stream: StreamId, name: string, before: number, limit: number): Promise<{ events: StoredEvent[]; hasMore: boolean }> {
    const { opts } = this.ctx;
    const now = this.ctx.now();
    const events: StoredEvent[] = [];
    let bytes = 0;
    let cursor = before;
    for (;;) {
      const avg = this.#avgBytes.get(name);
      const n = Math.min(limit - events.length + 1, avg === undefined ? FIRST_READ : Math.max(2, Math.ceil(opts.responseBytes / Math.max(avg, 1)) + 1));
      const docs = await this.ctx.store.readBefore(stream, cursor, n);
      for (const e of docs) {
        cursor = e.seq;
        if (e.void || (e.expireAt && e.expireAt.getTime() <= now)) continue;
        const b = eventCost(e).bytes;
        if (events.length === limit || (events.length > 0 && bytes + b > opts.responseBytes)) return { events, hasMore: true };
        this.#noteSize(name, b);
        events.push(e);
        bytes += b;
      }
      if (docs.length < n) return { events, hasMore: false };
    }
  }
}
