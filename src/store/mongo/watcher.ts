import { Long, MongoServerError, type ChangeStream, type Collection, type Db, type Document, type ResumeToken } from "mongodb";
import type { AppendRange } from "../../core/store.js";
import { streamName, type StoredEvent, type StreamId } from "../../core/types.js";

/** A sequence as stored (Long or number); undefined when absent. */
function seqOf(v: unknown): number | undefined {
  if (v instanceof Long) return v.toNumber();
  return typeof v === "number" ? v : undefined;
}

export interface WatcherOptions {
  /** "auto": a change stream where the deployment has one (replica set, sharded), else polling. */
  watch: "auto" | "changestream" | "poll";
  pollIntervalMs: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  warn?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Told when the change stream fails for want of the server (feeds the store's reconnect watchdog). */
  unavailable?: () => void;
  /** Decodes an inserted event document: the change stream then carries the events to the log. */
  decode?: (doc: Document) => StoredEvent;
}

/** Most streams named in the change stream's filter (above it, every insert is watched) or in one poll query (above it, the poll reads counters only). */
const MAX_FILTERED_STREAMS = 1000;
/** Most events one poll returns (one batch, never a getMore). */
const POLL_MAX_EVENTS = 256;
/** How often the followed set is compared with the one the change stream filters on while changes keep coming. */
const INTEREST_CHECK_MS = 200;
/**
 * How long the server holds an idle change stream's getMore open for a change: an idle instance
 * pays one getMore per second, and a stream newly followed joins the filter within that (its
 * subscribers read the store by themselves meanwhile).
 */
export const CHANGE_AWAIT_MS = 1000;
/** Poll mode: after this long without a followed stream's counter moving, poll at IDLE_POLL_MS. */
export const POLL_QUIET_MS = 10_000;
/** Poll mode, idle: the interval that bounds cross-instance delivery after a quiet spell. */
export const IDLE_POLL_MS = 1000;

/** Codes meaning "this server has no change streams" (standalone, some wire-compatible servers). */
const NO_CHANGE_STREAMS = new Set([40573, 40324, 115, 238, 303]);
/** The resume token is no longer usable: start afresh (and wake every followed stream). */
const TOKEN_LOST = new Set([260, 280, 286]);

/**
 * Tells this instance about appends other instances made to the streams its subscribers follow.
 *
 * Change stream mode: one change stream on `events`, filtered in the pipeline to inserts of the
 * followed streams (so an instance does not receive every insert of every stream). When the
 * followed set changes the stream is reopened from its resume token (nothing in between is lost);
 * when it closes or errs (failover, invalidate, network) it is reopened, from the token where the
 * server still has it, else afresh. Each time the cursor is (re)opened — not before: the driver
 * opens it lazily — every followed stream is woken, so anything appended while it was not open is
 * read by the subscribers themselves.
 *
 * Each report names the sequences it is about (the insert's; how far a counter moved), so the log
 * can tell its own appends, which it has delivered already, from other instances'. The change
 * stream also carries the inserted event, so the log can serve it without a read.
 *
 * Poll mode: every `pollIntervalMs`, one query for the events appended to the followed streams
 * since the last poll (see #pollOnce), carried to the log like the change stream's inserts; after
 * POLL_QUIET_MS without a move, every IDLE_POLL_MS until one moves again.
 */
export class AppendWatcher {
  #stopped = false;
  #stream: ChangeStream | undefined;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  readonly #seen = new Map<string, number>();
  #token: ResumeToken | undefined;
  #running: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly events: Collection<{ stream: string }>,
    private readonly counters: Collection<{ _id: string; seq: unknown }>,
    private readonly opts: WatcherOptions,
    private readonly onAppend: (stream: string, range?: AppendRange, events?: StoredEvent[]) => void,
    private readonly interest: () => Iterable<StreamId>,
  ) {}

  start(): void {
    this.#running = (async () => {
      const mode = this.opts.watch;
      if (mode === "changestream" || (mode === "auto" && (await this.#hasChangeStreams()))) {
        this.opts.log?.("watching appends with a change stream");
        const ok = await this.#watchChanges();
        if (ok || this.#stopped) return;
      }
      this.opts.log?.("watching appends by polling", { intervalMs: this.opts.pollIntervalMs });
      this.#poll();
    })();
  }

  async #hasChangeStreams(): Promise<boolean> {
    try {
      const hello = await this.db.command({ hello: 1 });
      return typeof hello["setName"] === "string" || hello["msg"] === "isdbgrid";
    } catch {
      return false;
    }
  }

  #names(): string[] {
    return [...new Set([...this.interest()].map(streamName))].sort();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#timer = setTimeout(resolve, ms);
      this.#wake = resolve;
    });
  }

  /** Runs the change stream until stopped. Returns false when the server has none (fall back to polling). */
  async #watchChanges(): Promise<boolean> {
    let backoff = 0;
    while (!this.#stopped) {
      const names = this.#names();
      if (names.length === 0) {
        await this.#sleep(INTEREST_CHECK_MS);
        continue;
      }
      const key = names.join("\n");
      const followed = new Set(names);
      const match: Document = { operationType: { $in: ["insert", "invalidate"] } };
      if (names.length <= MAX_FILTERED_STREAMS) match["$or"] = [{ operationType: "invalidate" }, { "fullDocument.stream": { $in: names } }];
      const project = this.opts.decode ? { operationType: 1, fullDocument: 1 } : { operationType: 1, "fullDocument.stream": 1, "fullDocument.seq": 1 };
      const cs = this.events.watch([{ $match: match }, { $project: project }], {
        ...(this.#token ? { startAfter: this.#token } : {}),
        maxAwaitTimeMS: CHANGE_AWAIT_MS,
      });
      this.#stream = cs;
      let opened = false;
      let checked = Date.now();
      try {
        for (;;) {
          if (this.#stopped) break;
          const change = (await cs.tryNext()) as { operationType?: string; fullDocument?: Document & { stream?: string; seq?: unknown } } | null;
          if (!opened) {
            opened = true;
            backoff = 0;
            // The cursor is open now: whatever was appended before it is read by the subscribers.
            for (const n of names) this.onAppend(n);
          }
          if (cs.resumeToken) this.#token = cs.resumeToken;
          if (change?.operationType === "invalidate") {
            this.opts.warn?.("change stream invalidated (events collection dropped or renamed); reopening");
            break;
          }
          const doc = change?.fullDocument;
          if (doc?.stream) {
            const seq = seqOf(doc.seq);
            this.onAppend(doc.stream, seq === undefined ? undefined : { from: seq, to: seq }, followed.has(doc.stream) ? this.#carried(doc) : undefined);
          }
          // The followed set changed: reopen from the token with the new filter (looked at when
          // idle, and at least every INTEREST_CHECK_MS while changes keep coming).
          if (!change || Date.now() - checked >= INTEREST_CHECK_MS) {
            checked = Date.now();
            if (this.#names().join("\n") !== key) break;
          }
        }
      } catch (err) {
        if (this.#stopped) break;
        if (err instanceof MongoServerError && NO_CHANGE_STREAMS.has(Number(err.code))) {
          this.opts.warn?.("this server has no change streams; falling back to polling (set WATCH_MODE=poll to skip the attempt)", { err: err.message });
          await cs.close().catch(() => {});
          return false;
        }
        if (err instanceof MongoServerError && TOKEN_LOST.has(Number(err.code))) this.#token = undefined;
        else this.opts.unavailable?.();
        backoff = Math.min(backoff === 0 ? 100 : backoff * 2, 2000);
        this.opts.log?.(`change stream closed; reopening: ${String(err)}`, { err: String(err), inMs: backoff });
      } finally {
        await cs.close().catch(() => {});
        this.#stream = undefined;
      }
      if (backoff > 0) await this.#sleep(backoff);
    }
    return true;
  }

  /** The inserted event, decoded; undefined when it cannot be (then the log reads the store). */
  #carried(doc: Document): StoredEvent[] | undefined {
    if (!this.opts.decode) return undefined;
    try {
      return [this.opts.decode(doc)];
    } catch {
      return undefined;
    }
  }

  #poll(): void {
    if (this.#stopped) return;
    let moved = Date.now();
    const tick = async (): Promise<void> => {
      const names = this.#names();
      try {
        if (names.length > 0 && (await this.#pollOnce(names))) moved = Date.now();
      } catch (err) {
        this.opts.log?.("append poll failed", { err: String(err) });
      }
      if (!this.#stopped) this.#timer = setTimeout(() => void tick(), next());
    };
    const next = (): number => (Date.now() - moved >= POLL_QUIET_MS ? Math.max(IDLE_POLL_MS, this.opts.pollIntervalMs) : this.opts.pollIntervalMs);
    this.#timer = setTimeout(() => void tick(), this.opts.pollIntervalMs);
  }

  /**
   * One poll; returns whether any followed stream moved. Streams followed since the last poll get
   * their head from the counters (one command, only when the followed set grew); after that one
   * `find` on events is the whole poll: it returns the events appended after what was last seen,
   * which go to the log as the change stream's inserts do, so a subscriber on this instance reads
   * nothing more. A poll is one batch (`singleBatch`: at most POLL_MAX_EVENTS events and 16 MiB,
   * never a getMore); what did not fit comes with the next poll.
   */
  async #pollOnce(names: string[]): Promise<boolean> {
    let moved = false;
    for (const n of [...this.#seen.keys()]) if (!names.includes(n)) this.#seen.delete(n);
    const fresh = names.filter((n) => !this.#seen.has(n));
    if (fresh.length > 0) {
      const docs = await this.counters.find({ _id: { $in: fresh } }, { projection: { seq: 1 } }).toArray();
      const heads = new Map(docs.map((d) => [d._id, seqOf(d.seq) ?? 0]));
      for (const n of fresh) {
        this.#seen.set(n, heads.get(n) ?? 0);
        // Newly followed: its subscribers read from their own position.
        this.onAppend(n);
      }
    }
    const known = names.filter((n) => !fresh.includes(n));
    if (known.length === 0) return moved;
    if (!this.opts.decode || known.length > MAX_FILTERED_STREAMS) return this.#pollCounters(known);
    const docs = await this.events
      .find({ $or: known.map((n) => ({ stream: n, seq: { $gt: Long.fromNumber(this.#seen.get(n)!) } })) }, { sort: { stream: 1, seq: 1 }, limit: POLL_MAX_EVENTS, singleBatch: true, batchSize: POLL_MAX_EVENTS })
      .toArray();
    const byStream = new Map<string, Document[]>();
    for (const d of docs as Document[]) {
      const list = byStream.get(d["stream"] as string);
      if (list) list.push(d);
      else byStream.set(d["stream"] as string, [d]);
    }
    // A full batch may have left other streams out (the sort takes one stream's events first):
    // wake those, their subscribers read by themselves, so one busy stream never starves another.
    if (docs.length >= POLL_MAX_EVENTS) for (const n of known) if (!byStream.has(n)) this.onAppend(n);
    for (const [n, list] of byStream) {
      moved = true;
      const seen = this.#seen.get(n)!;
      const first = seqOf(list[0]!["seq"]) ?? 0;
      const last = seqOf(list[list.length - 1]!["seq"]) ?? 0;
      this.#seen.set(n, Math.max(seen, last));
      // Carried only when they continue what was seen without a gap; past a gap (a publisher
      // still writing an earlier sequence) the subscribers read and wait at the hole themselves,
      // as they do when a change stream reports an insert out of order.
      const contiguous = first === seen + 1 && last - first + 1 === list.length;
      this.onAppend(n, { from: first, to: last }, contiguous ? this.#decodeAll(list) : undefined);
    }
    return moved;
  }

  /** The poll for followed sets too large for one query: counters only; subscribers read what moved. */
  async #pollCounters(names: string[]): Promise<boolean> {
    let moved = false;
    const docs = await this.counters.find({ _id: { $in: names } }, { projection: { seq: 1 } }).toArray();
    for (const d of docs) {
      const seq = seqOf(d.seq) ?? 0;
      const before = this.#seen.get(d._id) ?? 0;
      if (seq > before) {
        this.#seen.set(d._id, seq);
        moved = true;
        this.onAppend(d._id, { from: before + 1, to: seq });
      }
    }
    return moved;
  }

  #decodeAll(docs: Document[]): StoredEvent[] | undefined {
    if (!this.opts.decode) return undefined;
    try {
      return docs.map((d) => this.opts.decode!(d));
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#wake?.();
    await this.#stream?.close().catch(() => {});
    await this.#running?.catch(() => {});
  }
}
