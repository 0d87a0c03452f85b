import { randomUUID } from "node:crypto";
import type { Store } from "../store.js";
import { Hub } from "../hub.js";
import { streamName, type EventDraft, type StoredEvent, type StreamId } from "../types.js";
import { Committer } from "./commit.js";
import { DEFAULT_LOG_OPTIONS, type EventLogOptions, type LogContext, type Page, type PublishOptions, type Stats } from "./options.js";
import { Reader } from "./read.js";
import { subscribe } from "./subscribe.js";
import { TailCache } from "./tail.js";
import { traceDeliveries, tracePublish, tracing } from "../trace.js";

export { DEFAULT_LOG_OPTIONS, type EventLogOptions, type LogObserver, type Page, type PublishOptions, type Stats } from "./options.js";
export { withinBytes } from "./read.js";

/**
 * The ordered event log: publish (sequencing, group commit) and read/subscribe (in order, exactly
 * once) over any Store. Knows nothing of HTTP or of a particular database.
 *
 * Its parts: commit.ts (commit queue, group commit, idempotency), failed.ts (what a failed append
 * left), tail.ts (recent events kept in memory for local subscribers), read.ts (sized store reads,
 * pages, hole claims), subscribe.ts (following a stream).
 */
export class EventLog {
  readonly stats: Stats = { published: 0, commits: 0, holesSkipped: 0, subscribers: 0, storeErrors: 0 };
  readonly #ctx: LogContext;
  readonly #hub = new Hub();
  /** Streams with live subscribers here, for the store's cross-instance watcher. */
  readonly #followed = new Map<string, { id: StreamId; count: number }>();
  readonly #tails: TailCache;
  readonly #committer: Committer;
  readonly #reader: Reader;
  readonly #stopWatching: () => Promise<void>;
  /** Aborted by close(): ends every subscription. */
  readonly #closing = new AbortController();
  readonly #recheck: NodeJS.Timeout;

  constructor(store: Store, opts: Partial<EventLogOptions> = {}) {
    const o = { ...DEFAULT_LOG_OPTIONS, ...opts };
    this.#ctx = {
      store,
      opts: o,
      now: o.now ?? Date.now,
      mono: o.monotonic ?? (() => performance.now()),
      hub: this.#hub,
      stats: this.stats,
    };
    this.#tails = new TailCache(o.tailBytes, this.#ctx.now);
    this.#committer = new Committer(this.#ctx, (name, events, expireAt) => {
      if (this.#followed.has(name)) this.#tails.remember(name, events, expireAt);
    });
    this.#reader = new Reader(this.#ctx);
    this.#stopWatching = store.watchAppends(
      (name, range, events) => {
        // This process's own append, echoed by the watcher: its subscribers have it already (or
        // are woken when its store write settles).
        if (range && this.#tails.covers(name, range.from, range.to, this.#committer.storing(name))) return;
        // Another instance's, carried by the watcher: served from memory when it continues the tail.
        if (events && this.#followed.has(name)) this.#tails.carry(name, events);
        this.#hub.notify(name);
      },
      () => [...this.#followed.values()].map((f) => f.id),
    );
    // Idle subscribers look at the store now and then even without a wake-up (one timer for all;
    // one head() per stream, see subscribe.ts).
    this.#recheck = setInterval(() => this.#hub.expireAll(), o.idleRecheckMs);
    this.#recheck.unref();
  }

  get store(): Store {
    return this.#ctx.store;
  }

  /** Ends every subscription (their generators return) and stops watching the store. */
  async close(): Promise<void> {
    clearInterval(this.#recheck);
    this.#closing.abort();
    await this.#stopWatching();
  }

  /** Resolves once no publish is queued or being written. */
  idle(): Promise<void> {
    return this.#committer.idle();
  }

  /**
   * Appends the drafts to the stream, in order, as one atomic batch. Resolves with the stored
   * events once the store has them. Concurrent publishes to one stream that arrive in the same
   * tick (or while a write is in flight) share one sequence reservation and one store write.
   */
  publish(stream: StreamId, drafts: readonly EventDraft[], opts?: PublishOptions): Promise<StoredEvent[]> {
    if (!tracing.on) return this.#committer.publish(stream, drafts, opts);
    return tracePublish(streamName(stream), drafts.length, (trace) => this.#committer.publish(stream, drafts, { ...opts, trace }));
  }

  /** The last sequence handed out (0 for a stream never published to). */
  head(stream: StreamId): Promise<number> {
    return this.#ctx.store.head(stream);
  }

  /**
   * Closes the stream (end of stream): every later publish, from any API and any instance, fails
   * with StreamClosedError. Idempotent. Returns the final sequence. Followers are woken.
   */
  async closeStream(stream: StreamId): Promise<number> {
    const last = await this.#ctx.store.closeStream(stream);
    this.#hub.notify(streamName(stream));
    return last;
  }

  /**
   * Opens a closed stream again (a new Durable Streams incarnation, which the stream record holds
   * from now on: PublishOptions.incarnation). Returns the last sequence.
   */
  reopenStream(stream: StreamId, inc?: string): Promise<number> {
    return this.#ctx.store.reopenStream(stream, inc);
  }

  /** Store.setIncarnation: the stream record's incarnation becomes `inc` if it holds `holding` (null: none). */
  setIncarnation(stream: StreamId, inc: string, holding: string | null): Promise<boolean> {
    return this.#ctx.store.setIncarnation(stream, inc, holding);
  }

  /**
   * The last sequence handed out and whether the stream is closed, from one read of the stream
   * record. Never the store's head() and isClosed() side by side for this: they are two reads,
   * and a closing append that lands between them pairs the head from before it with the close,
   * so a reader at that head would be told "closed" without the final append.
   */
  async tail(stream: StreamId): Promise<{ head: number; closed: boolean }> {
    const info = await this.#ctx.store.streamInfo(stream);
    return { head: info?.head ?? 0, closed: info?.closed === true };
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
    if (count === 0) return this.#ctx.store.head(stream);
    return (await this.#ctx.store.reserve(stream, count)) - count;
  }

  /**
   * Stores copies in a range taken with reserveRange(): the draft at relative position p
   * (1..count) gets sequence base + p; positions without a draft become void placeholders.
   */
  async fill(stream: StreamId, base: number, count: number, copies: ReadonlyMap<number, EventDraft>): Promise<void> {
    if (count === 0) return;
    const { store, opts } = this.#ctx;
    const name = streamName(stream);
    const createdAt = new Date(this.#ctx.now());
    const events: StoredEvent[] = [];
    for (const [pos, d] of [...copies].sort((a, b) => a[0] - b[0])) {
      const e: StoredEvent = { id: randomUUID(), stream: name, seq: base + pos, eventType: d.eventType, data: d.data, metadata: d.metadata ?? {}, createdAt };
      if (d.bytes) e.bytes = d.bytes;
      if (d.extra) e.extra = d.extra;
      events.push(e);
    }
    try {
      for (let i = 0; i < events.length; i += opts.maxCommitEvents) await store.append(events.slice(i, i + opts.maxCommitEvents));
      if (events.length < count) await store.voidRange(stream, base + 1, base + count, createdAt, []);
    } catch (err) {
      await store.voidRange(stream, base + 1, base + count, createdAt, events.map((e) => e.id)).catch(() => undefined);
      throw err;
    } finally {
      this.#hub.notify(name);
    }
  }

  /** Deletes a stream's stored events; its sequences stay taken. Returns how many and the last sequence. */
  async purge(stream: StreamId): Promise<{ purged: number; head: number }> {
    const purged = await this.#ctx.store.purge(stream);
    this.#tails.drop(streamName(stream));
    return { purged, head: await this.#ctx.store.head(stream) };
  }

  /** One page of events after `after`, in order, applying the same ordering rules as subscribe(). */
  list(stream: StreamId, after: number, limit: number): Promise<Page> {
    return this.#reader.list(stream, streamName(stream), after, limit);
  }

  /**
   * Sequences [from, to] that were handed out but that list() cannot pass because nothing is
   * stored after them (a hole shows only before a later event): a publisher took them and has not
   * stored them yet, or died. A reader that must reach `to` (a closed stream's end, or the tail a
   * complete read was asked for) claims them as a hole between events is claimed: once this process
   * has seen them open for the hole timeout. Returns 0 when claimed (read again now), else how long
   * to wait at most before asking again.
   */
  claimTrailing(stream: StreamId, from: number, to: number): Promise<number> {
    return this.#reader.atHole(stream, streamName(stream), { from, to });
  }

  /**
   * One page of events before `before`, newest first (void and expired ones left out), ending at
   * `limit` events or responseBytes (a larger event comes alone).
   */
  listBefore(stream: StreamId, before: number, limit: number): Promise<{ events: StoredEvent[]; hasMore: boolean }> {
    return this.#reader.listBefore(stream, streamName(stream), before, limit);
  }

  /**
   * Follows a stream from `after`: yields batches of events in sequence order, each event exactly
   * once, then waits for new ones until `signal` aborts.
   */
  subscribe(stream: StreamId, after: number, signal: AbortSignal): AsyncGenerator<StoredEvent[]> {
    const parts = { reader: this.#reader, tails: this.#tails, follow: this.#follow.bind(this), closing: this.#closing.signal };
    const batches = subscribe(this.#ctx, parts, stream, streamName(stream), after, signal);
    return tracing.on ? traceDeliveries(batches) : batches;
  }

  /** Live readers of the stream on this instance (subscriptions and waiting long-polls). */
  followers(stream: StreamId): number {
    return this.#followed.get(streamName(stream))?.count ?? 0;
  }

  #follow(name: string, id: StreamId, delta: 1 | -1): void {
    this.stats.subscribers += delta;
    const f = this.#followed.get(name);
    if (delta > 0) {
      if (f) f.count++;
      else this.#followed.set(name, { id, count: 1 });
    } else if (f && --f.count === 0) {
      this.#followed.delete(name);
      this.#tails.drop(name);
    }
  }
}
