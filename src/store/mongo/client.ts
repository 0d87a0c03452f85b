import { MongoClient, type Collection, type Db, type Document, type WriteConcernSettings } from "mongodb";
import { StoreUnavailableError } from "../../core/types.js";
import { isUnavailable } from "./errors.js";

export interface MongoConnectionOptions {
  uri: string;
  /** Database name; defaults to the one in the URI, else "agent_events". */
  dbName?: string;
  /** Write concern for every write; default `majority`. */
  writeConcern?: WriteConcernSettings;
  /** How long an operation may wait for a server before failing (fail fast while it is down). */
  serverSelectionTimeoutMs?: number;
  /**
   * Bound on every store operation, ms (default 5000): the write concern's wtimeout, the server's
   * maxTimeMS (adapters pass `readOptions`), the socket timeout, and a client-side deadline after
   * which the caller gets StoreUnavailableError whatever the driver is still doing.
   */
  operationTimeoutMs?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** See MongoConnection.noteUnavailable. */
const RECONNECT_AFTER_MS = 5000;
const DEFAULT_OPERATION_TIMEOUT_MS = 5000;

/**
 * The one MongoDB client of the process, shared by every MongoDB adapter (events, Durable Streams,
 * Sailhouse, tasks, API keys), so an outage looks the same on every path: each operation runs
 * through `read()` or `write()`, which
 *
 * - bound it on this process's clock (the driver 7.x ignores `timeoutMS`, so the deadline is ours:
 *   the driver may still be working on it after the caller got its answer);
 * - turn every driver error that means "the database cannot be reached or cannot confirm in time"
 *   (errors.ts) into StoreUnavailableError — 503 / `unavailable` on every surface, never 500 — with
 *   the outcome a write leaves behind: "unknown" (it may have been stored), "not-stored" for reads;
 * - wait while the reconnect watchdog replaces a stuck client.
 *
 * Errors that are answers (duplicate key, validation) pass through unchanged for the adapter to map.
 */
export class MongoConnection {
  readonly timeoutMs: number;
  /** Options every read passes: the server gives up (maxTimeMS) when this process does. */
  readonly readOptions: { maxTimeMS: number };
  readonly #client: MongoClient;
  readonly #opts: MongoConnectionOptions;
  #db: Db | undefined;
  #unavailableSince = 0;
  #reconnecting: Promise<void> | undefined;
  #inFlight = 0;
  #drained: (() => void) | undefined;

  constructor(opts: MongoConnectionOptions) {
    this.#opts = opts;
    this.timeoutMs = opts.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS;
    this.readOptions = { maxTimeMS: this.timeoutMs };
    const wc = opts.writeConcern ?? { w: "majority" };
    this.#client = new MongoClient(opts.uri, {
      serverSelectionTimeoutMS: Math.min(opts.serverSelectionTimeoutMs ?? 5000, this.timeoutMs),
      // Notice a server that went away (or came back) within a couple of seconds, not the default 10.
      heartbeatFrequencyMS: 2000,
      // Each layer gets its own bound: w:majority with the majority away answers a write-concern
      // error after wtimeout instead of waiting forever, a connection silent for longer than this is
      // closed, and #guard adds the client-side deadline.
      writeConcern: { ...wc, wtimeoutMS: wc.wtimeoutMS ?? this.timeoutMs },
      socketTimeoutMS: this.timeoutMs + 2000,
      // What subscribers deliver must be majority-committed: nothing a failover can roll back.
      readConcern: { level: "majority" },
    });
  }

  async connect(): Promise<void> {
    await this.#client.connect();
    this.#db ??= this.#client.db(this.#opts.dbName);
  }

  get db(): Db {
    if (!this.#db) throw new Error("MongoConnection.connect() has not been called");
    return this.#db;
  }

  collection<T extends Document>(name: string): Collection<T> {
    return this.db.collection<T>(name);
  }

  /** Runs a read (or several, as one unit): on failure nothing was changed. */
  read<T>(op: () => Promise<T>): Promise<T> {
    return this.#guard(op, false);
  }

  /** Runs a write (or a unit containing one): when the database stops answering, its outcome is unknown. */
  write<T>(op: () => Promise<T>): Promise<T> {
    return this.#guard(op, true);
  }

  async #guard<T>(op: () => Promise<T>, write: boolean): Promise<T> {
    if (this.#reconnecting) await this.#reconnecting;
    this.#inFlight++;
    let timer: NodeJS.Timeout | undefined;
    const outcome = write ? "unknown" : "not-stored";
    try {
      const deadline = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new StoreUnavailableError(`the database did not answer within ${this.timeoutMs} ms`, { outcome })), this.timeoutMs);
      });
      const running = op();
      running.catch(() => {}); // settled after the deadline: nobody waits for it any more
      const result = await Promise.race([running, deadline]);
      this.#unavailableSince = 0;
      return result;
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        this.noteUnavailable();
        throw err;
      }
      if (!isUnavailable(err)) throw err;
      this.noteUnavailable();
      throw new StoreUnavailableError("database unavailable", { cause: err, outcome });
    } finally {
      clearTimeout(timer);
      if (--this.#inFlight === 0) this.#drained?.();
    }
  }

  /**
   * Reconnect watchdog. After a network outage the driver's server monitor can stay stuck on a dead
   * connection although the server is back (seen here: a fresh client connected at once while the
   * service's client kept failing). When operations have failed as "unavailable" for longer than
   * RECONNECT_AFTER_MS (store operations, or the change stream failing to reopen: `fromGuard`
   * false), the client is closed and connected again — but only once no operation is in flight:
   * new ones wait at the gate (#guard), running ones end by their deadline.
   */
  noteUnavailable(fromGuard = true): void {
    const now = Date.now();
    if (this.#unavailableSince === 0) {
      this.#unavailableSince = now;
      return;
    }
    if (this.#reconnecting || now - this.#unavailableSince < RECONNECT_AFTER_MS) return;
    this.#reconnecting = (async () => {
      // An operation that called here is still counted: wait for the others, not for itself.
      while (this.#inFlight > (fromGuard ? 1 : 0)) await new Promise<void>((resolve) => (this.#drained = resolve, setTimeout(resolve, 50)));
      this.#drained = undefined;
      this.#opts.log?.("MongoDB unreachable for a while: reconnecting the client");
      try {
        await this.#client.close(true);
        await this.#client.connect();
        this.#unavailableSince = 0;
      } catch (err) {
        this.#unavailableSince = Date.now(); // still down: try again after another interval
        this.#opts.log?.("reconnect failed", { err: String(err) });
      }
    })().finally(() => (this.#reconnecting = undefined));
  }

  async close(): Promise<void> {
    await this.#reconnecting;
    await this.#client.close();
  }
}
