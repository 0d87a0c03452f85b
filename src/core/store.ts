import type { StoredEvent, StreamId, StreamKind } from "./types.js";

/** Sequences a watcher saw appended (or reserved) in a stream, first to last. */
export interface AppendRange {
  from: number;
  to: number;
}

export interface StreamInfo {
  head: number;
  floor: number;
  expireAt?: Date;
  /** Whether the stream is closed, from the same read as `head` (so a closed stream's head is its final sequence). */
  closed: boolean;
}

/**
 * The store port. Adapters: `mongo/` (production) and `memory/` (embedded default). Both pass the
 * same contract suite (test/store-contract.ts).
 *
 * Streams are addressed by StreamId; events carry `stream` = streamName(id).
 */
export interface ListStreamsQuery {
  kind?: StreamKind;
  /** The last stream of the previous page. */
  after?: { kind: StreamKind; key: string };
  limit: number;
}

export interface StreamListing {
  stream: StreamId;
  head: number;
  events: number;
  /** When sequences were last taken (the reserve() of the stream's latest publish); absent before any. */
  lastAppendAt?: Date;
}

export interface ReserveOptions {
  expireAt?: Date;
  close?: boolean;
  /** The incarnation the stream record must hold (a Durable Streams append from a cached record). */
  inc?: string;
}

export interface Store {
  /** "mongo" or "memory". */
  readonly kind: string;
  /** False when events are lost on restart. */
  readonly durable: boolean;

  /** Connects and creates indexes (idempotent). */
  init(): Promise<void>;
  close(): Promise<void>;
  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>;

  /**
   * Atomically takes the next `count` sequences of the stream (creating the stream on first use)
   * and returns the last one: the range is [last - count + 1, last]. One round trip per call.
   * `expireAt` slides the stream's expiry (never earlier) in the same round trip. Rejects with
   * StreamClosedError when the stream is closed; with `close`, the same atomic step closes it, so
   * these are its last sequences (a final append). The same step records the time as the
   * stream's last append (StreamListing.lastAppendAt). With `inc`, the stream record must hold
   * that incarnation (see reopenStream()), checked in the same step: otherwise it rejects with
   * IncarnationMismatchError (before StreamClosedError) and takes nothing.
   */
  reserve(stream: StreamId, count: number, opts?: ReserveOptions): Promise<number>;
  /**
   * Closes the stream: from now on reserve() rejects with StreamClosedError (on every instance, atomic
   * with the sequence grab, so nothing is appended after a close). Idempotent. Returns the last
   * sequence handed out: the stream's final sequence.
   */
  closeStream(stream: StreamId): Promise<number>;
  /**
   * Opens a closed stream again (a deleted Durable Stream created anew); returns the last sequence
   * handed out. With `inc`, the stream record holds that incarnation from now on (reserve()'s `inc`).
   */
  reopenStream(stream: StreamId, inc?: string): Promise<number>;
  /**
   * Writes `inc` as the stream record's incarnation if, and only if, it holds `holding` (null: none).
   * True when written.
   */
  setIncarnation(stream: StreamId, inc: string, holding: string | null): Promise<boolean>;
  /** Whether closeStream() closed the stream (and no reopenStream() since). */
  isClosed(stream: StreamId): Promise<boolean>;
  /** The last sequence handed out for the stream (0 when it does not exist). */
  head(stream: StreamId): Promise<number>;
  /**
   * The stream record, in one read: last sequence handed out, `floor` (sequences up to it are
   * gone: purged or expired), its expiry and whether it is closed. Undefined when the stream does
   * not exist.
   */
  streamInfo(stream: StreamId): Promise<StreamInfo | undefined>;
  /**
   * Slides the stream's expiry to `expireAt` unless it is already later (creating the stream record
   * when missing). Once the expiry has passed, reads serve none of the stream's events and the
   * store deletes them; the stream's sequences stay taken.
   */
  touch(stream: StreamId, expireAt: Date): Promise<void>;

  /**
   * Stores events of one stream whose sequences were reserved, in sequence order (a failure stops
   * it: what is stored of a failed call is a prefix). Resolves only once all are stored (with the
   * configured write concern); rejects otherwise (some may have been stored), with
   * DuplicateEventError when an id or an idempotency key of the stream is already taken,
   * SequenceTakenError when a sequence was claimed, StoreUnavailableError when the store cannot be
   * reached or did not answer in time (then a prefix may be stored, or be stored later: the caller
   * closes the range with voidRange() and reads it back).
   */
  append(events: readonly StoredEvent[]): Promise<void>;
  /**
   * Turns the sequences [from, to] of the stream into placeholders: the publisher's own events
   * there (`ids`) become void, and every free sequence gets a void placeholder under the unique
   * {stream, seq} index (a sequence holding another event keeps it). With `ids` empty this is how
   * a reader *claims* a hole: once it resolves, no publisher can store an event there any more
   * (its append fails with SequenceTakenError). Returns how many placeholders it wrote.
   */
  voidRange(stream: StreamId, from: number, to: number, at: Date, ids: readonly string[]): Promise<number>;
  /** The event of the stream stored with this idempotency key. */
  findByIdempotencyKey(stream: StreamId, key: string): Promise<StoredEvent | undefined>;
  /** An event by id (any stream); undefined when unknown or void. */
  getEvent(id: string): Promise<StoredEvent | undefined>;
  /**
   * Events (void ones included) with seq > after, ascending, at most `limit`; with majority read
   * concern where the store has replicas (nothing a failover can roll back). Sequences up to the
   * stream's floor come back as one purge marker; when the stream has expired its events come
   * back with that expiry (readers pass them without delivering).
   */
  read(stream: StreamId, after: number, limit: number): Promise<StoredEvent[]>;
  /** Events (void ones included) with seq < before, descending, at most `limit`. */
  readBefore(stream: StreamId, before: number, limit: number): Promise<StoredEvent[]>;
  /** The highest sequence of an event created at or before `at` (0 when none): a cursor for "events after this instant". */
  cursorAt(stream: StreamId, at: Date): Promise<number>;
  /**
   * A project's streams in (kind, key) order (strings compared by their UTF-8 bytes, as MongoDB
   * does), filtered by kind in the query itself, starting after `after`: at most `limit`, with the
   * last sequence handed out and the events stored.
   */
  listStreams(project: string, q: ListStreamsQuery): Promise<StreamListing[]>;
  /** Deletes the stream's stored events (its counter stays, so sequences are never reused). Returns how many. */
  purge(stream: StreamId): Promise<number>;

  /** Records which project an execution id belongs to; the first binding wins. Returns the bound project. */
  bindExecution(executionId: string, project: string): Promise<string>;
  executionProject(executionId: string): Promise<string | undefined>;

  /**
   * Reports appends made by other processes: `onAppend(streamName, range)` is called after events of
   * that stream were stored elsewhere. `range`, when known, holds the sequences the report is
   * about (an insert's sequence, or how far the stream's counter moved): the log ignores reports
   * of its own appends by it. Without it, something of the stream changed. `events`, when the
   * watcher carries them, are the inserted events as a read would return them apart from the
   * stream record (its floor and expiry), in sequence order. `interest()` names the
   * streams local subscribers follow (a polling implementation only looks at those). Returns a
   * function that stops watching. Adapters without other writers (memory) never call back.
   */
  watchAppends(onAppend: (stream: string, range?: AppendRange, events?: StoredEvent[]) => void, interest: () => Iterable<StreamId>): () => Promise<void>;
}
