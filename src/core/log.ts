import { randomUUID } from "node:crypto";
import type { Store } from "./store.js";
import { Hub } from "./hub.js";
import { HoleClock, ready } from "./ordering.js";
import { eventCost, freeJsonProblem, MAX_JSON_DEPTH, MAX_JSON_VALUES, setCost } from "./json.js";
import { CapacityError, DuplicateEventError, InvalidEventError, LimitError, SequenceTakenError, StoreUnavailableError, streamName, type EventDraft, type StoredEvent, type StreamId } from "./types.js";

export interface EventLogOptions {
  /**
   * How long a reader waits at a hole (a sequence taken but not stored) before claiming it with a
   * void placeholder, measured on this process's monotonic clock from when it first saw the hole.
   */
  holeTimeoutMs: number;
  /** Most events in one publish. */
  maxBatchEvents: number;
  /** Largest event: its data, metadata and dialect fields as JSON, in bytes. */
  maxEventBytes: number;
  /** Most JSON values (scalars, objects, arrays) in one event. */
  maxEventValues: number;
  /** Events read from the store per round; at least the largest publish. */
  readBatch: number;
  /**
   * Bytes (events' JSON) per delivered batch and per listed page: a batch or page stops before
   * the event that would pass it; an event larger than this travels alone. Also what a subscriber
   * aims to read from the store per round once it has seen how large the stream's events are.
   */
  responseBytes: number;
  /** Estimated heap bytes of events kept in the per-stream tails, all streams together. */
  tailBytes: number;
  /** Estimated heap bytes of publishes queued or being written; past it publishes are refused (CapacityError). */
  pendingBytes: number;
  /** Most events coalesced into one store write by group commit. */
  maxCommitEvents: number;
  /** Subscribers with nothing to do re-read this often even without a wake-up. */
  idleRecheckMs: number;
  /** Wall clock (ms since the epoch): created_at of events and expiry. Tests inject skewed clocks. */
  now?: () => number;
  /** Monotonic clock (ms) for hole ages; default performance.now(). */
  monotonic?: () => number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  observer?: LogObserver;
}

/** Hooks for metrics: called after each publish settles and each delivered batch. */
export interface LogObserver {
  published(source: string, events: number, seconds: number): void;
  publishFailed(source: string): void;
  /** `lagMs`: from the newest delivered event's creation to its delivery. */
  delivered(events: number, lagMs: number): void;
}

/** Majority reads of a failed append's range before its outcome is called unknown (about 1.4 s in all). */
const RESOLVE_READS = 8;

/** Recent events kept per followed stream for subscribers that keep up (and at most tailBytes in all). */
const TAIL_EVENTS = 4096;
/** A subscriber's first read from the store: small, until it knows how large the stream's events are. */
const FIRST_READ = 16;

export const DEFAULT_LOG_OPTIONS: EventLogOptions = {
  holeTimeoutMs: 2000,
  maxBatchEvents: 1000,
  maxEventBytes: 4 * 1024 * 1024,
  maxEventValues: MAX_JSON_VALUES,
  readBatch: 1000,
  responseBytes: 1024 * 1024,
  tailBytes: 32 * 1024 * 1024,
  pendingBytes: 256 * 1024 * 1024,
  maxCommitEvents: 5000,
  idleRecheckMs: 5000,
};

export interface PublishOptions {
  /**
   * Sliding expiry of the stream: every event of it, old and new, is kept until at least this
   * instant (Kubiya: an execution's events live one hour past its last event). Kept on the stream
   * record, so earlier events are not rewritten.
   */
  extendExpiryTo?: Date;
  /** Which API published (a metrics label): "polos", "kubiya", "sailhouse", "terminaluse", "streams". */
  source?: string;
  /**
   * Close the stream with this publish (a Durable Streams final append): its sequences are the
   * stream's last; publishes queued behind it fail with StreamClosedError.
   */
  close?: boolean;
}

export interface Stats {
  published: number;
  commits: number;
  /** Sequences this process's readers claimed as void (their publisher stalled or died). */
  holesSkipped: number;
  subscribers: number;
  /** Store operations that failed (publishes and subscriber reads). */
  storeErrors: number;
}

interface Pending {
  drafts: readonly EventDraft[];
  opts: PublishOptions | undefined;
  resolve: (events: StoredEvent[]) => void;
  reject: (err: unknown) => void;
  /** Put back once after a lost idempotency race with another instance. */
  requeued?: true;
}

interface Queue {
  stream: StreamId;
  pending: Pending[];
  running: boolean;
}

export interface Page {
  events: StoredEvent[];
  /** Cursor for the next page. */
  next: number;
  hasMore: boolean;
}

/** The estimated heap bytes of some events. */
function weightOf(events: readonly StoredEvent[]): number {
  let w = 0;
  for (const e of events) w += eventCost(e).weight;
  return w;
}

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
 * The ordered event log: publish (sequencing, group commit) and read/subscribe (in order, exactly
 * once) over any Store. Knows nothing of HTTP or of a particular database.
 */
export class EventLog {
  readonly stats: Stats = { published: 0, commits: 0, holesSkipped: 0, subscribers: 0, storeErrors: 0 };
  readonly #store: Store;
  readonly #opts: EventLogOptions;
  readonly #hub = new Hub();
  readonly #queues = new Map<string, Queue>();
  /** Streams with live subscribers here, for the store's cross-instance watcher. */
  readonly #followed = new Map<string, { id: StreamId; count: number }>();
  /**
   * The tail of each followed stream as committed by this process: contiguous sequences only, at
   * most TAIL_EVENTS. Subscribers that keep up read from here instead of the store (one store write,
   * N subscribers, no N store reads). Anything else (another instance's appends, a gap, an older
   * position, events with an expiry that another publish may extend) is read from the store.
   */
  readonly #tails = new Map<string, StoredEvent[]>();
  /** Estimated heap bytes held by #tails, per stream and in all. */
  readonly #tailWeights = new Map<string, number>();
  #tailTotal = 0;
  /** Estimated heap bytes of the publishes queued or being written. */
  #pending = 0;
  /** Average JSON bytes of the events lately read, per stream (at most 10,000 streams): sizes store reads. */
  readonly #avgBytes = new Map<string, number>();
  readonly #stopWatching: () => Promise<void>;
  readonly #now: () => number;
  readonly #mono: () => number;
  readonly #holes: HoleClock;
  /** The expiry of each tail's stream as last slid here (a tail past it is not served). */
  readonly #tailExpiry = new Map<string, Date>();
  /** Aborted by close(): ends every subscription. */
  readonly #closing = new AbortController();
  readonly #recheck: NodeJS.Timeout;

  constructor(store: Store, opts: Partial<EventLogOptions> = {}) {
    this.#store = store;
    this.#opts = { ...DEFAULT_LOG_OPTIONS, ...opts };
    this.#now = this.#opts.now ?? Date.now;
    this.#mono = this.#opts.monotonic ?? (() => performance.now());
    this.#holes = new HoleClock(this.#mono);
    this.#stopWatching = store.watchAppends(
      (name) => this.#hub.notify(name),
      () => [...this.#followed.values()].map((f) => f.id),
    );
    // Idle subscribers look at the store now and then even without a wake-up (one timer for all).
    this.#recheck = setInterval(() => this.#hub.expireAll(), this.#opts.idleRecheckMs);
    this.#recheck.unref();
  }

  get store(): Store {
    return this.#store;
  }

  /** Ends every subscription (their generators return) and stops watching the store. */
  async close(): Promise<void> {
    clearInterval(this.#recheck);
    this.#closing.abort();
    await this.#stopWatching();
  }

  /** Resolves once no publish is queued or being written. */
  async idle(): Promise<void> {
    while (this.#queues.size > 0) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * Appends the drafts to the stream, in order, as one atomic batch. Resolves with the stored
   * events once the store has them. Concurrent publishes to one stream that arrive in the same
   * tick (or while a write is in flight) share one sequence reservation and one store write.
   */
  publish(stream: StreamId, drafts: readonly EventDraft[], opts?: PublishOptions): Promise<StoredEvent[]> {
    if (drafts.length === 0) return Promise.resolve([]);
    if (drafts.length > this.#opts.maxBatchEvents) {
      return Promise.reject(new LimitError(`a publish may hold at most ${this.#opts.maxBatchEvents} events, got ${drafts.length}`));
    }
    for (const [i, d] of drafts.entries()) {
      // Whatever a surface let through, only JSON every other surface can serve is stored. Callers
      // hold their input to MAX_JSON_DEPTH; a dialect may wrap it in a level or two (TerminalUse's
      // content part), which stays within what protobuf clients decode.
      for (const field of ["data", "metadata", "extra"] as const) {
        const problem = d[field] === undefined ? undefined : freeJsonProblem(d[field], MAX_JSON_DEPTH + (field === "extra" ? 4 : 2));
        if (problem) return Promise.reject(new InvalidEventError(i, field, problem));
      }
      const { bytes: size, values } = eventCost(d);
      if (values > this.#opts.maxEventValues) return Promise.reject(new LimitError(`event ${i} holds ${values} JSON values; the limit is ${this.#opts.maxEventValues}`));
      if (size > this.#opts.maxEventBytes) return Promise.reject(new LimitError(`event ${i} is ${size} bytes; the limit is ${this.#opts.maxEventBytes}`));
    }
    // Queued publishes hold their events in memory until the store has them: bounded in bytes.
    const weight = drafts.reduce((n, d) => n + eventCost(d).weight, 0);
    if (this.#pending > 0 && this.#pending + weight > this.#opts.pendingBytes) {
      return Promise.reject(new CapacityError(`publishes queued here hold over ${this.#opts.pendingBytes} bytes; retry shortly`));
    }
    this.#pending += weight;
    const name = streamName(stream);
    let q = this.#queues.get(name);
    if (!q) {
      q = { stream, pending: [], running: false };
      this.#queues.set(name, q);
    }
    const queue = q;
    const started = performance.now();
    const result = new Promise<StoredEvent[]>((resolve, reject) => {
      queue.pending.push({ drafts, opts, resolve, reject });
      if (!queue.running) {
        queue.running = true;
        setImmediate(() => void this.#drain(name, queue));
      }
    });
    const settled = (): void => {
      this.#pending -= weight;
    };
    result.then(settled, settled);
    const obs = this.#opts.observer;
    if (obs) {
      const source = opts?.source ?? "other";
      result.then(
        (events) => obs.published(source, events.length, (performance.now() - started) / 1000),
        () => obs.publishFailed(source),
      );
    }
    return result;
  }

  async #drain(name: string, q: Queue): Promise<void> {
    while (q.pending.length > 0) {
      let count = 0;
      let take = 0;
      while (take < q.pending.length && (take === 0 || count + q.pending[take]!.drafts.length <= this.#opts.maxCommitEvents)) {
        count += q.pending[take]!.drafts.length;
        take++;
        // A closing publish ends its round: it must be the last thing the stream takes.
        if (q.pending[take - 1]!.opts?.close) break;
      }
      await this.#commit(q.stream, name, q.pending.splice(0, take), (again) => q.pending.unshift(...again));
    }
    q.running = false;
    if (q.pending.length === 0) this.#queues.delete(name);
  }

  /**
   * Idempotency: a publish whose events all carry keys already stored in the stream is answered
   * with the stored events and takes no sequence; one that repeats a key of an earlier publish of
   * the same round follows that publish's outcome. A publish that mixes stored and new keys is
   * refused (DuplicateEventError). Returns the publishes that still need writing.
   */
  async #dedupe(stream: StreamId, batch: Pending[]): Promise<{ fresh: Pending[]; followers: Map<Pending, Pending[]> }> {
    const fresh: Pending[] = [];
    const followers = new Map<Pending, Pending[]>();
    const leaders = new Map<string, Pending>();
    for (const p of batch) {
      const keys = p.drafts.map((d) => d.idempotencyKey);
      if (keys.every((k) => k === undefined)) {
        fresh.push(p);
        continue;
      }
      const leader = keys[0] !== undefined ? leaders.get(keys[0]) : undefined;
      if (leader && keys.every((k, i) => k === leader.drafts[i]?.idempotencyKey) && keys.length === leader.drafts.length) {
        followers.set(leader, [...(followers.get(leader) ?? []), p]);
        continue;
      }
      const stored = await Promise.all(keys.map((k) => (k === undefined ? undefined : this.#store.findByIdempotencyKey(stream, k))));
      if (stored.every((e) => e !== undefined)) {
        p.resolve(stored as StoredEvent[]);
      } else if (stored.some((e) => e !== undefined)) {
        p.reject(new DuplicateEventError("some idempotency keys of this publish are already used by other events"));
      } else {
        for (const k of keys) if (k !== undefined) leaders.set(k, p);
        fresh.push(p);
      }
    }
    return { fresh, followers };
  }

  async #commit(stream: StreamId, name: string, pending: Pending[], requeue: (again: Pending[]) => void): Promise<void> {
    let batch: Pending[];
    let followers: Map<Pending, Pending[]>;
    try {
      ({ fresh: batch, followers } = await this.#dedupe(stream, pending));
    } catch (err) {
      this.stats.storeErrors++;
      for (const p of pending) p.reject(err);
      return;
    }
    // Followers settle with their leader.
    for (const [leader, list] of followers) {
      const { resolve, reject } = leader;
      leader.resolve = (events) => (resolve(events), list.forEach((f) => f.resolve(events)));
      leader.reject = (err) => (reject(err), list.forEach((f) => f.reject(err)));
    }
    if (batch.length === 0) return;
    const count = batch.reduce((n, p) => n + p.drafts.length, 0);
    let expireAt: Date | undefined;
    for (const p of batch) {
      const to = p.opts?.extendExpiryTo;
      if (to && (!expireAt || to > expireAt)) expireAt = to;
    }
    let last: number;
    try {
      // The stream's expiry slides in the same round trip (the stream record), so no earlier event
      // is rewritten and none expires before the new ones are visible.
      const close = batch[batch.length - 1]!.opts?.close === true;
      last = await this.#store.reserve(stream, count, expireAt || close ? { ...(expireAt ? { expireAt } : {}), ...(close ? { close } : {}) } : undefined);
    } catch (err) {
      // Nothing was inserted. If the counter did move, readers claim the untouched range later.
      this.stats.storeErrors++;
      const failure = err instanceof StoreUnavailableError ? new StoreUnavailableError(err.message, { cause: err, outcome: "not-stored" }) : err;
      for (const p of batch) p.reject(failure);
      return;
    }
    const first = last - count + 1;
    const createdAt = new Date(this.#now());
    let seq = first;
    const results: StoredEvent[][] = [];
    const all: StoredEvent[] = [];
    for (const p of batch) {
      const batchEnd = p.drafts.length > 1 ? seq + p.drafts.length - 1 : undefined;
      const events = p.drafts.map((d) => {
        const e: StoredEvent = {
          id: d.id ?? randomUUID(),
          stream: name,
          seq: seq++,
          eventType: d.eventType,
          data: d.data,
          metadata: d.metadata ?? {},
          createdAt,
        };
        if (d.expireAt) e.expireAt = d.expireAt;
        if (d.idempotencyKey !== undefined) e.idempotencyKey = d.idempotencyKey;
        if (d.extra) e.extra = d.extra;
        if (d.bytes) e.bytes = d.bytes;
        if (batchEnd !== undefined) e.batchEnd = batchEnd;
        setCost(e, eventCost(d));
        return e;
      });
      results.push(events);
      all.push(...events);
    }
    try {
      await this.#store.append(all);
    } catch (err) {
      await this.#afterFailedAppend(stream, name, batch, results, first, last, createdAt, err, requeue);
      return;
    }
    this.stats.commits++;
    this.stats.published += count;
    this.#remember(name, all, expireAt);
    this.#hub.notify(name);
    batch.forEach((p, k) => p.resolve(results[k]!));
  }

  #remember(name: string, events: StoredEvent[], streamExpireAt: Date | undefined): void {
    if (!this.#followed.has(name)) return;
    if (events.some((e) => e.expireAt !== undefined)) {
      this.#dropTail(name);
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
      this.#dropTail(name);
      const kept = events.slice(-TAIL_EVENTS);
      this.#tails.set(name, kept);
      this.#tailWeights.set(name, weightOf(kept));
      this.#tailTotal += weightOf(kept);
    }
    // Over the budget: this stream's oldest events go first, then other streams' (readers of a
    // trimmed range read the store instead).
    const own = this.#tails.get(name)!;
    while (this.#tailTotal > this.#opts.tailBytes && own.length > 1) this.#trimTail(name, own, Math.max(1, own.length >> 1));
    for (const [other, t] of this.#tails) {
      if (this.#tailTotal <= this.#opts.tailBytes) break;
      if (other !== name) this.#dropTail(other);
      else if (t.length > 0 && weightOf(t) > this.#opts.tailBytes) this.#dropTail(name);
    }
  }

  /** Drops the first `n` events of a tail. */
  #trimTail(name: string, tail: StoredEvent[], n: number): void {
    const gone = weightOf(tail.splice(0, n));
    this.#tailWeights.set(name, (this.#tailWeights.get(name) ?? 0) - gone);
    this.#tailTotal -= gone;
  }

  #dropTail(name: string): void {
    this.#tailTotal -= this.#tailWeights.get(name) ?? 0;
    this.#tailWeights.delete(name);
    this.#tails.delete(name);
    this.#tailExpiry.delete(name);
  }

  /** Events after `cursor` from the tail, when the tail holds cursor + 1 (else undefined: read the store). */
  #fromTail(name: string, cursor: number, limit: number): StoredEvent[] | undefined {
    const tail = this.#tails.get(name);
    if (!tail || tail.length === 0) return undefined;
    // A stream with an expiry that may have passed (another instance's publishes may have slid it
    // further): the store knows.
    const expireAt = this.#tailExpiry.get(name);
    if (expireAt && expireAt.getTime() <= this.#now()) return undefined;
    const first = tail[0]!.seq;
    const last = tail[tail.length - 1]!.seq;
    if (cursor + 1 < first || cursor >= last) return undefined;
    return tail.slice(cursor + 1 - first, cursor + 1 - first + limit);
  }

  /**
   * A round's append failed. What it left is not known yet: a prefix may be stored, and after a
   * timeout or a dropped connection the rest may still land. So the range is first *closed*: every
   * sequence of it that is still free gets a void placeholder (the same claim readers make), after
   * which nothing of this round can be stored any more and what the store holds is final. Then it
   * is read back (majority read concern): publishes whose events are all stored are acked (readers
   * may already have delivered them); the others failed for certain — their own stored events are
   * voided, and they are either put through the queue once more (a lost idempotency race, or a
   * range claimed by a reader after a stall) or rejected as "not stored". When the store cannot
   * even be asked, the publishes are rejected with outcome "unknown": never acked, never claimed
   * to be unstored.
   */
  async #afterFailedAppend(
    stream: StreamId,
    name: string,
    batch: Pending[],
    results: StoredEvent[][],
    first: number,
    last: number,
    createdAt: Date,
    err: unknown,
    requeue: (again: Pending[]) => void,
  ): Promise<void> {
    this.stats.storeErrors++;
    let stored: Map<string, number> | undefined;
    try {
      await this.#store.voidRange(stream, first, last, createdAt, []);
      // Every sequence of the range is taken now (one of ours, or a placeholder). One that a
      // majority read does not show yet is not majority-committed yet (a write-concern timeout
      // left it on the primary only): look again for a while before calling the outcome unknown.
      for (let attempt = 0; attempt < RESOLVE_READS && !stored; attempt++) {
        if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * attempt));
        const docs = (await this.#store.read(stream, first - 1, last - first + 1)).filter((e) => e.seq >= first && e.seq <= last);
        if (new Set(docs.map((e) => e.seq)).size === last - first + 1) stored = new Map(docs.filter((e) => !e.void).map((e) => [e.id, e.seq]));
      }
      if (!stored) throw new Error("the range is not majority-committed yet");
    } catch (resolveErr) {
      this.#opts.log?.("a failed publish could not be resolved: its outcome is unknown (readers claim its sequences once the store is back)", {
        stream: name,
        first,
        last,
        err: String(err),
        resolveErr: String(resolveErr),
      });
      this.#hub.notify(name);
      const unknown = new StoreUnavailableError(
        "the event store became unavailable while storing this publish: it may or may not have been stored (an idempotency key makes a retry safe)",
        { cause: err, outcome: "unknown" },
      );
      for (const p of batch) p.reject(unknown);
      return;
    }
    const done = new Set(batch.filter((_p, k) => results[k]!.every((e) => stored.get(e.id) === e.seq)));
    const failedIds = batch.flatMap((p, k) => (done.has(p) ? [] : results[k]!.map((e) => e.id).filter((id) => stored.has(id))));
    if (failedIds.length > 0) {
      try {
        // Frees their ids and idempotency keys (a retry can use them); readers never deliver them
        // either way: each is in a batch with a void member.
        await this.#store.voidRange(stream, first, last, createdAt, failedIds);
      } catch (voidErr) {
        this.#opts.log?.("could not free the ids of a failed publish (its events are void to readers all the same)", { stream: name, first, last, err: String(voidErr) });
      }
    }
    this.#hub.notify(name);
    if (done.size > 0) this.stats.commits++;
    batch.forEach((p, k) => {
      if (!done.has(p)) return;
      this.stats.published += results[k]!.length;
      p.resolve(results[k]!);
    });
    const retryable = err instanceof DuplicateEventError || err instanceof SequenceTakenError;
    const again = batch.filter((p) => !done.has(p) && retryable && !p.requeued);
    for (const p of batch) {
      if (done.has(p) || again.includes(p)) continue;
      if (err instanceof DuplicateEventError) p.reject(err);
      else p.reject(new StoreUnavailableError("the event store did not store this publish in time; nothing of it was stored, retry", { cause: err, outcome: "not-stored" }));
    }
    for (const p of again) p.requeued = true;
    requeue(again);
  }

  /** The last sequence handed out (0 for a stream never published to). */
  head(stream: StreamId): Promise<number> {
    return this.#store.head(stream);
  }

  /**
   * Closes the stream (end of stream): every later publish, from any API and any instance, fails
   * with StreamClosedError. Idempotent. Returns the final sequence. Followers are woken.
   */
  async closeStream(stream: StreamId): Promise<number> {
    const last = await this.#store.closeStream(stream);
    this.#hub.notify(streamName(stream));
    return last;
  }

  /** Opens a closed stream again (a new Durable Streams incarnation). Returns the last sequence. */
  reopenStream(stream: StreamId): Promise<number> {
    return this.#store.reopenStream(stream);
  }

  isClosed(stream: StreamId): Promise<boolean> {
    return this.#store.isClosed(stream);
  }

  /**
   * Something to wait on for "the stream changed" (an append or a close, here or, for appends,
   * on another instance): take it before reading, then wait if the read found nothing new, so no
   * wake-up is lost. `wait` resolves true when woken, false on timeout; `cancel` when not waiting.
   */
  watch(stream: StreamId): { wait(timeoutMs: number): Promise<boolean>; cancel(): void } {
    const name = streamName(stream);
    this.#follow(name, stream, +1);
    const ticket = this.#hub.ticket(name);
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      this.#follow(name, stream, -1);
    };
    return {
      wait: async (timeoutMs) => {
        try {
          return await ticket.wait(timeoutMs);
        } finally {
          release();
        }
      },
      cancel: () => {
        ticket.cancel();
        release();
      },
    };
  }

  /**
   * Takes `count` sequences of the stream at once and returns the sequence before them (with
   * count 0, the last sequence handed out): room for copies written with fill() (a Durable Streams
   * fork copies its source's events to the same positions).
   */
  async reserveRange(stream: StreamId, count: number): Promise<number> {
    if (count === 0) return this.#store.head(stream);
    return (await this.#store.reserve(stream, count)) - count;
  }

  /**
   * Stores copies in a range taken with reserveRange(): the draft at relative position p
   * (1..count) gets sequence base + p; positions without a draft become void placeholders.
   */
  async fill(stream: StreamId, base: number, count: number, copies: ReadonlyMap<number, EventDraft>): Promise<void> {
    if (count === 0) return;
    const name = streamName(stream);
    const createdAt = new Date(this.#now());
    const events: StoredEvent[] = [];
    for (const [pos, d] of [...copies].sort((a, b) => a[0] - b[0])) {
      const e: StoredEvent = { id: randomUUID(), stream: name, seq: base + pos, eventType: d.eventType, data: d.data, metadata: d.metadata ?? {}, createdAt };
      if (d.bytes) e.bytes = d.bytes;
      if (d.extra) e.extra = d.extra;
      events.push(e);
    }
    try {
      for (let i = 0; i < events.length; i += this.#opts.maxCommitEvents) await this.#store.append(events.slice(i, i + this.#opts.maxCommitEvents));
      if (events.length < count) await this.#store.voidRange(stream, base + 1, base + count, createdAt, []);
    } catch (err) {
      await this.#store.voidRange(stream, base + 1, base + count, createdAt, events.map((e) => e.id)).catch(() => undefined);
      throw err;
    } finally {
      this.#hub.notify(name);
    }
  }

  /**
   * Reads from the store at most about responseBytes, judged by the sizes of the stream's events
   * read before (a stream of 4 MiB events is read one or two at a time, not `limit` at a time),
   * but never less than the multi-event publish at the cursor, which readers take whole.
   */
  async #read(stream: StreamId, name: string, cursor: number, limit: number): Promise<{ docs: StoredEvent[]; truncated: boolean }> {
    const avg = this.#avgBytes.get(name);
    let n = Math.min(limit, avg === undefined ? FIRST_READ : Math.max(2, Math.ceil(this.#opts.responseBytes / Math.max(avg, 1)) + 1));
    let docs = await this.#store.read(stream, cursor, n);
    const end = docs[0]?.batchEnd;
    if (docs.length === n && end !== undefined && end > docs[docs.length - 1]!.seq) {
      n = end - cursor;
      docs = await this.#store.read(stream, cursor, n);
    }
    if (docs.length > 0) {
      let bytes = 0;
      for (const e of docs) bytes += eventCost(e).bytes;
      this.#noteSize(name, bytes / docs.length);
    }
    return { docs, truncated: docs.length === n };
  }

  /** Folds the average size of events just read into the stream's estimate (at most 10,000 streams tracked). */
  #noteSize(name: string, avgBytes: number): void {
    const before = this.#avgBytes.get(name);
    if (before === undefined && this.#avgBytes.size >= 10_000) this.#avgBytes.delete(this.#avgBytes.keys().next().value!);
    this.#avgBytes.set(name, before === undefined ? avgBytes : (before + avgBytes) / 2);
  }

  /** Deletes a stream's stored events; its sequences stay taken. Returns how many and the last sequence. */
  async purge(stream: StreamId): Promise<{ purged: number; head: number }> {
    const purged = await this.#store.purge(stream);
    this.#dropTail(streamName(stream));
    return { purged, head: await this.#store.head(stream) };
  }

  /**
   * A reader stopped at a hole. Once this process has seen the hole open for the hole timeout (on
   * its own monotonic clock) it claims it: void placeholders under the unique {stream, seq} index,
   * so the publisher that took those sequences can no longer store them (its publish fails and is
   * never acked) and every reader passes them. Returns 0 when claimed (read again now), else how
   * long to wait at most before looking again.
   */
  async #atHole(stream: StreamId, name: string, hole: { from: number; to: number }): Promise<number> {
    const age = this.#holes.age(name, hole.from);
    if (age < this.#opts.holeTimeoutMs) return this.#opts.holeTimeoutMs - age;
    const claimed = await this.#store.voidRange(stream, hole.from, hole.to, new Date(this.#now()), []);
    this.#holes.forget(name, hole.from);
    if (claimed > 0) {
      this.stats.holesSkipped += claimed;
      this.#opts.log?.("claimed sequences that were taken but not stored in time (their publish fails)", { stream: name, from: hole.from, to: hole.to, claimed });
    }
    this.#hub.notify(name);
    return 0;
  }

  /** One page of events after `after`, in order, applying the same ordering rules as subscribe(). */
  async list(stream: StreamId, after: number, limit: number): Promise<Page> {
    const events: StoredEvent[] = [];
    const name = streamName(stream);
    let bytes = 0;
    let cursor = after;
    for (let claims = 0; ; ) {
      const want = Math.max(limit - events.length, 1);
      const { docs, truncated } = await this.#read(stream, name, cursor, Math.max(want + 1, this.#opts.readBatch));
      const r = ready(docs, cursor, this.#now(), truncated);
      for (const e of r.events) {
        // A page ends at `limit` events or at responseBytes (one larger event comes alone).
        const b = eventCost(e).bytes;
        if (events.length === limit || (events.length > 0 && bytes + b > this.#opts.responseBytes)) return { events, next: events[events.length - 1]!.seq, hasMore: true };
        events.push(e);
        bytes += b;
      }
      const progressed = r.next > cursor;
      cursor = r.next;
      if (r.hole) {
        // A page never waits: it ends before a young hole (the next page call looks again).
        if (claims++ < 3 && (await this.#atHole(stream, name, r.hole)) === 0) continue;
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
  async listBefore(stream: StreamId, before: number, limit: number): Promise<{ events: StoredEvent[]; hasMore: boolean }> {
    const name = streamName(stream);
    const now = this.#now();
    const events: StoredEvent[] = [];
    let bytes = 0;
    let cursor = before;
    for (;;) {
      const avg = this.#avgBytes.get(name);
      const n = Math.min(limit - events.length + 1, avg === undefined ? FIRST_READ : Math.max(2, Math.ceil(this.#opts.responseBytes / Math.max(avg, 1)) + 1));
      const docs = await this.#store.readBefore(stream, cursor, n);
      for (const e of docs) {
        cursor = e.seq;
        if (e.void || (e.expireAt && e.expireAt.getTime() <= now)) continue;
        const b = eventCost(e).bytes;
        if (events.length === limit || (events.length > 0 && bytes + b > this.#opts.responseBytes)) return { events, hasMore: true };
        this.#noteSize(name, b);
        events.push(e);
        bytes += b;
      }
      if (docs.length < n) return { events, hasMore: false };
    }
  }

  /**
   * Follows a stream from `after`: yields batches of events in sequence order, each event exactly
   * once, then waits for new ones until `signal` aborts.
   */
  async *subscribe(stream: StreamId, after: number, callerSignal: AbortSignal): AsyncGenerator<StoredEvent[]> {
    const signal = AbortSignal.any([callerSignal, this.#closing.signal]);
    const name = streamName(stream);
    this.#follow(name, stream, +1);
    // Taken before each read: whatever is appended after the read fires it, so no wake-up is lost.
    let ticket = this.#hub.ticket(name);
    const onAbort = (): void => ticket.expire();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      let cursor = after;
      let chaseDelay = 0;
      let chaseStarted = 0;
      let outageDelay = 0;
      while (!signal.aborted) {
        let docs: StoredEvent[];
        let truncated: boolean;
        try {
          const fromTail = this.#fromTail(name, cursor, this.#opts.readBatch);
          if (fromTail) {
            docs = fromTail;
            truncated = docs.length === this.#opts.readBatch;
          } else ({ docs, truncated } = await this.#read(stream, name, cursor, this.#opts.readBatch));
          outageDelay = 0;
        } catch (err) {
          // The store is unreachable: keep the subscriber, retry with backoff, resume at the cursor.
          this.stats.storeErrors++;
          outageDelay = Math.min(outageDelay === 0 ? 100 : outageDelay * 2, 2000);
          if (outageDelay === 100) this.#opts.log?.("subscriber read failed; retrying", { stream: name, err: String(err) });
          await ticket.wait(outageDelay);
          ticket = this.#hub.ticket(name);
          continue;
        }
        const now = this.#now();
        const r = ready(docs, cursor, now, truncated);
        if (r.next > cursor) {
          cursor = r.next;
          chaseDelay = 0;
          if (r.events.length > 0) {
            this.#opts.observer?.delivered(r.events.length, now - r.events[r.events.length - 1]!.createdAt.getTime());
            // Batches of at most responseBytes (an event larger than that comes alone).
            for (let rest = r.events; rest.length > 0; ) {
              const batch = withinBytes(rest, this.#opts.responseBytes);
              rest = rest.slice(batch.length);
              yield batch;
            }
          }
          // Read again at once when there may be more: the page was full, or something was
          // appended since the read (the ticket fired, perhaps during the yield). Otherwise the
          // read saw everything: wait on the same ticket.
          if (!r.hole && (truncated || ticket.fired)) {
            ticket.cancel();
            ticket = this.#hub.ticket(name);
            continue;
          }
        }
        let waitMs: number | undefined;
        if (r.hole) {
          // A hole: its insert may land any moment (possibly from another instance).
          let left: number;
          try {
            left = await this.#atHole(stream, name, r.hole);
          } catch (err) {
            this.stats.storeErrors++;
            left = 250; // the claim failed (store away): look again
            this.#opts.log?.("claiming a hole failed; retrying", { stream: name, err: String(err) });
          }
          if (left === 0) {
            ticket.cancel();
            ticket = this.#hub.ticket(name);
            continue;
          }
          chaseDelay = Math.min(chaseDelay === 0 ? 5 : chaseDelay * 2, 250);
          waitMs = Math.max(1, Math.min(chaseDelay, left));
        } else if (chaseDelay > 0 && this.#mono() - chaseStarted < this.#opts.holeTimeoutMs) {
          // Woken for sequences that are taken but not stored yet: look again soon.
          chaseDelay = Math.min(chaseDelay * 2, 250);
          waitMs = chaseDelay;
        } else {
          chaseDelay = 0;
        }
        // No timeout otherwise: woken by an append, or by the log's periodic idle recheck.
        if (signal.aborted) break;
        const notified = await ticket.wait(waitMs);
        ticket = this.#hub.ticket(name);
        if (notified && chaseDelay === 0 && !r.hole && (await this.#store.head(stream).catch(() => 0)) > cursor) {
          // The head moved but nothing was readable: another writer is between reserve and append.
          chaseDelay = 5;
          chaseStarted = this.#mono();
        }
      }
    } finally {
      ticket.cancel();
      signal.removeEventListener("abort", onAbort);
      this.#follow(name, stream, -1);
    }
  }

  #follow(name: string, id: StreamId, delta: 1 | -1): void {
    this.stats.subscribers += delta;
    const f = this.#followed.get(name);
    if (delta > 0) {
      if (f) f.count++;
      else this.#followed.set(name, { id, count: 1 });
    } else if (f && --f.count === 0) {
      this.#followed.delete(name);
      this.#dropTail(name);
    }
  }
}
