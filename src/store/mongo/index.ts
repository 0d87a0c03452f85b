import { Binary, Long, type Collection, type Db, type Filter, type IndexSpecification, type CreateIndexesOptions } from "mongodb";
import { DuplicateEventError, IncarnationMismatchError, purgeMarker, SequenceTakenError, StreamClosedError, streamName, voidEvent, type JsonObject, type JsonValue, type StoredEvent, type StreamId } from "../../core/types.js";
import type { AppendRange, ListStreamsQuery, ReserveOptions, Store, StreamInfo, StreamListing } from "../../core/store.js";
import { MongoConnection, type MongoConnectionOptions } from "./client.js";
import { isDuplicateKey, isIndexConflict, isIndexNotFound, isNotSupported, isSequenceTaken } from "./errors.js";
import { AppendWatcher } from "./watcher.js";
import { readBody, storedBody, type EventBody } from "./payload.js";

export { isDuplicateKey, isUnavailable } from "./errors.js";

export interface MongoStoreOptions extends MongoConnectionOptions {
  /** How appends made by other instances are noticed. */
  watch?: "auto" | "changestream" | "poll";
  /** Interval of the polling watcher, ms. */
  pollIntervalMs?: number;
  /** How often expired streams (and, without a TTL index, expired events) are deleted, ms; 0: never. */
  sweepIntervalMs?: number;
  warn?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The stream record: the sequence counter, and the stream's expiry and floor. */
interface CounterDoc {
  _id: string;
  seq: Long | number;
  project: string;
  kind: string;
  key: string;
  /** Set by closeStream(): reserve() matches no document then. */
  closed?: boolean;
  /** Sliding expiry of the stream (only ever moved later). */
  expire_at?: Date;
  /** Sequences up to here are gone (purged, expired). */
  floor?: Long | number;
  /** Set by the sweeper once it deleted the events of the expired stream; unset when the expiry slides. */
  swept?: true;
  /** When sequences were last taken: set by the same update that takes them (no command of its own). */
  last_append_at?: Date;
  /** The Durable Streams incarnation the stream belongs to (reopenStream(), setIncarnation()); reserve() may require it. */
  inc?: string;
}

interface EventDoc {
  _id: string;
  stream: string;
  seq: Long | number;
  event_type: string;
  /** {data, metadata, extra} as a BSON document, when BSON keeps it exactly (payload.ts); else `payload`. */
  body?: EventBody;
  /** JSON text of {data, metadata, extra}: JSON that BSON would not keep exactly, and every event stored before `body`. */
  payload?: string;
  created_at: Date;
  expire_at?: Date;
  idempotency_key?: string;
  /** `stream` + "\n" + `idempotency_key`, present only with a key: the unique sparse index's field. */
  idempotency_scope?: string;
  batch_end?: Long | number;
  void?: true;
  /** An opaque payload, byte-exact (then the body's data is null). */
  bytes?: Binary;
  /** The publisher's W3C traceparent (only while tracing is on). */
  tp?: string;
}

interface ExecutionDoc {
  _id: string;
  project: string;
}

/** What readers need of the stream record to present its events. */
interface View {
  floor: number;
  expireAt?: Date;
}

export function num(v: Long | number | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === "number" ? v : v.toNumber();
}

function toDoc(e: StoredEvent): EventDoc {
  const doc: EventDoc = {
    _id: e.id,
    stream: e.stream,
    seq: Long.fromNumber(e.seq),
    event_type: e.eventType,
    ...storedBody({ data: e.data, metadata: e.metadata, ...(e.extra ? { extra: e.extra } : {}) }),
    created_at: e.createdAt,
  };
  if (e.expireAt) doc.expire_at = e.expireAt;
  if (e.idempotencyKey !== undefined) {
    doc.idempotency_key = e.idempotencyKey;
    doc.idempotency_scope = `${e.stream}\n${e.idempotencyKey}`;
  }
  if (e.batchEnd !== undefined) doc.batch_end = Long.fromNumber(e.batchEnd);
  if (e.void) doc.void = true;
  if (e.bytes) doc.bytes = new Binary(e.bytes);
  if (e.trace) doc.tp = e.trace;
  return doc;
}

function fromDoc(d: EventDoc, view?: View): StoredEvent {
  const body = readBody(d);
  const e: StoredEvent = {
    id: d._id,
    stream: d.stream,
    seq: num(d.seq),
    eventType: d.event_type,
    data: body.data ?? null,
    metadata: body.metadata ?? {},
    createdAt: d.created_at,
  };
  if (body.extra) e.extra = body.extra;
  // An event expires with its stream unless it lives longer on its own.
  const expireAt = d.expire_at && view?.expireAt ? (d.expire_at > view.expireAt ? d.expire_at : view.expireAt) : (d.expire_at ?? (d.void ? undefined : view?.expireAt));
  if (expireAt) e.expireAt = expireAt;
  if (d.idempotency_key !== undefined) e.idempotencyKey = d.idempotency_key;
  if (d.batch_end !== undefined && d.batch_end !== null) e.batchEnd = num(d.batch_end);
  if (d.void) e.void = true;
  if (d.bytes) e.bytes = d.bytes.value();
  if (d.tp) e.trace = d.tp;
  return e;
}

interface IndexPlan {
  coll: Collection<never>;
  keys: IndexSpecification;
  options: CreateIndexesOptions & { name: string };
  /** Correctness depends on it: start-up waits for it. Others are built in the background. */
  essential: boolean;
  /** A TTL index: on a server without them, expired events are deleted by the sweeper instead. */
  ttl?: true;
  /**
   * An index of earlier versions this one replaces (same keys, other options MongoDB cannot change
   * in place: collMod does not change `sparse`). Dropped first when present; the new one has its
   * own name, so an instance that drops late can only drop the old one (several instances may
   * start at once), and creating the new one is idempotent.
   */
  replaces?: string;
}

/**
 * The production store on MongoDB.
 *
 * - `counters` (the stream records) `{_id: stream, seq: Long, expire_at?, floor?}`: one
 *   findOneAndUpdate `$inc` per publish batch hands out a range of sequences and slides the
 *   stream's expiry in the same round trip.
 * - `events`: unique `{stream, seq}` (the arbiter of every sequence: an event, a failed publish's
 *   placeholder, or a reader's claim — whichever is inserted first); unique sparse
 *   `idempotency_scope` (one key per stream); TTL on `expire_at` for events with their own expiry;
 *   `{stream, created_at, seq}` for cursorAt.
 * - `executions` `{_id: execution_id, project}`.
 *
 * Reads use majority read concern; writes the configured write concern (majority by default) with
 * a wtimeout. Every driver error that means "the database cannot be reached or cannot confirm in
 * time" becomes StoreUnavailableError; writes whose outcome is then unknown say so.
 */
export class MongoStore implements Store {
  readonly kind = "mongo";
  readonly durable = true;
  /** The client every MongoDB adapter of this process shares (client.ts): guard, deadlines, error classification. */
  readonly connection: MongoConnection;
  readonly #m: MongoConnection;
  readonly #opts: MongoStoreOptions;
  #db!: Db;
  #counters!: Collection<CounterDoc>;
  #events!: Collection<EventDoc>;
  #executions!: Collection<ExecutionDoc>;
  #ttl = true;
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;
  /** Index builds that start-up did not wait for: name → "building" | "ready" | error text. */
  readonly indexState = new Map<string, string>();

  constructor(opts: MongoStoreOptions) {
    this.#opts = opts;
    this.connection = this.#m = new MongoConnection(opts);
  }

  get db(): Db {
    return this.#db;
  }

  /** False when the server refused the TTL index (expired events are then deleted by the sweeper). */
  get hasTtlIndex(): boolean {
    return this.#ttl;
  }

  async init(): Promise<void> {
    await this.#m.connect();
    this.#db = this.#m.db;
    this.#counters = this.#db.collection<CounterDoc>("counters");
    this.#events = this.#db.collection<EventDoc>("events");
    this.#executions = this.#db.collection<ExecutionDoc>("executions");
    await this.#ensureIndexes();
    const every = this.#opts.sweepIntervalMs ?? 60_000;
    if (every > 0 && !this.#sweeper) {
      this.#sweeper = setInterval(() => void this.sweep(), every);
      this.#sweeper.unref();
    }
  }

  #indexPlans(): IndexPlan[] {
    const events = this.#events as unknown as Collection<never>;
    const counters = this.#counters as unknown as Collection<never>;
    return [
      { coll: events, keys: { stream: 1, seq: 1 }, options: { unique: true, name: "stream_seq" }, essential: true },
      // One idempotency key per stream. A unique *sparse* index on a field that exists only when the
      // event has a key: the same guarantee as a partial index on {stream, idempotency_key}, and it
      // also holds on wire-compatible servers that ignore partialFilterExpression.
      { coll: events, keys: { idempotency_scope: 1 }, options: { unique: true, sparse: true, name: "idempotency_scope" }, essential: true },
      // Sparse: only events with an expiry of their own have an entry (most expire with their stream, or never).
      { coll: events, keys: { expire_at: 1 }, options: { expireAfterSeconds: 0, sparse: true, name: "expire_at_sparse_ttl" }, essential: false, ttl: true, replaces: "expire_at_ttl" },
      { coll: events, keys: { stream: 1, created_at: 1, seq: 1 }, options: { name: "stream_created_seq" }, essential: false },
      { coll: counters, keys: { project: 1, kind: 1, key: 1 }, options: { name: "project_kind_key" }, essential: false },
      { coll: counters, keys: { expire_at: 1 }, options: { sparse: true, name: "stream_expire_at" }, essential: false },
    ];
  }

  /**
   * Creates the indexes idempotently. Start-up waits only for those correctness depends on, and
   * says so while it waits (an index build on a large existing collection takes a while; MongoDB
   * 4.2+ builds without blocking reads and writes); the others are built in the background, with
   * their state in `indexState` and the log. A conflicting index stops start-up with a one-line
   * error naming the index and the fix; a server without TTL indexes gets a warning and the sweeper.
   */
  async #ensureIndexes(): Promise<void> {
    const existing = new Set<string>();
    for (const coll of [this.#events, this.#counters]) {
      try {
        for (const ix of await coll.listIndexes().toArray()) existing.add(`${coll.collectionName}.${String(ix["name"])}`);
      } catch {
        // The collection does not exist yet: nothing to wait for.
      }
    }
    const background: Promise<void>[] = [];
    for (const plan of this.#indexPlans()) {
      const id = `${plan.coll.collectionName}.${plan.options.name}`;
      const build = this.#createIndex(plan, id, existing.has(id));
      if (plan.essential) await build;
      else background.push(build.catch(() => {}));
    }
    void Promise.all(background);
  }

  async #createIndex(plan: IndexPlan, id: string, exists: boolean): Promise<void> {
    const started = Date.now();
    let progress: NodeJS.Timeout | undefined;
    if (!exists) {
      this.indexState.set(id, "building");
      this.#opts.log?.(`building index ${id}${plan.essential ? " (start-up waits for it)" : " in the background"}`);
      progress = setInterval(() => this.#opts.log?.(`still building index ${id}`, { seconds: Math.round((Date.now() - started) / 1000) }), 10_000);
      progress.unref();
    }
    try {
      if (plan.replaces && (await this.#indexExists(plan.coll, plan.replaces))) {
        this.#opts.log?.(`replacing index ${plan.coll.collectionName}.${plan.replaces} with ${id}`);
        await plan.coll.dropIndex(plan.replaces).catch((err: unknown) => {
          if (!isIndexNotFound(err)) throw err; // another instance dropped it first
        });
      }
      await plan.coll.createIndex(plan.keys, plan.options);
      this.indexState.set(id, "ready");
      if (!exists) this.#opts.log?.(`index ${id} ready`, { seconds: Math.round((Date.now() - started) / 1000) });
    } catch (err) {
      if (plan.ttl && isNotSupported(err)) {
        this.#ttl = false;
        this.indexState.set(id, "unsupported");
        this.#warn(`this server does not support TTL indexes (${(err as Error).message.split("\n")[0]}); expired events are deleted by a periodic sweep instead`);
        return;
      }
      const msg = isIndexConflict(err)
        ? `MongoDB index ${id} exists with different options (${(err as Error).message.split("\n")[0]}); drop it (db.${plan.coll.collectionName}.dropIndex("${plan.options.name}")) or rename the conflicting index, then restart`
        : `creating MongoDB index ${id} failed: ${String((err as Error).message ?? err).split("\n")[0]}`;
      this.indexState.set(id, msg);
      if (plan.essential) throw new Error(msg, { cause: err });
      this.#warn(msg);
    } finally {
      clearInterval(progress);
    }
  }

  async #indexExists(coll: Collection<never>, name: string): Promise<boolean> {
    try {
      return (await coll.listIndexes().toArray()).some((ix) => ix["name"] === name);
    } catch {
      return false; // no collection yet
    }
  }

  #warn(msg: string, fields?: Record<string, unknown>): void {
    (this.#opts.warn ?? this.#opts.log)?.(msg, fields);
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    await this.#sweeping?.catch(() => {});
    await this.#m.close();
  }

  async ping(): Promise<void> {
    await this.#m.read(() => this.#db.command({ ping: 1 }));
  }

  /**
   * One findOneAndUpdate on the stream record: takes `count` sequences, slides the expiry, and
   * (`close`) closes the stream. Returns the record as it was before. With `refuseClosed` a closed
   * record matches nothing, so the upsert's insert collides with it (duplicate key): the stream is
   * closed. A duplicate key on the upsert of a new stream (two processes creating it at once;
   * MongoDB 4.2+ retries that itself, other wire servers do not) is retried: the second attempt
   * finds the record.
   */
  async #bump(stream: StreamId, count: number, opts: ReserveOptions & { refuseClosed: boolean }): Promise<CounterDoc | null> {
    const name = streamName(stream);
    const update: Record<string, unknown> = {
      $inc: { seq: Long.fromNumber(count) },
      $setOnInsert: { project: stream.project, kind: stream.kind, key: stream.key },
    };
    const max: Record<string, Date> = {};
    if (opts.expireAt) {
      max["expire_at"] = opts.expireAt;
      update["$unset"] = { swept: "" };
    }
    // $max: instances with skewed clocks never move the last append back.
    if (count > 0) max["last_append_at"] = new Date();
    if (Object.keys(max).length > 0) update["$max"] = max;
    if (opts.close) update["$set"] = { closed: true };
    const filter = opts.refuseClosed ? { _id: name, closed: { $ne: true } } : { _id: name };
    if (opts.inc !== undefined) {
      // The record must hold this incarnation: no upsert (a stream with one exists), and matching
      // nothing is a mismatch or a close, told apart by a read only on that rare path.
      const before = await this.#m.write(() => this.#counters.findOneAndUpdate({ ...filter, inc: opts.inc }, update, { returnDocument: "before" }));
      if (before) return before;
      const now = await this.#m.read(() => this.#counters.findOne({ _id: name }, { projection: { closed: 1, inc: 1 }, ...this.#m.readOptions }));
      if (now?.inc === opts.inc && now.closed === true) throw new StreamClosedError();
      throw new IncarnationMismatchError(now?.inc);
    }
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#m.write(() => this.#counters.findOneAndUpdate(filter, update, { upsert: true, returnDocument: "before" }));
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        if (opts.refuseClosed && (await this.isClosed(stream))) throw new StreamClosedError();
        if (attempt >= 2) throw err;
      }
    }
  }

  /** A stream whose expiry had passed before it slid again: its old events stay expired (floor). */
  async #afterSlide(stream: StreamId, before: CounterDoc | null): Promise<void> {
    if (!before?.expire_at || before.expire_at.getTime() > Date.now() || num(before.seq) <= num(before.floor)) return;
    const name = streamName(stream);
    await this.#m.write(() => this.#counters.updateOne({ _id: name }, { $max: { floor: Long.fromNumber(num(before.seq)) } }));
    // The deletion is only storage: reads already pass everything up to the floor.
    void this.#events.deleteMany({ stream: name, seq: { $lte: Long.fromNumber(num(before.seq)) }, void: { $exists: false } }).catch(() => {});
  }

  async reserve(stream: StreamId, count: number, opts?: ReserveOptions): Promise<number> {
    const before = await this.#bump(stream, count, { ...opts, refuseClosed: true });
    if (opts?.expireAt) await this.#afterSlide(stream, before);
    return num(before?.seq) + count;
  }

  async touch(stream: StreamId, expireAt: Date): Promise<void> {
    await this.#afterSlide(stream, await this.#bump(stream, 0, { expireAt, refuseClosed: false }));
  }

  async closeStream(stream: StreamId): Promise<number> {
    return this.#setClosed(stream, true);
  }

  async reopenStream(stream: StreamId, inc?: string): Promise<number> {
    return this.#setClosed(stream, false, inc);
  }

  async setIncarnation(stream: StreamId, inc: string, holding: string | null): Promise<boolean> {
    const r = await this.#m.write(() => this.#counters.updateOne({ _id: streamName(stream), inc: holding === null ? { $exists: false } : holding }, { $set: { inc } }));
    return r.modifiedCount > 0;
  }

  async #setClosed(stream: StreamId, closed: boolean, inc?: string): Promise<number> {
    const doc = await this.#m.write(() =>
      this.#counters.findOneAndUpdate(
        { _id: streamName(stream) },
        { $set: { closed, ...(inc !== undefined ? { inc } : {}) }, $setOnInsert: { seq: Long.fromNumber(0), project: stream.project, kind: stream.kind, key: stream.key } },
        { upsert: true, returnDocument: "after" },
      ),
    );
    return doc ? num(doc.seq) : 0;
  }

  async isClosed(stream: StreamId): Promise<boolean> {
    const doc = await this.#m.read(() => this.#counters.findOne({ _id: streamName(stream) }, { projection: { closed: 1 }, ...this.#m.readOptions }));
    return doc?.closed === true;
  }

  async head(stream: StreamId): Promise<number> {
    const doc = await this.#m.read(() => this.#counters.findOne({ _id: streamName(stream) }, { projection: { seq: 1 }, ...this.#m.readOptions }));
    return num(doc?.seq);
  }

  async streamInfo(stream: StreamId): Promise<StreamInfo | undefined> {
    const doc = await this.#m.read(() => this.#counters.findOne({ _id: streamName(stream) }, { ...this.#m.readOptions }));
    if (!doc) return undefined;
    return { head: num(doc.seq), floor: num(doc.floor), ...(doc.expire_at ? { expireAt: doc.expire_at } : {}), closed: doc.closed === true };
  }

  async #view(name: string): Promise<View> {
    const doc = await this.#counters.findOne({ _id: name }, { projection: { floor: 1, expire_at: 1 }, ...this.#m.readOptions });
    return { floor: num(doc?.floor), ...(doc?.expire_at ? { expireAt: doc.expire_at } : {}) };
  }

  async append(events: readonly StoredEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      // Ordered: a failure stops it, so what is stored of a failed call is a prefix.
      await this.#m.write(() => this.#events.insertMany(events.map(toDoc), { ordered: true }));
    } catch (err) {
      if (isSequenceTaken(err)) throw new SequenceTakenError("a sequence of this publish was claimed by a reader (the publish took too long)", { cause: err });
      if (isDuplicateKey(err)) throw new DuplicateEventError("an event id or idempotency key of the stream is taken", { cause: err });
      throw err;
    }
  }

  async findByIdempotencyKey(stream: StreamId, key: string): Promise<StoredEvent | undefined> {
    const d = await this.#m.read(() => this.#events.findOne({ idempotency_scope: `${streamName(stream)}\n${key}` }, { ...this.#m.readOptions }));
    return d ? fromDoc(d) : undefined;
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    return this.#m.read(async () => {
      const d = await this.#events.findOne({ _id: id, void: { $exists: false } }, { ...this.#m.readOptions });
      if (!d) return undefined;
      const view = await this.#view(d.stream);
      return num(d.seq) <= view.floor ? undefined : fromDoc(d, view);
    });
  }

  async voidRange(stream: StreamId, from: number, to: number, at: Date, ids: readonly string[]): Promise<number> {
    const name = streamName(stream);
    return this.#m.write(async () => {
      // The publisher's own events of the range are removed (freeing their ids and idempotency
      // keys, so a retried publish can be written again), then every free sequence of the range
      // gets a placeholder; a sequence holding another event (or a placeholder) keeps it.
      if (ids.length > 0) await this.#events.deleteMany({ stream: name, seq: { $gte: Long.fromNumber(from), $lte: Long.fromNumber(to) }, _id: { $in: [...ids] } });
      const { floor } = await this.#view(name);
      const placeholders: EventDoc[] = [];
      for (let seq = Math.max(from, floor + 1); seq <= to; seq++) placeholders.push(toDoc(voidEvent(name, seq, at)));
      if (placeholders.length === 0) return 0;
      try {
        return (await this.#events.insertMany(placeholders, { ordered: false })).insertedCount;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        // Unordered: every placeholder was either inserted or is one of the (duplicate-key) write errors.
        const failed = (err as { writeErrors?: unknown[] }).writeErrors;
        return placeholders.length - (Array.isArray(failed) ? failed.length : 1);
      }
    });
  }

  async read(stream: StreamId, after: number, limit: number): Promise<StoredEvent[]> {
    const name = streamName(stream);
    return this.#m.read(async () => {
      // The stream record is read after the events: a sweep sets the floor before it deletes, so a
      // deletion this read saw is always covered by the floor it reads next.
      const docs = await this.#events.find({ stream: name, seq: { $gt: Long.fromNumber(after) } }, { ...this.#m.readOptions }).sort({ seq: 1 }).limit(limit).toArray();
      const view = await this.#view(name);
      const out: StoredEvent[] = [];
      if (after < view.floor) out.push(purgeMarker(name, view.floor));
      for (const d of docs) if (num(d.seq) > view.floor) out.push(fromDoc(d, view));
      return out;
    });
  }

  async readBefore(stream: StreamId, before: number, limit: number): Promise<StoredEvent[]> {
    const name = streamName(stream);
    return this.#m.read(async () => {
      const docs = await this.#events.find({ stream: name, seq: { $lt: Long.fromNumber(before) } }, { ...this.#m.readOptions }).sort({ seq: -1 }).limit(limit).toArray();
      const view = await this.#view(name);
      return docs.filter((d) => num(d.seq) > view.floor).map((d) => fromDoc(d, view));
    });
  }

  async cursorAt(stream: StreamId, at: Date): Promise<number> {
    // Served by the {stream, created_at, seq} index (walked backwards): no in-memory sort.
    const doc = await this.#m.read(() =>
      this.#events.findOne({ stream: streamName(stream), created_at: { $lte: at } }, { sort: { created_at: -1, seq: -1 }, projection: { seq: 1 }, ...this.#m.readOptions }),
    );
    return num(doc?.seq);
  }

  async listStreams(project: string, q: ListStreamsQuery): Promise<StreamListing[]> {
    // Served by the {project, kind, key} index: the kind filter and the page start are in the query.
    const filter: Filter<CounterDoc> = { project };
    if (q.kind !== undefined) filter.kind = q.kind;
    if (q.after) {
      if (q.kind === undefined) filter.$or = [{ kind: { $gt: q.after.kind } }, { kind: q.after.kind, key: { $gt: q.after.key } }];
      else if (q.kind === q.after.kind) filter.key = { $gt: q.after.key };
      else if (q.kind < q.after.kind) return [];
    }
    return this.#m.read(async () => {
      const counters = await this.#counters.find(filter, { ...this.#m.readOptions }).sort({ kind: 1, key: 1 }).limit(q.limit).toArray();
      if (counters.length === 0) return [];
      // One aggregation for all of them (served by the {stream, seq} index), not one count per stream.
      const counts = new Map<string, number>();
      const groups = await this.#events
        .aggregate<{ _id: string; n: number }>([{ $match: { stream: { $in: counters.map((c) => c._id) }, void: { $exists: false } } }, { $group: { _id: "$stream", n: { $sum: 1 } } }], { ...this.#m.readOptions })
        .toArray();
      for (const g of groups) counts.set(g._id, g.n);
      const now = Date.now();
      return counters.map((c) => ({
        stream: { project: c.project, kind: c.kind as StreamId["kind"], key: c.key },
        head: num(c.seq),
        events: c.expire_at && c.expire_at.getTime() <= now ? 0 : (counts.get(c._id) ?? 0),
        ...(c.last_append_at ? { lastAppendAt: c.last_append_at } : {}),
      }));
    });
  }

  /**
   * Deletes the stream's events; its sequences stay taken. Sequences that are taken but not stored
   * are claimed first (so a publisher still holding one cannot store it below the floor and be
   * acked), then the floor moves to the head (readers pass everything up to it at once) and the
   * events under it are deleted.
   */
  async purge(stream: StreamId): Promise<number> {
    const name = streamName(stream);
    const info = await this.streamInfo(stream);
    if (!info || info.head <= info.floor) return 0;
    const head = info.head;
    const stored = await this.#m.read(() =>
      this.#events.find({ stream: name, seq: { $gt: Long.fromNumber(info.floor), $lte: Long.fromNumber(head) } }, { projection: { seq: 1 } }).sort({ seq: 1 }).toArray(),
    );
    let expected = info.floor + 1;
    for (const d of [...stored, { seq: head + 1 }]) {
      const seq = num(d.seq);
      if (seq > expected) await this.voidRange(stream, expected, seq - 1, new Date(), []);
      expected = seq + 1;
    }
    return this.#m.write(async () => {
      await this.#counters.updateOne({ _id: name }, { $max: { floor: Long.fromNumber(head) } });
      const r = await this.#events.deleteMany({ stream: name, seq: { $lte: Long.fromNumber(head) }, void: { $exists: false } });
      return r.deletedCount;
    });
  }

  /**
   * Deletes the events of expired streams (and, on a server without TTL indexes, events past their
   * own expire_at). Safe on every instance at once: a stream is swept only if its record is still
   * the one that was found expired (an update conditional on seq and expire_at), and the floor is
   * set before anything is deleted.
   */
  sweep(): Promise<void> {
    this.#sweeping ??= (async () => {
      try {
        const now = new Date();
        const expired = await this.#counters.find({ expire_at: { $lte: now }, swept: { $exists: false } }, { ...this.#m.readOptions }).limit(1000).toArray();
        for (const c of expired) {
          const r = await this.#counters.updateOne({ _id: c._id, seq: c.seq, expire_at: c.expire_at }, { $max: { floor: Long.fromNumber(num(c.seq)) }, $set: { swept: true } });
          if (r.matchedCount === 1) await this.#events.deleteMany({ stream: c._id, seq: { $lte: Long.fromNumber(num(c.seq)) }, void: { $exists: false } });
        }
        if (!this.#ttl) await this.#events.deleteMany({ expire_at: { $lte: now } });
      } catch (err) {
        this.#opts.log?.("expiry sweep failed", { err: String(err) });
      }
    })().finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async bindExecution(executionId: string, project: string): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      try {
        const doc = await this.#m.write(() => this.#executions.findOneAndUpdate({ _id: executionId }, { $setOnInsert: { project } }, { upsert: true, returnDocument: "after" }));
        return doc?.project ?? project;
      } catch (err) {
        if (attempt < 2 && isDuplicateKey(err)) continue; // two first bindings at once: read the winner
        throw err;
      }
    }
  }

  async executionProject(executionId: string): Promise<string | undefined> {
    const doc = await this.#m.read(() => this.#executions.findOne({ _id: executionId }, { ...this.#m.readOptions }));
    return doc?.project;
  }

  watchAppends(onAppend: (stream: string, range?: AppendRange, events?: StoredEvent[]) => void, interest: () => Iterable<StreamId>): () => Promise<void> {
    const watcher = new AppendWatcher(
      this.#db,
      this.#events as unknown as Collection<{ stream: string }>,
      this.#counters as unknown as Collection<{ _id: string; seq: unknown }>,
      {
        watch: this.#opts.watch ?? "auto",
        pollIntervalMs: this.#opts.pollIntervalMs ?? 100,
        ...(this.#opts.log ? { log: this.#opts.log } : {}),
        warn: (m, f) => this.#warn(m, f),
        unavailable: () => this.#m.noteUnavailable(false),
        // Inserts carried by the change stream, decoded as reads decode them (without the stream record).
        decode: (doc) => fromDoc(doc as unknown as EventDoc),
      },
      onAppend,
      interest,
    );
    watcher.start();
    return () => watcher.stop();
  }
}

