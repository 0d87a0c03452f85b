import { Code, ConnectError } from "@connectrpc/connect";
import { create, isFieldSet, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate, type Value } from "@bufbuild/protobuf/wkt";
import { EventSchema, StreamKind as PbStreamKind, type Event } from "../../gen/events/v1/events_pb.js";
import type { EventLog } from "../core/log.js";
import { eventCost } from "../core/json.js";
import { IDENTIFIER_RULE, isIdentifier } from "../core/names.js";
import { internalKeyPrefix, type JsonValue, type StoredEvent, type StreamId, type StreamKind } from "../core/types.js";
import { ValidationError, fieldRules, lengthError, messageFromJson, type FieldError } from "./json.js";
import { contentOf } from "./mapping.js";
import { FreeJsonError, rawValue, valueToJson as freeValueToJson } from "./free-json.js";

/** Projects are named by the caller (`x-project-id`); this one is used when a dialect has no such notion. */
export const DEFAULT_PROJECT = "default";

/** What a call carries besides its message, whatever the transport. */
export interface CallContext {
  /** The project the caller named (X-Project-ID, Project-ID, ?project_id=, or RPC header x-project-id). */
  project?: string;
  signal: AbortSignal;
  /** The call uses a binary protobuf codec (not JSON): responses may carry pre-encoded fields. */
  binaryWire?: boolean;
}

export interface ApiDeps {
  log: EventLog;
  now: () => Date;
}

export function invalid(errors: FieldError[]): ConnectError {
  const v = new ValidationError(errors);
  return new ConnectError(v.message, Code.InvalidArgument, undefined, undefined, v);
}

export function invalidField(loc: (string | number)[], msg: string, type = "value_error", input?: unknown): ConnectError {
  return invalid([{ loc, msg, type, ...(input === undefined ? {} : { input }) }]);
}


/**
 * The field rules of events/v1/options.proto, for any request however it arrived (JSON bodies
 * also get their types checked when parsed): `required` message fields must be set, strings and
 * lists not empty; `identifier` strings must be identifiers (core/names.ts); strings with `min_length` /
 * `max_length` must have that many characters (code points).
 */
export function checkRequired<Desc extends DescMessage>(schema: Desc, msg: MessageShape<Desc>, loc: (string | number)[] = ["body"]): void {
  const errors: FieldError[] = [];
  for (const field of schema.fields) {
    if (fieldRules(field).identifier && field.fieldKind === "scalar" && isFieldSet(msg, field)) {
      const v = (msg as Record<string, unknown>)[field.localName];
      if (typeof v === "string" && !isIdentifier(v)) {
        errors.push({ loc: [...loc, field.name], msg: IDENTIFIER_RULE, type: "string_pattern_mismatch", input: v });
      }
    }
    if (field.fieldKind === "scalar" && isFieldSet(msg, field)) {
      const v = (msg as Record<string, unknown>)[field.localName];
      const e = typeof v === "string" ? lengthError(field, v, [...loc, field.name]) : undefined;
      if (e) errors.push(e);
    }
    if (!fieldRules(field).required) continue;
    if (isFieldSet(msg, field)) continue;
    if (field.fieldKind === "list") errors.push({ loc: [...loc, field.name], msg: "List should have at least 1 item after validation, not 0", type: "too_short" });
    else errors.push({ loc: [...loc, field.name], msg: "Field required", type: "missing" });
  }
  if (errors.length > 0) throw invalid(errors);
}

/** Parses a JSON body into a message and applies checkRequired (see json.ts for the JSON rules). */
export function parseRequest<Desc extends DescMessage>(schema: Desc, body: unknown, loc: (string | number)[] = ["body"]): MessageShape<Desc> {
  const msg = messageFromJson(schema, body, loc);
  checkRequired(schema, msg, loc);
  return msg;
}

/**
 * The JSON of a request's Value field (see free-json.ts); what cannot be stored (too deep, not
 * finite, lone surrogates) is an invalid_argument located at `loc`.
 */
export function valueToJson(v: Value | undefined, loc: (string | number)[] = []): JsonValue {
  try {
    return freeValueToJson(v);
  } catch (err) {
    if (err instanceof FreeJsonError) throw invalidField(loc, `Input is not storable JSON: ${err.message}`);
    throw err;
  }
}

/** A Value holding stored JSON: no conversion unless protobuf binary encoding needs the tree. */
export function jsonToValue(v: JsonValue): Value {
  return rawValue(v);
}

export function rfc3339(d: Date): string {
  return d.toISOString();
}

const KINDS: Record<StreamKind, PbStreamKind> = {
  topic: PbStreamKind.TOPIC,
  execution: PbStreamKind.EXECUTION,
  task: PbStreamKind.TASK,
  durable: PbStreamKind.DURABLE,
};

export function pbKind(kind: StreamKind): PbStreamKind {
  return KINDS[kind];
}

export function kindFromPb(kind: PbStreamKind): StreamKind | undefined {
  return (Object.keys(KINDS) as StreamKind[]).find((k) => KINDS[k] === kind);
}

/**
 * What was built for the most recently delivered events, keyed by the StoredEvent object.
 * Subscribers that read the log's shared tail get the same objects, so an event fanned out to N
 * subscribers is converted once. Bounded in bytes (oldest out first; `weigh` says what an entry
 * holds): a WeakMap would keep the conversion as long as the event lives, which in the in-memory
 * store is as long as it is retained, and a count bound lets a few large events hold gigabytes.
 */
export class RecentCache<V> {
  readonly #map = new Map<StoredEvent, { v: V; w: number }>();
  #bytes = 0;
  constructor(
    /** A number, or a shared setting read on every insert (recentCacheBytes). */
    readonly limit: number | { value: number },
    readonly weigh: (e: StoredEvent, v: V) => number,
  ) {}

  get maxBytes(): number {
    return typeof this.limit === "number" ? this.limit : this.limit.value;
  }

  get(e: StoredEvent, build: (e: StoredEvent) => V): V {
    const hit = this.#map.get(e);
    if (hit) return hit.v;
    const v = build(e);
    const w = this.weigh(e, v);
    // Larger than the whole cache: used once, not kept.
    if (w > this.maxBytes) return v;
    this.#map.set(e, { v, w });
    this.#bytes += w;
    for (const [k, old] of this.#map) {
      if (this.#bytes <= this.maxBytes) break;
      this.#map.delete(k);
      this.#bytes -= old.w;
    }
    return v;
  }

  /** Bytes held (by the weights given). */
  get bytes(): number {
    return this.#bytes;
  }
}

/** Bytes each cache of converted events may hold (RECENT_CACHE_BYTES); set at start-up. */
export const recentCacheBytes = { value: 16 * 1024 * 1024 };

// An Event message refers to the stored event's data (no copy), which it keeps alive.
const eventMessages = new RecentCache<Event>(recentCacheBytes, (e) => eventCost(e).weight);

/** The shared events.v1.Event view of a stored event. */
export function toEventMessage(e: StoredEvent, stream: StreamId): Event {
  return eventMessages.get(e, (ev) => buildEventMessage(ev, stream));
}

function buildEventMessage(e: StoredEvent, stream: StreamId): Event {
  const x = e.extra ?? {};
  const str = (k: string): string | undefined => (typeof x[k] === "string" ? (x[k] as string) : undefined);
  const msg = create(EventSchema, {
    id: e.id,
    stream: { kind: pbKind(stream.kind), key: stream.key },
    sequence: BigInt(e.seq),
    eventType: e.eventType,
    data: jsonToValue(e.data),
    createdAt: timestampFromDate(e.createdAt),
    // The service's own keys (producer requests, Sailhouse sends) are not the client's: not shown.
    idempotencyKey: e.idempotencyKey !== undefined && internalKeyPrefix(e.idempotencyKey) === undefined ? e.idempotencyKey : undefined,
    executionId: str("execution_id"),
    rootExecutionId: str("root_execution_id"),
    attemptNumber: typeof x["attempt_number"] === "number" ? x["attempt_number"] : undefined,
    waitGroupInstanceId: str("wait_group_instance_id"),
    timestamp: str("timestamp"),
  });
  // Left unset when empty: an empty Struct costs every subscriber a message to decode per event.
  if (e.metadata && Object.keys(e.metadata).length > 0) msg.metadata = e.metadata;
  if (e.expireAt) msg.expireAt = timestampFromDate(e.expireAt);
  if (e.bytes) msg.payload = e.bytes;
  // Stored in TerminalUse's JSON form ({"type": "text", "text": ...}).
  if (x["content"] !== undefined) msg.content = contentOf(e);
  return msg;
}

/** The error table lives in ./errors.ts; RPC code elsewhere in src/api reaches it from here. */
export { toConnectError } from "./errors.js";

/** Sequences arrive as int64 (bigint); the core works with numbers, exact up to 2^53. */
export function seqFromPb(v: bigint | undefined, loc: (string | number)[]): number {
  if (v === undefined) return 0;
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidField(loc, `must be between 0 and ${Number.MAX_SAFE_INTEGER}`, "value_error", String(v));
  return Number(v);
}

/** Page size: default 100, 1..1000. */
export function pageLimit(limit: number | undefined, loc: (string | number)[]): number {
  if (limit === undefined || limit === 0) return 100;
  if (limit < 1 || limit > 1000) throw invalidField(loc, "Input should be between 1 and 1000", "value_error", limit);
  return limit;
}

/** A page token: the previous page's last entry's sort key, as opaque base64url JSON. */
export function encodePageToken(key: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(key)).toString("base64url");
}

/** The sort key of a page token encodePageToken made; `parse` says whether the key has its shape. */
export function decodePageToken<T>(token: string, parse: (key: unknown[]) => T | undefined): T {
  try {
    const v = JSON.parse(Buffer.from(token, "base64url").toString()) as unknown;
    const key = Array.isArray(v) ? parse(v) : undefined;
    if (key !== undefined) return key;
  } catch {
    // not JSON: refused below
  }
  throw invalidField(["page_token"], "Invalid page token (pass next_page_token of the previous page as it is)", "value_error");
}

/**
 * The longest head of `items` whose bytes (bytesOf each) stay within maxBytes; the first item
 * always comes, however large, so a page is never empty while items are left.
 */
export function headWithin<T>(items: Iterable<T>, bytesOf: (item: T) => number, maxBytes: number): T[] {
  const out: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const b = bytesOf(item);
    if (out.length > 0 && bytes + b > maxBytes) break;
    out.push(item);
    bytes += b;
  }
  return out;
}

/** Follows a stream, applying an optional event_type filter. */
export async function* follow(deps: ApiDeps, stream: StreamId, after: number, signal: AbortSignal, types?: readonly string[]): AsyncGenerator<StoredEvent[]> {
  const only = types && types.length > 0 ? new Set(types) : undefined;
  for await (const batch of deps.log.subscribe(stream, after, signal)) {
    const out = only ? batch.filter((e) => only.has(e.eventType)) : batch;
    if (out.length > 0) yield out;
  }
}

/** Maps every item of every batch (events to messages, messages to SSE frames). */
export async function* mapBatches<S, T>(source: AsyncIterable<S[]>, map: (item: S) => T): AsyncGenerator<T[]> {
  for await (const batch of source) yield batch.map(map);
}
