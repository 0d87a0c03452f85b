import type { StoredEvent, StreamId } from "./types.js";

/**
 * The store port. Adapters: `mongo/` (production) and `memory/` (embedded default). Both pass the
 * same contract suite (test/store-contract.ts).
 *
 * Streams are addressed by StreamId; events carry `stream` = streamName(id).
 */
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
   * Rejects with StreamClosedError when the stream is closed; with `close`, the same atomic step
   * closes it, so these are its last sequences (a final append).
   */
  reserve(stream: StreamId, count: number, close?: boolean): Promise<number>;
  /**
   * Closes the stream: from now on reserve() rejects with StreamClosedError (on every instance, atomic
   * with the sequence grab, so nothing is appended after a close). Idempotent. Returns the last
   * sequence handed out: the stream's final sequence.
   */
  closeStream(stream: StreamId): Promise<number>;
  /** Opens a closed stream again (a deleted Durable Stream created anew); returns the last sequence handed out. */
  reopenStream(stream: StreamId): Promise<number>;
  /** Whether closeStream() closed the stream (and no reopenStream() since). */
  isClosed(stream: StreamId): Promise<boolean>;
  /** The last sequence handed out for the stream (0 when it does not exist). */
  head(stream: StreamId): Promise<number>;

  /**
   * Stores events of one stream whose sequences were reserved. Resolves only once all are stored
   * (with the configured write concern); rejects otherwise (some may have been stored), with
   * DuplicateEventError when an id or an idempotency key of the stream is already taken.
   */
  append(events: readonly StoredEvent[]): Promise<void>;
  /**
   * Turns the sequences [from, to] of the stream into placeholders: the publisher's own events
   * there (`ids`) become void, missing sequences are written as void. Used when a publish fails
   * after reserve().
   */
  voidRange(stream: StreamId, from: number, to: number, at: Date, ids: readonly string[]): Promise<void>;
  /** The event of the stream stored with this idempotency key. */
  findByIdempotencyKey(stream: StreamId, key: string): Promise<StoredEvent | undefined>;
  /** An event by id (any stream); undefined when unknown or void. */
  getEvent(id: string): Promise<StoredEvent | undefined>;
  /** Events (void ones included) with seq > after, ascending, at most `limit`. */
  read(stream: StreamId, after: number, limit: number): Promise<StoredEvent[]>;
  /** Events (void ones included) with seq < before, descending, at most `limit`. */
  readBefore(stream: StreamId, before: number, limit: number): Promise<StoredEvent[]>;
  /** The highest sequence of an event created at or before `at` (0 when none): a cursor for "events after this instant". */
  cursorAt(stream: StreamId, at: Date): Promise<number>;
  /** A project's streams (at most `limit`), with the last sequence handed out and the events stored. */
  listStreams(project: string, limit: number): Promise<{ stream: StreamId; head: number; events: number }[]>;
  /** Deletes the stream's stored events (its counter stays, so sequences are never reused). Returns how many. */
  purge(stream: StreamId): Promise<number>;
  /** Sets expire_at on every event of the stream that expires earlier (sliding expiry). */
  extendExpiry(stream: StreamId, expireAt: Date): Promise<void>;

  /** Records which project an execution id belongs to; the first binding wins. Returns the bound project. */
  bindExecution(executionId: string, project: string): Promise<string>;
  executionProject(executionId: string): Promise<string | undefined>;

  /**
   * Reports appends made by other processes: `onAppend(streamName)` is called after events of
   * that stream were stored elsewhere. `interest()` names the streams local subscribers follow
   * (a polling implementation only looks at those). Returns a function that stops watching.
   * Adapters without other writers (memory) never call back.
   */
  watchAppends(onAppend: (stream: string) => void, interest: () => Iterable<StreamId>): () => Promise<void>;
}
