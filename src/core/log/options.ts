import type { Store } from "../store.js";
import type { Hub } from "../hub.js";
import { MAX_JSON_VALUES } from "../json.js";
import type { StoredEvent } from "../types.js";

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
   * The idempotency keys are new: made by the server for this publish (Sailhouse keys a send by its
   * fresh id), so a repeat only comes from a retry after a crash. They are stored without looking
   * them up first (insert first: 2 commands for a single event, not 3); on the rare duplicate the
   * insert fails, the round's range becomes void placeholders, and the publish goes through the
   * queue once more, where the lookup answers it with the stored events. Client-chosen keys are
   * looked up first instead: their repeats are common, and a lookup costs less than a failed round.
   */
  keysAreNew?: boolean;
  /**
   * Close the stream with this publish (a Durable Streams final append): its sequences are the
   * stream's last; publishes queued behind it fail with StreamClosedError.
   */
  close?: boolean;
  /** The publish's W3C traceparent, stored with its events (set by EventLog.publish while tracing is on). */
  trace?: string;
  /**
   * The caller bounds this publish by its bytes (a Durable Streams append: DURABLE_MAX_APPEND_BYTES),
   * so maxBatchEvents does not apply: it commits whole, as one atomic batch, whatever its count.
   */
  byteBounded?: boolean;
  /** The drafts' idempotency keys were derived by the service (a reserved prefix, core/types.ts internalKeyPrefix), not sent by a client. */
  internalKeys?: boolean;
  /**
   * The Durable Streams incarnation the stream record must hold (Store.reserve's `inc`), checked
   * in the step that takes the sequences: an append answered from a cached record cannot land in
   * a stream deleted and created again elsewhere (IncarnationMismatchError, nothing stored).
   * Publishes expecting different incarnations never share a round.
   */
  incarnation?: string;
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

export interface Page {
  events: StoredEvent[];
  /** Cursor for the next page. */
  next: number;
  hasMore: boolean;
}

/** What the log's parts share: the store, the options, the clocks, the wake-ups and the counters. */
export interface LogContext {
  readonly store: Store;
  readonly opts: EventLogOptions;
  /** Wall clock (ms since the epoch). */
  readonly now: () => number;
  /** Monotonic clock (ms). */
  readonly mono: () => number;
  readonly hub: Hub;
  readonly stats: Stats;
}
