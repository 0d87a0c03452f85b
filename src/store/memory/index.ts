import { eventCost, setCost } from "../../core/json.js";
import { DuplicateEventError, IncarnationMismatchError, parseStreamName, purgeMarker, SequenceTakenError, StreamClosedError, streamName, voidEvent, type StoredEvent, type StreamId } from "../../core/types.js";
import type { ListStreamsQuery, ReserveOptions, Store, StreamInfo, StreamListing } from "../../core/store.js";
import { MemoryBudget, MeteredMap } from "./budget.js";

interface MemStream {
  id: StreamId;
  /** The last sequence handed out. */
  head: number;
  /** Sequences up to `base` are gone (retention, expiry); events[i] holds sequence base + i + 1. */
  base: number;
  /** Undefined where a sequence is reserved but not (yet) stored. */
  events: (StoredEvent | undefined)[];
  /** Stored events that are not void placeholders. */
  count: number;
  /** closeStream() was called: reserve() refuses. */
  closed?: boolean;
  /** The stream's sliding expiry: once passed, its events are gone (sequences stay taken). */
  expireAt?: Date;
  /** When reserve() last took sequences. */
  lastAppendAt?: Date;
  /** The Durable Streams incarnation the stream belongs to (reopenStream(), setIncarnation()). */
  inc?: string;
}

export interface MemoryStoreOptions {
  /** Keep at most this many of each stream's newest events (0: keep all). Older ones are dropped, like Redis's MAXLEN. */
  retainEvents?: number;
  /** How often events past their expire_at are deleted (MongoDB's TTL monitor runs every 60 s); 0: never. */
  sweepIntervalMs?: number;
  /**
   * Estimated heap bytes of stored events (see core/json.ts eventCost) at most; an append past it
   * is refused with CapacityError and nothing of it is stored. Unset: no bound.
   */
  maxBytes?: number;
  /** The bound shared with the other in-memory ports (default: a new one of maxBytes). */
  budget?: MemoryBudget;
}

/**
 * The embedded store: everything in this process's memory, lost on restart. Same contract as the
 * MongoDB adapter (sequences are reserved and appended in separate steps, so readers meet the same
 * transient holes), which keeps the core honest when it runs on either. Like MongoDB's TTL index,
 * a periodic sweep deletes events past their expire_at; `retainEvents` bounds each stream.
 */
export class MemoryStore implements Store {
  readonly kind = "memory";
  readonly durable = false;
  readonly #streams = new Map<string, MemStream>();
  readonly #executions: MeteredMap<string, string>;
  readonly #byId = new Map<string, StoredEvent>();
  /** `stream` + "\n" + idempotency key → event. */
  readonly #byKey = new Map<string, StoredEvent>();
  readonly #retain: number;
  /** MEMORY_MAX_BYTES: counts the events here and every other in-memory port's records (budget.ts). */
  readonly budget: MemoryBudget;
  /** Estimated heap bytes of the stored (non-void) events. */
  #bytes = 0;
  readonly #sweepMs: number;
  #sweeper: NodeJS.Timeout | undefined;

  constructor(opts: MemoryStoreOptions = {}) {
    this.#retain = opts.retainEvents ?? 0;
    this.budget = opts.budget ?? new MemoryBudget(opts.maxBytes ?? Infinity);
    this.#executions = new MeteredMap(this.budget, "an execution binding");
    this.#sweepMs = opts.sweepIntervalMs ?? 60_000;
  }

  async init(): Promise<void> {
    if (this.#sweepMs > 0 && !this.#sweeper) {
      this.#sweeper = setInterval(() => this.sweepExpired(Date.now()), this.#sweepMs);
      this.#sweeper.unref();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  async ping(): Promise<void> {}

  #stream(name: string, id?: StreamId): MemStream {
    let s = this.#streams.get(name);
    if (!s) {
      s = { id: id ?? parseStreamName(name), head: 0, base: 0, events: [], count: 0 };
      this.#streams.set(name, s);
    }
    return s;
  }

  #at(s: MemStream, seq: number): StoredEvent | undefined {
    return seq > s.base ? s.events[seq - s.base - 1] : undefined;
  }

  /** Estimated heap bytes the stored events hold. */
  get bytes(): number {
    return this.#bytes;
  }

  #count(delta: number): void {
    this.#bytes += delta;
    this.budget.add(delta);
  }

  #put(s: MemStream, e: StoredEvent): void {
    const old = this.#at(s, e.seq);
    if (old && !old.void) {
      s.count--;
      this.#count(-eventCost(old).weight);
    }
    if (!e.void) {
      s.count++;
      this.#count(eventCost(e).weight);
    }
    s.events[e.seq - s.base - 1] = e;
  }

  /** Drops an event from the id and key indexes (its slot is the caller's business). */
  #unindex(e: StoredEvent): void {
    if (e.void) return;
    if (this.#byId.get(e.id) === e) this.#byId.delete(e.id);
    if (e.idempotencyKey !== undefined && this.#byKey.get(`${e.stream}\n${e.idempotencyKey}`) === e) this.#byKey.delete(`${e.stream}\n${e.idempotencyKey}`);
  }

  /** Removes the first `n` slots of the stream (retention or expiry). */
  #dropFront(s: MemStream, n: number): void {
    for (let i = 0; i < n; i++) {
      const e = s.events[i];
      if (!e) continue;
      this.#unindex(e);
      if (!e.void) {
        s.count--;
        this.#count(-eventCost(e).weight);
      }
    }
    s.events.splice(0, n);
    s.base += n;
  }

  /** Deletes events whose expire_at has passed (what MongoDB's TTL monitor does for the Mongo store). */
  sweepExpired(now: number): void {
    for (const s of this.#streams.values()) {
      if (s.expireAt && s.expireAt.getTime() <= now) this.#remove(s, () => true);
      else this.#remove(s, (e) => e.expireAt !== undefined && e.expireAt.getTime() <= now);
    }
  }

  /** Slides the stream's expiry; a stream whose expiry had already passed loses its events first. */
  #slide(s: MemStream, expireAt: Date): void {
    if (s.expireAt && s.expireAt.getTime() <= Date.now()) this.#remove(s, () => true);
    if (!s.expireAt || expireAt > s.expireAt) s.expireAt = expireAt;
  }

  async purge(stream: StreamId): Promise<number> {
    const s = this.#streams.get(streamName(stream));
    // Everything stored goes; readers pass the range at once (read() puts a marker at the new base).
    // A slot still waiting for its append stops the cut there: readers claim it like any hole.
    return s ? this.#remove(s, () => true) : 0;
  }

  /** Deletes the stream's stored events that `doomed` picks; returns how many were not void. */
  #remove(s: MemStream, doomed: (e: StoredEvent) => boolean): number {
    let removed = 0;
    let leading = 0;
    let contiguous = true;
    for (let i = 0; i < s.events.length; i++) {
      const e = s.events[i];
      if (e === undefined || !doomed(e)) {
        contiguous = false;
        continue;
      }
      if (!e.void) removed++;
      if (contiguous) {
        leading++;
        continue;
      }
      this.#unindex(e);
      if (!e.void) {
        s.count--;
        this.#count(-eventCost(e).weight);
      }
      s.events[i] = undefined;
    }
    // Deleted slots at the front are cut off; a reserved slot still waiting for its append stops this.
    if (leading > 0) this.#dropFront(s, leading);
    return removed;
  }

  async reserve(stream: StreamId, count: number, opts?: ReserveOptions): Promise<number> {
    const s = this.#stream(streamName(stream), stream);
    if (opts?.inc !== undefined && s.inc !== opts.inc) throw new IncarnationMismatchError(s.inc);
    if (s.closed) throw new StreamClosedError();
    if (opts?.close) s.closed = true;
    if (opts?.expireAt) this.#slide(s, opts.expireAt);
    s.head += count;
    if (count > 0) s.lastAppendAt = new Date();
    return s.head;
  }

  async closeStream(stream: StreamId): Promise<number> {
    const s = this.#stream(streamName(stream), stream);
    s.closed = true;
    return s.head;
  }

  async reopenStream(stream: StreamId, inc?: string): Promise<number> {
    const s = this.#stream(streamName(stream), stream);
    delete s.closed;
    if (inc !== undefined) s.inc = inc;
    return s.head;
  }

  async setIncarnation(stream: StreamId, inc: string, holding: string | null): Promise<boolean> {
    const s = this.#streams.get(streamName(stream));
    if (!s || (s.inc ?? null) !== holding) return false;
    s.inc = inc;
    return true;
  }

  async isClosed(stream: StreamId): Promise<boolean> {
    return this.#streams.get(streamName(stream))?.closed === true;
  }

  async touch(stream: StreamId, expireAt: Date): Promise<void> {
    this.#slide(this.#stream(streamName(stream), stream), expireAt);
  }

  async streamInfo(stream: StreamId): Promise<StreamInfo | undefined> {
    const s = this.#streams.get(streamName(stream));
    if (!s) return undefined;
    return { head: s.head, floor: s.base, ...(s.expireAt ? { expireAt: s.expireAt } : {}), closed: s.closed === true };
  }

  async head(stream: StreamId): Promise<number> {
    return this.#streams.get(streamName(stream))?.head ?? 0;
  }

  async append(events: readonly StoredEvent[]): Promise<void> {
    // Check everything first so that a rejected call stores nothing.
    for (const e of events) {
      const s = this.#streams.get(e.stream);
      if (!s || e.seq > s.head || e.seq < 1) throw new Error(`sequence ${e.seq} of ${e.stream} was not reserved`);
      if (e.seq <= s.base) throw new Error(`sequence ${e.seq} of ${e.stream} is older than the retained window`);
      if (this.#at(s, e.seq)) throw new SequenceTakenError(`sequence ${e.seq} of ${e.stream} is taken`);
      if (this.#byId.has(e.id)) throw new DuplicateEventError(`event id ${e.id} is taken`);
      if (e.idempotencyKey !== undefined && this.#byKey.has(`${e.stream}\n${e.idempotencyKey}`)) throw new DuplicateEventError(`idempotency key ${e.idempotencyKey} is taken`);
    }
    this.budget.ensure(
      events.reduce((n, e) => n + (e.void ? 0 : eventCost(e).weight), 0),
      events.length === 1 ? "an event" : `${events.length} events`,
    );
    for (const e of events) {
      // Kept as given, not copied: stored events are immutable (the log never changes one after
      // appending it; voidRange replaces the store's objects), so readers share them.
      const s = this.#streams.get(e.stream)!; // checked above
      this.#put(s, e);
      this.#byId.set(e.id, e);
      if (e.idempotencyKey !== undefined) this.#byKey.set(`${e.stream}\n${e.idempotencyKey}`, e);
      this.#trim(s);
    }
  }

  /**
   * Retention: trimmed in chunks (an eighth of the bound at least), so the splice is amortized.
   * One stream's commits are serialized, so only what is being appended is newer than the cut.
   */
  #trim(s: MemStream): void {
    if (this.#retain > 0 && s.events.length > this.#retain + Math.max(64, this.#retain >> 3)) this.#dropFront(s, s.events.length - this.#retain);
  }

  async voidRange(stream: StreamId, from: number, to: number, at: Date, ids: readonly string[]): Promise<number> {
    const name = streamName(stream);
    const s = this.#stream(name);
    let written = 0;
    for (let seq = Math.max(from, s.base + 1); seq <= Math.min(to, s.head); seq++) {
      const existing = this.#at(s, seq);
      if (existing && !ids.includes(existing.id)) continue;
      if (existing) this.#unindex(existing);
      this.#put(s, voidEvent(name, seq, at));
      written++;
    }
    return written;
  }

  async read(stream: StreamId, after: number, limit: number): Promise<StoredEvent[]> {
    const s = this.#streams.get(streamName(stream));
    const out: StoredEvent[] = [];
    if (!s) return out;
    // Sequences up to base are gone (retention, expiry, purge): one marker stands for them.
    if (after < s.base) out.push(purgeMarker(streamName(stream), s.base));
    for (let i = Math.max(after, s.base) - s.base; i < s.events.length && out.length < limit; i++) {
      const e = s.events[i];
      if (e) out.push(withStreamExpiry(e, s.expireAt));
    }
    return out;
  }

  async findByIdempotencyKey(stream: StreamId, key: string): Promise<StoredEvent | undefined> {
    return this.#byKey.get(`${streamName(stream)}\n${key}`);
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    const e = this.#byId.get(id);
    return e && !e.void ? e : undefined;
  }

  async readBefore(stream: StreamId, before: number, limit: number): Promise<StoredEvent[]> {
    const s = this.#streams.get(streamName(stream));
    const out: StoredEvent[] = [];
    if (!s) return out;
    for (let i = Math.min(before - 1 - s.base, s.events.length) - 1; i >= 0 && out.length < limit; i--) {
      const e = s.events[i];
      if (e) out.push(withStreamExpiry(e, s.expireAt));
    }
    return out;
  }

  async cursorAt(stream: StreamId, at: Date): Promise<number> {
    const s = this.#streams.get(streamName(stream));
    if (!s) return 0;
    let best = 0;
    for (const e of s.events) if (e && e.createdAt <= at && e.seq > best) best = e.seq;
    return best;
  }

  async listStreams(project: string, q: ListStreamsQuery): Promise<StreamListing[]> {
    const after = q.after;
    return [...this.#streams.values()]
      .filter((s) => s.id.project === project && (q.kind === undefined || s.id.kind === q.kind) && (!after || compareListed(s.id, after) > 0))
      .sort((a, b) => compareListed(a.id, b.id))
      .slice(0, q.limit)
      .map((s) => ({ stream: s.id, head: s.head, events: s.count, ...(s.lastAppendAt ? { lastAppendAt: new Date(s.lastAppendAt) } : {}) }));
  }

  async bindExecution(executionId: string, project: string): Promise<string> {
    const bound = this.#executions.get(executionId);
    if (bound !== undefined) return bound;
    this.#executions.set(executionId, project);
    return project;
  }

  async executionProject(executionId: string): Promise<string | undefined> {
    return this.#executions.get(executionId);
  }

  watchAppends(): () => Promise<void> {
    return async () => {};
  }
}

/** listStreams' order: (kind, key), strings by their UTF-8 bytes (as MongoDB compares them). */
function compareListed(a: { kind: string; key: string }, b: { kind: string; key: string }): number {
  return Buffer.compare(Buffer.from(a.kind), Buffer.from(b.kind)) || Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
}

/** The event as readers see it: it expires with its stream unless it lives longer on its own. */
function withStreamExpiry(e: StoredEvent, streamExpireAt: Date | undefined): StoredEvent {
  if (!streamExpireAt || e.void || (e.expireAt && e.expireAt >= streamExpireAt)) return e;
  const copy = { ...e, expireAt: streamExpireAt };
  setCost(copy, eventCost(e));
  return copy;
}
