/** Domain types shared by every layer below the API. No transport or storage details here. */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export const STREAM_KINDS = ["topic", "execution", "task", "durable"] as const;
export type StreamKind = (typeof STREAM_KINDS)[number];

/** One ordered log: `(project, kind, key)`, e.g. project "acme", kind "topic", key "orders". */
export interface StreamId {
  readonly project: string;
  readonly kind: StreamKind;
  readonly key: string;
}

/**
 * The store's name for a stream. Each part is URI-encoded so that the separator cannot occur
 * inside a part: distinct streams never share a name.
 */
export function streamName(s: StreamId): string {
  return `${encodeURIComponent(s.project)}/${s.kind}/${encodeURIComponent(s.key)}`;
}

/** The inverse of streamName(). */
export function parseStreamName(name: string): StreamId {
  const [project = "", kind = "topic", key = ""] = name.split("/");
  return { project: decodeURIComponent(project), kind: kind as StreamKind, key: decodeURIComponent(key) };
}

/** What a publisher supplies for one event. */
export interface EventDraft {
  /** The event's id when the caller fixed it in advance (Sailhouse's scheduled events); else a new UUID. */
  id?: string;
  eventType: string;
  data: JsonValue;
  metadata?: JsonObject;
  idempotencyKey?: string;
  /** Dialect fields (execution_id, attempt_number, content, ...), kept and served back as given. */
  extra?: JsonObject;
  expireAt?: Date;
  /** An opaque payload (raw-byte Durable Streams, opaque PublishStream payloads): kept byte-exact; `data` is null then. */
  bytes?: Uint8Array;
}

/** An event as stored: a draft plus its identity and position. */
export interface StoredEvent {
  id: string;
  /** streamName() of its stream. */
  stream: string;
  /** 1, 2, 3, ... per stream: gapless and never reused. */
  seq: number;
  eventType: string;
  data: JsonValue;
  metadata: JsonObject;
  createdAt: Date;
  expireAt?: Date;
  idempotencyKey?: string;
  extra?: JsonObject;
  /**
   * Set on the events of a publish of several events: the last sequence of that publish. Readers
   * deliver such a group only once all of it is stored, so a batch becomes visible all at once.
   */
  batchEnd?: number;
  /** A placeholder for a sequence whose publish failed after taking it: readers skip it. */
  void?: true;
  /** The opaque payload, when the event has one (then `data` is null). */
  bytes?: Uint8Array;
  /**
   * The W3C `traceparent` of the publish that stored it, set only while OpenTelemetry tracing is
   * on (core/trace.ts): a subscriber's delivery on any instance joins the publisher's trace.
   */
  trace?: string;
}

/** An event whose id or idempotency key is already stored in its stream. */
export class DuplicateEventError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "DuplicateEventError";
  }
}

/** A publish over a configured limit (events per batch, bytes per event); nothing of it is stored. */
export class LimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LimitError";
  }
}

/** An append to a closed stream (Durable Streams close / end-of-stream): nothing is stored. */
export class StreamClosedError extends Error {
  constructor(message = "the stream is closed: it accepts no more events") {
    super(message);
    this.name = "StreamClosedError";
  }
}

/**
 * A reserve() that named the incarnation it expects (a Durable Streams append answered from a
 * cached record) met a stream record holding another one (`found`; undefined when the record
 * holds none: created before incarnations were kept there): the stream was deleted and created
 * again meanwhile. Nothing was reserved or stored.
 */
export class IncarnationMismatchError extends Error {
  constructor(readonly found: string | undefined) {
    super("the stream was deleted and created again: its incarnation changed");
    this.name = "IncarnationMismatchError";
  }
}

/**
 * A draft whose free-form JSON cannot be stored (too deep, a non-finite number, a lone surrogate):
 * see core/json.ts. `index` is the event's place in its publish, `field` the part at fault.
 */
export class InvalidEventError extends Error {
  constructor(
    readonly index: number,
    readonly field: "data" | "metadata" | "extra" | "idempotency_key",
    readonly problem: string,
  ) {
    super(field === "idempotency_key" ? `event ${index}: idempotency_key ${problem}` : `event ${index}: ${field} is not storable JSON: ${problem}`);
    this.name = "InvalidEventError";
  }
}

/**
 * Idempotency keys that start with one of these are the service's own: a Durable Streams
 * producer's request keys (src/api/durable/append.ts), a Sailhouse send's (its event id, so a
 * scheduled send retried after a crash is appended once) and a wait group's completion event's
 * (src/api/sailhouse.ts). The log stores them only from a publish that says its keys are internal
 * (PublishOptions.internalKeys) and refuses them from every other publish, so no client can take a
 * key the service will need (and make an acknowledged append, a scheduled send or a wait group's
 * event a no-op).
 */
export const INTERNAL_KEY_PREFIX = "ds-producer:";
export const SAILHOUSE_SEND_KEY_PREFIX = "sailhouse:";
export const SAILHOUSE_WAITGROUP_KEY_PREFIX = "sailhouse-waitgroup:";
const INTERNAL_KEY_PREFIXES = [INTERNAL_KEY_PREFIX, SAILHOUSE_SEND_KEY_PREFIX, SAILHOUSE_WAITGROUP_KEY_PREFIX] as const;

/** The reserved prefix `key` starts with, if any. */
export function internalKeyPrefix(key: string): string | undefined {
  return INTERNAL_KEY_PREFIXES.find((p) => key.startsWith(p));
}

/**
 * The service holds as much as a memory bound allows (publishes queued, the in-memory store's
 * events); nothing of the publish is stored. Retryable: 503 / `resource_exhausted`.
 */
export class CapacityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CapacityError";
  }
}

/**
 * The store could not do what was asked. `outcome` says what a failed publish left behind:
 * "not-stored" (nothing of it is stored, or what was stored is void and can never be delivered:
 * safe to retry) or "unknown" (the store stopped answering before the outcome could be resolved:
 * it may have been stored; a retry without an idempotency key may duplicate it).
 */
export class StoreUnavailableError extends Error {
  readonly outcome: "not-stored" | "unknown";
  constructor(message: string, options?: { cause?: unknown; outcome?: "not-stored" | "unknown" }) {
    super(message, options);
    this.name = "StoreUnavailableError";
    this.outcome = options?.outcome ?? "not-stored";
  }
}

/**
 * An append found one of its sequences already taken: a reader gave up waiting for it (the
 * publisher stalled past the hole timeout) and claimed it with a void placeholder.
 */
export class SequenceTakenError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SequenceTakenError";
  }
}

/** A void placeholder: a sequence that is taken but holds no event (a failed publish's range). */
export function voidEvent(stream: string, seq: number, at: Date): StoredEvent {
  return { id: `void:${stream}:${seq}`, stream, seq, eventType: "", data: null, metadata: {}, createdAt: at, void: true };
}

/**
 * What a purge leaves at the stream's last sequence: a void event created at the epoch. Readers
 * behind it skip the purged sequences before it at once (they are gone, not holes to wait for).
 */
export function purgeMarker(stream: string, seq: number): StoredEvent {
  return voidEvent(stream, seq, new Date(0));
}

export function isPurgeMarker(e: StoredEvent): boolean {
  return e.void === true && e.createdAt.getTime() === 0;
}
