import { Binary, Long, MongoClient, MongoServerError, type Collection, type Db, type WriteConcernSettings, type ChangeStream } from "mongodb";
import { DuplicateEventError, StreamClosedError, purgeMarker, streamName, StoreUnavailableError, voidEvent, type JsonObject, type JsonValue, type StoredEvent, type StreamId } from "../../core/types.js";
import type { Store } from "../../core/store.js";

export interface MongoStoreOptions {
  uri: string;
  /** Database name; defaults to the one in the URI, else "agent_events". */
  dbName?: string;
  /** Write concern for every write; default `majority`. */
  writeConcern?: WriteConcernSettings;
  /** How appends made by other instances are noticed. */
  watch?: "auto" | "changestream" | "poll";
  /** Interval of the polling watcher, ms. */
  pollIntervalMs?: number;
  /** How long an operation may wait for a server before failing (fail fast while it is down). */
  serverSelectionTimeoutMs?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

interface CounterDoc {
  _id: string;
  seq: Long | number;
  project: string;
  kind: string;
  key: string;
  /** Set by closeStream(): reserve() matches no document then. */
  closed?: boolean;
}

interface EventDoc {
  _id: string;
  stream: string;
  seq: Long | number;
  event_type: string;
  /** JSON text of {data, metadata, extra}: payloads are kept byte-for-byte as JSON, free of BSON's key and depth rules. */
  payload: string;
  created_at: Date;
  expire_at?: Date;
  idempotency_key?: string;
  /** `stream` + "\n" + `idempotency_key`, present only with a key: the unique sparse index's field. */
  idempotency_scope?: string;
  batch_end?: Long | number;
  void?: true;
  /** An opaque payload, byte-exact (then `payload` holds data: null). */
  bytes?: Binary;
}

interface ExecutionDoc {
  _id: string;
  project: string;
}

const DUPLICATE_KEY = 11000;
/** See MongoStore.#noteUnavailable. */
const RECONNECT_AFTER_MS = 5000;

export function num(v: Long | number): number {
  return typeof v === "number" ? v : v.toNumber();
}

function toDoc(e: StoredEvent): EventDoc {
  const doc: EventDoc = {
    _id: e.id,
    stream: e.stream,
    seq: Long.fromNumber(e.seq),
    event_type: e.eventType,
    payload: JSON.stringify({ data: e.data, metadata: e.metadata, extra: e.extra }),
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
  return doc;
}

function fromDoc(d: EventDoc): StoredEvent {
  const body = JSON.parse(d.payload) as { data: JsonValue; metadata?: JsonObject; extra?: JsonObject };
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
  if (d.expire_at) e.expireAt = d.expire_at;
  if (d.idempotency_key !== undefined) e.idempotencyKey = d.idempotency_key;
  if (d.batch_end !== undefined && d.batch_end !== null) e.batchEnd = num(d.batch_end);
  if (d.void) e.void = true;
  if (d.bytes) e.bytes = d.bytes.value();
  return e;
}

/**
 * The production store on MongoDB.
 *
 * - `counters` `{_id: stream, seq: Long}`: one findOneAndUpdate `$inc` per publish batch hands out
 *   a range of sequences.
 * - `events`: unique `{stream, seq}`; TTL index on `expire_at` (expireAfterSeconds 0: each event
 *   carries its own expiry); unique sparse `idempotency_scope` (one key per stream).
 * - `executions` `{_id: execution_id, project}`.
 *
 * Every driver error that means "the database cannot be reached" becomes StoreUnavailableError.
 */
export class MongoStore implements Store {
  readonly kind = "mongo";
  readonly durable = true;
  readonly #client: MongoClient;
  readonly #opts: MongoStoreOptions;
  #db!: Db;
  #counters!: Collection<CounterDoc>;
  #events!: Collection<EventDoc>;
  #executions!: Collection<ExecutionDoc>;
  #unavailableSince = 0;
  #reconnecting: Promise<void> | undefined;

  constructor(opts: MongoStoreOptions) {
    this.#opts = opts;
    this.#client = new MongoClient(opts.uri, {
      serverSelectionTimeoutMS: opts.serverSelectionTimeoutMs ?? 5000,
      // Notice a server that went away (or came back) within a couple of seconds, not the default 10.
      heartbeatFrequencyMS: 2000,
      writeConcern: opts.writeConcern ?? { w: "majority" },
    });
  }

  get db(): Db {
    return this.#db;
  }

  async init(): Promise<void> {
    await this.#client.connect();
    this.#db = this.#client.db(this.#opts.dbName);
    this.#counters = this.#db.collection<CounterDoc>("counters");
    this.#events = this.#db.collection<EventDoc>("events");
    this.#executions = this.#db.collection<ExecutionDoc>("executions");
    await this.#events.createIndex({ stream: 1, seq: 1 }, { unique: true, name: "stream_seq" });
    await this.#events.createIndex({ expire_at: 1 }, { expireAfterSeconds: 0, name: "expire_at_ttl" });
    // One idempotency key per stream. A unique *sparse* index on a field that exists only when the
    // event has a key: the same guarantee as a partial index on {stream, idempotency_key}, and it
    // also holds on wire-compatible servers that ignore partialFilterExpression.
    await this.#events.createIndex({ idempotency_scope: 1 }, { unique: true, sparse: true, name: "idempotency_scope" });
    await this.#events.createIndex({ stream: 1, created_at: 1 }, { name: "stream_created_at" });
    await this.#counters.createIndex({ kind: 1, key: 1 }, { name: "kind_key" });
  }

  async close(): Promise<void> {
    await this.#client.close();
  }

  async ping(): Promise<void> {
    await this.#guard(() => this.#db.command({ ping: 1 }));
  }

  async #guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      const result = await op();
      this.#unavailableSince = 0;
      return result;
    } catch (err) {
      if (!isUnavailable(err)) throw err;
      this.#noteUnavailable();
      throw new StoreUnavailableError("database unavailable", { cause: err });
    }
  }

  /**
   * Reconnect watchdog. After a network outage the driver's server monitor can stay stuck on a dead
   * connection although the server is back (seen here: a fresh client connected at once while the
   * service's client kept failing). When operations have failed as "unavailable" for longer than
   * RECONNECT_AFTER_MS, the client is closed and connected again; collections keep working.
   */
  #noteUnavailable(): void {
    const now = Date.now();
    if (this.#unavailableSince === 0) {
      this.#unavailableSince = now;
      return;
    }
    if (this.#reconnecting || now - this.#unavailableSince < RECONNECT_AFTER_MS) return;
    this.#reconnecting = (async () => {
      this.#opts.log?.("MongoDB unreachable for a while: reconnecting the client");
      try {
        await this.#client.close(true);
        await this.#client.connect();
        this.#unavailableSince = 0;
      } catch (err) {
        this.#unavailableSince = Date.now(); // still down: try again after another interval
        this.#opts.log?.("reconnect failed", { err: String(err) });
      } finally {
        this.#reconnecting = undefined;
      }
    })();
  }

  async reserve(stream: StreamId, count: number, close?: boolean): Promise<number> {
    // A closed counter matches nothing; the upsert's insert then collides with it (duplicate key).
    const doc = await this.#guard(() =>
      this.#counters.findOneAndUpdate(
        { _id: streamName(stream), closed: { $ne: true } },
        { $inc: { seq: Long.fromNumber(count) }, $setOnInsert: { project: stream.project, kind: stream.kind, key: stream.key }, ...(close ? { $set: { closed: true } } : {}) },
        { upsert: true, returnDocument: "after" },
      ),
    ).catch((err: unknown) => {
      throw isDuplicateKey(err) ? new StreamClosedError() : err;
    });
    if (!doc) throw new Error("counter update returned no document");
    return num(doc.seq);
  }

  async closeStream(stream: StreamId): Promise<number> {
    return this.#setClosed(stream, true);
  }

  async reopenStream(stream: StreamId): Promise<number> {
    return this.#setClosed(stream, false);
  }

  async #setClosed(stream: StreamId, closed: boolean): Promise<number> {
    const doc = await this.#guard(() =>
      this.#counters.findOneAndUpdate(
        { _id: streamName(stream) },
        { $set: { closed }, $setOnInsert: { seq: Long.fromNumber(0), project: stream.project, kind: stream.kind, key: stream.key } },
        { upsert: true, returnDocument: "after" },
      ),
    );
    return doc ? num(doc.seq) : 0;
  }

  async isClosed(stream: StreamId): Promise<boolean> {
    const doc = await this.#guard(() => this.#counters.findOne({ _id: streamName(stream) }, { projection: { closed: 1 } }));
    return doc?.closed === true;
  }

  async head(stream: StreamId): Promise<number> {
    const doc = await this.#guard(() => this.#counters.findOne({ _id: streamName(stream) }, { projection: { seq: 1 } }));
    return doc ? num(doc.seq) : 0;
  }

  async append(events: readonly StoredEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.#guard(() => this.#events.insertMany(events.map(toDoc), { ordered: true }));
    } catch (err) {
      throw isDuplicateKey(err) ? new DuplicateEventError("an event id or idempotency key of the stream is taken", { cause: err }) : err;
    }
  }

  async findByIdempotencyKey(stream: StreamId, key: string): Promise<StoredEvent | undefined> {
    const d = await this.#guard(() => this.#events.findOne({ idempotency_scope: `${streamName(stream)}\n${key}` }));
    return d ? fromDoc(d) : undefined;
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    const d = await this.#guard(() => this.#events.findOne({ _id: id, void: { $exists: false } }));
    return d ? fromDoc(d) : undefined;
  }

  async voidRange(stream: StreamId, from: number, to: number, at: Date, ids: readonly string[]): Promise<void> {
    const name = streamName(stream);
    await this.#guard(async () => {
      // The publisher's own events of the range are removed (freeing their ids and idempotency
      // keys, as the memory store does, so a retried publish can be written again), then every
      // free sequence of the range gets a placeholder.
      await this.#events.deleteMany({ stream: name, seq: { $gte: Long.fromNumber(from), $lte: Long.fromNumber(to) }, _id: { $in: [...ids] } });
      const placeholders: EventDoc[] = [];
      for (let seq = from; seq <= to; seq++) {
        placeholders.push(toDoc(voidEvent(name, seq, at)));
      }
      try {
        await this.#events.insertMany(placeholders, { ordered: false });
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
    });
  }

  async read(stream: StreamId, after: number, limit: number): Promise<StoredEvent[]> {
    const docs = await this.#guard(() =>
      this.#events
        .find({ stream: streamName(stream), seq: { $gt: Long.fromNumber(after) } })
        .sort({ seq: 1 })
        .limit(limit)
        .toArray(),
    );
    return docs.map(fromDoc);
  }

  async readBefore(stream: StreamId, before: number, limit: number): Promise<StoredEvent[]> {
    const docs = await this.#guard(() =>
      this.#events
        .find({ stream: streamName(stream), seq: { $lt: Long.fromNumber(before) } })
        .sort({ seq: -1 })
        .limit(limit)
        .toArray(),
    );
    return docs.map(fromDoc);
  }

  async cursorAt(stream: StreamId, at: Date): Promise<number> {
    const doc = await this.#guard(() =>
      this.#events.findOne({ stream: streamName(stream), created_at: { $lte: at } }, { sort: { created_at: -1, seq: -1 }, projection: { seq: 1 } }),
    );
    return doc ? num(doc.seq) : 0;
  }

  async listStreams(project: string, limit: number): Promise<{ stream: StreamId; head: number; events: number }[]> {
    return this.#guard(async () => {
      const counters = await this.#counters.find({ project }).sort({ kind: 1, key: 1 }).limit(limit).toArray();
      return Promise.all(
        counters.map(async (c) => ({
          stream: { project: c.project, kind: c.kind as StreamId["kind"], key: c.key },
          head: num(c.seq),
          events: await this.#events.countDocuments({ stream: c._id, void: { $exists: false } }),
        })),
      );
    });
  }

  async purge(stream: StreamId): Promise<number> {
    const name = streamName(stream);
    const head = Long.fromNumber(await this.head(stream));
    return this.#guard(async () => {
      const before = await this.#events.deleteMany({ stream: name, seq: { $lt: head } });
      // The last event becomes the purge marker (a sequence still waiting for its insert is left alone).
      const last = await this.#events.deleteOne({ stream: name, seq: head, created_at: { $ne: new Date(0) } });
      if (last.deletedCount === 0) return before.deletedCount;
      await this.#events.insertOne(toDoc(purgeMarker(name, head.toNumber())));
      return before.deletedCount + 1;
    });
  }

  async extendExpiry(stream: StreamId, expireAt: Date): Promise<void> {
    await this.#guard(() =>
      this.#events.updateMany({ stream: streamName(stream), expire_at: { $lt: expireAt } }, { $set: { expire_at: expireAt } }),
    );
  }

  async bindExecution(executionId: string, project: string): Promise<string> {
    const doc = await this.#guard(() =>
      this.#executions.findOneAndUpdate({ _id: executionId }, { $setOnInsert: { project } }, { upsert: true, returnDocument: "after" }),
    );
    return doc?.project ?? project;
  }

  async executionProject(executionId: string): Promise<string | undefined> {
    const doc = await this.#guard(() => this.#executions.findOne({ _id: executionId }));
    return doc?.project;
  }

  watchAppends(onAppend: (stream: string) => void, interest: () => Iterable<StreamId>): () => Promise<void> {
    const watcher = new AppendWatcher(this.#db, this.#events, this.#counters, this.#opts, onAppend, interest);
    void watcher.start();
    return () => watcher.stop();
  }
}

/** Change stream on `events` where the deployment has one (replica set, sharded), else polling `counters`. */
class AppendWatcher {
  #stopped = false;
  #stream: ChangeStream | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #seen = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly events: Collection<EventDoc>,
    private readonly counters: Collection<CounterDoc>,
    private readonly opts: MongoStoreOptions,
    private readonly onAppend: (stream: string) => void,
    private readonly interest: () => Iterable<StreamId>,
  ) {}

  async start(): Promise<void> {
    const mode = this.opts.watch ?? "auto";
    if (mode !== "poll" && (mode === "changestream" || (await this.#hasChangeStreams()))) {
      this.opts.log?.("watching appends with a change stream");
      this.#watchChanges();
    } else {
      this.opts.log?.("watching appends by polling", { intervalMs: this.opts.pollIntervalMs ?? 100 });
      this.#poll();
    }
  }

  async #hasChangeStreams(): Promise<boolean> {
    try {
      const hello = await this.db.command({ hello: 1 });
      return typeof hello.setName === "string" || hello.msg === "isdbgrid";
    } catch {
      return false;
    }
  }

  #watchChanges(): void {
    if (this.#stopped) return;
    const cs = this.events.watch([{ $match: { operationType: "insert" } }, { $project: { "fullDocument.stream": 1 } }]);
    this.#stream = cs;
    // Anything appended while (re)connecting is picked up by a wake-up of every followed stream.
    for (const s of this.interest()) this.onAppend(streamName(s));
    cs.on("change", (change: { fullDocument?: { stream?: string } }) => {
      const s = change.fullDocument?.stream;
      if (s) this.onAppend(s);
    });
    cs.on("error", (err: unknown) => {
      this.opts.log?.("change stream failed; restarting", { err: String(err) });
      void cs.close().catch(() => {});
      if (!this.#stopped) this.#timer = setTimeout(() => this.#watchChanges(), 1000);
    });
  }

  #poll(): void {
    if (this.#stopped) return;
    const interval = this.opts.pollIntervalMs ?? 100;
    const tick = async (): Promise<void> => {
      const names = [...new Set([...this.interest()].map(streamName))];
      if (names.length > 0) {
        try {
          const docs = await this.counters.find({ _id: { $in: names } }, { projection: { seq: 1 } }).toArray();
          for (const d of docs) {
            const seq = num(d.seq);
            if (this.#seen.get(d._id) !== seq) {
              this.#seen.set(d._id, seq);
              this.onAppend(d._id);
            }
          }
        } catch (err) {
          this.opts.log?.("append poll failed", { err: String(err) });
        }
      }
      if (!this.#stopped) this.#timer = setTimeout(() => void tick(), interval);
    };
    this.#timer = setTimeout(() => void tick(), interval);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#stream?.close().catch(() => {});
  }
}

/** True when every write error of `err` is a duplicate key (E11000). */
export function isDuplicateKey(err: unknown): boolean {
  if (!(err instanceof MongoServerError)) return false;
  const writeErrors = (err as MongoServerError & { writeErrors?: { code: number }[] }).writeErrors;
  if (Array.isArray(writeErrors) && writeErrors.length > 0) return writeErrors.every((w) => w.code === DUPLICATE_KEY);
  return err.code === DUPLICATE_KEY;
}

/** Errors that mean the database could not be reached (as opposed to a rejected operation). */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const name = err.name;
  return (
    name === "MongoServerSelectionError" ||
    name === "MongoNetworkError" ||
    name === "MongoNetworkTimeoutError" ||
    name === "MongoTopologyClosedError" ||
    name === "MongoNotConnectedError" ||
    (err instanceof MongoServerError && err.hasErrorLabel("RetryableWriteError"))
  );
}
