/**
 * Durable Streams (the open protocol of durable-streams/durable-streams, PROTOCOL.md) on the event
 * log. A durable stream is the log stream (project, "durable", name); its metadata (content type,
 * expiry, forks, producers) lives in the DurableStore. This module owns the protocol's semantics
 * and status codes; src/server/routes/durable.ts only moves bytes and headers.
 *
 * Mapping onto the log:
 * - JSON streams (application/json): one event per message, `data` = the message (a POSTed array
 *   is flattened one level into one atomic multi-event publish); read back equal in value.
 * - Every other content type: one event per append, `bytes` = the body, byte-exact.
 * - event_type = the stream's content type; offsets = `<incarnation>_<position>`, position =
 *   sequence - base (see durable-wire.ts).
 */
import type { ApiDeps } from "./common.js";
import { freeJsonProblem } from "../core/json.js";
import type { DurableMeta, DurableStore, ProducerState } from "../store/durable.js";
import { StreamClosedError, streamName, type EventDraft, type JsonValue, type StoredEvent, type StreamId } from "../core/types.js";
import { formatOffset, isJson, isTextual, mediaType, newIncarnation, OFFSET, OffsetError, parseOffset, responseCursor, sseData, strictUint, validContentType } from "./durable-wire.js";

export interface DurableConfig {
  /** How long a long-poll (and an idle SSE stretch) waits for data. */
  longPollTimeoutMs: number;
  /** SSE connections are ended after this long (the protocol asks for ~60 s so CDNs can collapse). */
  sseMaxMs: number;
  /** Largest append or initial body. */
  maxAppendBytes: number;
  /** A read returns at most about this many bytes (at least one message). */
  readMaxBytes: number;
  /** A fork copies its inherited data (copy-on-fork): at most this many bytes (413 above). */
  maxForkBytes: number;
}

export interface DurableDeps extends ApiDeps {
  durable: DurableStore;
  config: DurableConfig;
}

/** One protocol request, as the route hands it over. */
export interface DsRequest {
  method: string;
  project: string;
  /** The stream's name: the path after /v1/stream/. */
  name: string;
  /** A request header (lower-case name); undefined when absent. */
  header(name: string): string | undefined;
  query: URLSearchParams;
  body: Buffer;
  signal: AbortSignal;
  /** scheme://host the request was sent to (for Location). */
  origin: string;
  /** Set on `/v1/log/{kind}/{key}`: the durable JSON view of another kind's stream (then `name` is unused). */
  view?: { kind: "topic" | "execution" | "task"; key: string };
}

export type DsReply =
  | { status: number; headers?: Record<string, string>; body?: string | Uint8Array }
  | { status: 200; headers: Record<string, string>; sse: AsyncIterable<string> };

/** A protocol error: its status (and headers such as Stream-Closed) are the answer. */
export class DsError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const H = {
  offset: "stream-next-offset",
  cursor: "stream-cursor",
  upToDate: "stream-up-to-date",
  closed: "stream-closed",
  ttl: "stream-ttl",
  expiresAt: "stream-expires-at",
  seq: "stream-seq",
  forkedFrom: "stream-forked-from",
  forkOffset: "stream-fork-offset",
  forkSubOffset: "stream-fork-sub-offset",
  producerId: "producer-id",
  producerEpoch: "producer-epoch",
  producerSeq: "producer-seq",
  expectedSeq: "producer-expected-seq",
  receivedSeq: "producer-received-seq",
  sseEncoding: "stream-sse-data-encoding",
} as const;

/** Where stream names live in URLs (for Stream-Forked-From values and Location). */
export const STREAM_PREFIX = "/v1/stream/";
/** Where the durable views of topics, executions and tasks live: `/v1/log/{kind}/{key}`. */
export const LOG_PREFIX = "/v1/log/";
/** The incarnation of every view: views are never deleted, so they need no other. */
const VIEW_INC = "0000000000000000";
/** A view's record name: starts with a control character, which stream names may not contain. */
const viewName = (kind: string, key: string): string => `\u0001log/${kind}/${key}`;
const MAX_PRODUCER_ID = 256;
/** Events read from the log per round of a read. */
const READ_EVENTS = 1000;
/** See expired(). */
const TTL_GRACE_MS = 1000;

export interface Producer {
  id: string;
  epoch: number;
  seq: number;
}

export interface ProducerOutcome {
  events: StoredEvent[];
  duplicate: boolean;
  epoch: number;
  /** The highest accepted seq. */
  seq: number;
}

/** A producer request refused by the producer rules: `stale` epoch, seq `gap`, or `invalid` fields. */
export class ProducerRejection extends Error {
  constructor(
    readonly kind: "stale" | "gap" | "invalid",
    message: string,
    readonly epoch?: number,
    readonly expectedSeq?: number,
  ) {
    super(message);
  }
}

type Verdict =
  | { kind: "accept"; expected: ProducerState | undefined; next: ProducerState }
  | { kind: "duplicate"; lastSeq: number }
  | { kind: "stale"; epoch: number }
  | { kind: "epoch-seq" }
  | { kind: "gap"; expected: number; received: number };

/** The protocol's producer rules (PROTOCOL.md 5.2.1), given the producer's current state. */
export function judgeProducer(state: ProducerState | undefined, p: Producer): Verdict {
  if (!state) return p.seq === 0 ? { kind: "accept", expected: undefined, next: { epoch: p.epoch, lastSeq: 0 } } : { kind: "gap", expected: 0, received: p.seq };
  if (p.epoch < state.epoch) return { kind: "stale", epoch: state.epoch };
  if (p.epoch > state.epoch) return p.seq === 0 ? { kind: "accept", expected: state, next: { epoch: p.epoch, lastSeq: 0 } } : { kind: "epoch-seq" };
  if (p.seq <= state.lastSeq) return { kind: "duplicate", lastSeq: state.lastSeq };
  if (p.seq === state.lastSeq + 1) return { kind: "accept", expected: state, next: { epoch: p.epoch, lastSeq: p.seq } };
  return { kind: "gap", expected: state.lastSeq + 1, received: p.seq };
}

/** The idempotency key of message `i` of a producer's request: the log's unique keys make a retry a no-op on every instance. */
function producerKey(p: Producer, i: number): string {
  return `ds-producer:${p.epoch}:${p.seq}:${i}:${p.id}`;
}

export function durableApi(deps: DurableDeps) {
  const { log, durable, config } = deps;
  /** Requests of one producer on one stream run one at a time in this process (the protocol's serialization rule). */
  const producerLocks = new Map<string, Promise<unknown>>();

  const idOf = (project: string, name: string): StreamId => ({ project, kind: "durable", key: name });
  /** The log stream behind a record: its own, or the viewed stream of another kind. */
  const logOf = (m: DurableMeta): StreamId => (m.view ? { project: m.project, kind: m.view.kind, key: m.view.key } : idOf(m.project, m.name));
  const nowMs = (): number => deps.now().getTime();

  /**
   * Stream-Expires-At is exact. A TTL stream expires between TTL and TTL + 1 s after its last read
   * or write: the grace second absorbs a client's own scheduling delay between two requests
   * (expiry is a clean-up, so erring late is the safe side).
   */
  function expired(m: DurableMeta): boolean {
    const now = nowMs();
    if (m.expiresAt !== undefined && Date.parse(m.expiresAt) <= now) return true;
    return m.ttlSeconds !== undefined && m.lastAccessAt.getTime() + m.ttlSeconds * 1000 + TTL_GRACE_MS <= now;
  }

  /** The stream's record, or undefined (never created, deleted, or expired: an expired one is deleted now). */
  async function load(project: string, name: string): Promise<DurableMeta | undefined> {
    const m = await durable.get(project, name);
    if (!m) return undefined;
    if (!m.softDeleted && expired(m)) {
      await retire(m);
      return m.refCount > 0 ? { ...m, softDeleted: true } : undefined;
    }
    return m;
  }

  /** A view's record, made on first use (the viewed stream exists as soon as it is named). */
  async function ensureView(project: string, view: NonNullable<DsRequest["view"]>): Promise<DurableMeta> {
    const name = viewName(view.kind, view.key);
    const found = await durable.get(project, name);
    if (found) return found;
    const at = deps.now();
    const { meta } = await durable.create({ project, name, inc: VIEW_INC, base: 0, contentType: "application/json", createdAt: at, lastAccessAt: at, closed: false, ancestors: [], refCount: 0, softDeleted: false, view });
    return meta;
  }

  /** The record a request addresses: its view, or its durable stream (404 when absent, 410 when soft-deleted). */
  async function target(r: DsRequest): Promise<DurableMeta> {
    return r.view ? ensureView(r.project, r.view) : live(r.project, r.name);
  }

  /** load() for direct operations: 404 when absent, 410 when soft-deleted. */
  async function live(project: string, name: string): Promise<DurableMeta> {
    const m = await load(project, name);
    if (!m) throw new DsError(404, "stream not found");
    if (m.softDeleted) throw new DsError(410, "stream is gone (deleted; forks still reference it)");
    return m;
  }

  /** Reads and writes move a TTL stream's expiry (HEAD does not). */
  async function touch(m: DurableMeta): Promise<void> {
    if (m.ttlSeconds !== undefined) await durable.update(m.project, m.name, m.inc, { lastAccessAt: deps.now() });
  }

  /**
   * Deletes a stream (DELETE, or expiry). With forks referencing it, it is soft-deleted: the name
   * answers 410 and cannot be re-created until the last fork is gone. Forks hold copies of what
   * they inherited, so the events go at once either way. The log stream is closed first (no stray
   * append lands), then purged; its sequences stay taken, so a stream created under the same name
   * later starts after them with a new incarnation.
   */
  async function retire(m: DurableMeta): Promise<void> {
    const id = logOf(m);
    await log.closeStream(id);
    await log.purge(id);
    if (m.refCount > 0) {
      await durable.update(m.project, m.name, m.inc, { softDeleted: true });
      return;
    }
    if (!(await durable.remove(m.project, m.name, m.inc))) return;
    await durable.removeProducers(m.project, m.name, m.inc);
    await release(m);
  }

  /** A fork is gone: drop its reference on its source, and collect the source if it was soft-deleted and this was its last fork. */
  async function release(m: DurableMeta): Promise<void> {
    if (m.forkedFrom === undefined || m.sourceInc === undefined) return;
    const src = await durable.addRef(m.project, m.forkedFrom, m.sourceInc, -1);
    if (src && src.softDeleted && src.refCount <= 0) await retire(src);
  }

  async function tailOf(m: DurableMeta): Promise<{ position: number; closed: boolean }> {
    const id = logOf(m);
    const [head, closed] = await Promise.all([log.head(id), log.isClosed(id)]);
    return { position: Math.max(0, head - m.base), closed };
  }

  /** Messages after `position`, at most about readMaxBytes: the events, the next position, and whether that is all there is now. */
  async function readAfter(m: DurableMeta, position: number): Promise<{ events: StoredEvent[]; next: number; upToDate: boolean }> {
    const page = await log.list(logOf(m), m.base + position, READ_EVENTS);
    let bytes = 0;
    const events: StoredEvent[] = [];
    for (const e of page.events) {
      const size = e.bytes ? e.bytes.byteLength : JSON.stringify(e.data).length;
      if (events.length > 0 && bytes + size > config.readMaxBytes) {
        return { events, next: events[events.length - 1]!.seq - m.base, upToDate: false };
      }
      bytes += size;
      events.push(e);
    }
    return { events, next: Math.max(position, page.next - m.base), upToDate: !page.hasMore };
  }

  /** One message of a JSON stream, as JSON text. */
  function jsonMessage(e: StoredEvent): string {
    if (!e.bytes) return JSON.stringify(e.data);
    // An opaque payload published into a JSON stream over RPC: served as JSON when it is JSON text, else as a base64 string.
    const text = Buffer.from(e.bytes).toString("utf8");
    try {
      JSON.parse(text);
      return text;
    } catch {
      return JSON.stringify(Buffer.from(e.bytes).toString("base64"));
    }
  }

  /** The bytes of one message of a non-JSON stream. */
  function rawMessage(e: StoredEvent): Buffer {
    return e.bytes ? Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength) : Buffer.from(JSON.stringify(e.data));
  }

  function body(m: DurableMeta, events: readonly StoredEvent[]): Buffer {
    if (m.view) return Buffer.from(`[${events.map((e) => JSON.stringify(envelope(e))).join(",")}]`);
    if (isJson(m.contentType)) return Buffer.from(`[${events.map(jsonMessage).join(",")}]`);
    return Buffer.concat(events.map(rawMessage));
  }

  /**
   * A view's message for one event of a topic, execution or task: the event as one JSON object.
   * POSTing `{type, data, metadata, idempotency_key}` appends an event with those (server-set
   * fields, if sent back, are ignored), so what is read can be written again.
   */
  function envelope(e: StoredEvent): Record<string, unknown> {
    const out: Record<string, unknown> = { id: e.id, sequence: e.seq, type: e.eventType, data: e.data, metadata: e.metadata, created_at: e.createdAt.toISOString() };
    if (e.bytes) out["payload_base64"] = Buffer.from(e.bytes).toString("base64");
    if (e.idempotencyKey !== undefined) out["idempotency_key"] = e.idempotencyKey;
    if (e.expireAt) out["expire_at"] = e.expireAt.toISOString();
    if (e.extra && Object.keys(e.extra).length > 0) out["extra"] = e.extra;
    return out;
  }

  function fromEnvelope(v: JsonValue, i: number): EventDraft {
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new DsError(400, `message ${i}: a log view takes objects {type, data, metadata}`);
    const type = v["type"] ?? "message";
    if (typeof type !== "string" || type === "" || type.length > 256) throw new DsError(400, `message ${i}: type must be a string of 1-256 characters`);
    const metadata = v["metadata"] ?? {};
    if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata)) throw new DsError(400, `message ${i}: metadata must be an object`);
    const d: EventDraft = { eventType: type, data: v["data"] ?? null, metadata };
    const key = v["idempotency_key"];
    if (key !== undefined) {
      if (typeof key !== "string" || key === "" || key.length > 256) throw new DsError(400, `message ${i}: idempotency_key must be a string of 1-256 characters`);
      d.idempotencyKey = key;
    }
    return d;
  }

  /**
   * The messages of an append (or initial) body. JSON: validated and flattened one level; an empty
   * array is refused on append and means "no messages" on create. Others: the body as one message.
   */
  function toDrafts(m: Pick<DurableMeta, "contentType" | "view">, raw: Buffer, creating: boolean): EventDraft[] {
    const eventType = mediaType(m.contentType);
    if (!isJson(m.contentType)) return [{ eventType, data: null, bytes: new Uint8Array(raw) }];
    let value: JsonValue;
    try {
      value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw)) as JsonValue;
    } catch {
      throw new DsError(400, "invalid JSON");
    }
    const messages = Array.isArray(value) ? value : [value];
    if (messages.length === 0 && !creating) throw new DsError(400, "empty arrays are not allowed");
    // The same free-JSON rules as every other surface (MAX_JSON_DEPTH levels per message, finite numbers, no lone surrogates).
    for (const [i, msg] of messages.entries()) {
      const problem = freeJsonProblem(msg);
      if (problem) throw new DsError(400, `message ${i}: ${problem}`);
    }
    if (m.view) return messages.map(fromEnvelope);
    return messages.map((data) => ({ eventType, data }));
  }

  function offsetOf(m: DurableMeta, position: number): string {
    return formatOffset(m.inc, position);
  }

  // ---------------------------------------------------------------- create (PUT), incl. forks

  interface CreateRequest {
    contentType: string | undefined;
    ttlSeconds: number | undefined;
    expiresAt: string | undefined;
    closed: boolean;
    forkedFrom: string | undefined;
    forkOffset: string | undefined;
    forkSubOffset: number | undefined;
  }

  function sourceName(v: string): string {
    let path = v;
    try {
      path = decodeURIComponent(new URL(v, "http://x").pathname);
    } catch {
      // not a URL path: taken as a name
    }
    return path.startsWith(STREAM_PREFIX) ? path.slice(STREAM_PREFIX.length) : path.replace(/^\/+/, "");
  }

  function parseCreate(r: DsRequest): CreateRequest {
    const ttlRaw = r.header(H.ttl);
    const expiresRaw = r.header(H.expiresAt);
    if (ttlRaw !== undefined && expiresRaw !== undefined) throw new DsError(400, "send Stream-TTL or Stream-Expires-At, not both");
    const ttlSeconds = ttlRaw === undefined ? undefined : strictUint(ttlRaw);
    if (ttlRaw !== undefined && ttlSeconds === undefined) throw new DsError(400, "Stream-TTL must be a non-negative integer in seconds (no sign, leading zeros or fraction)");
    if (expiresRaw !== undefined && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(expiresRaw.trim())) {
      throw new DsError(400, "Stream-Expires-At must be an RFC 3339 timestamp");
    }
    if (expiresRaw !== undefined && Number.isNaN(Date.parse(expiresRaw))) throw new DsError(400, "Stream-Expires-At must be an RFC 3339 timestamp");
    const forkedFromRaw = r.header(H.forkedFrom);
    const forkOffset = r.header(H.forkOffset);
    const subRaw = r.header(H.forkSubOffset);
    if (forkOffset !== undefined && forkedFromRaw === undefined) throw new DsError(400, "Stream-Fork-Offset needs Stream-Forked-From");
    if (forkOffset !== undefined && forkOffset !== "-1" && forkOffset !== "now" && !OFFSET.test(forkOffset)) throw new DsError(400, "malformed Stream-Fork-Offset");
    let forkSubOffset: number | undefined;
    if (subRaw !== undefined) {
      if (forkedFromRaw === undefined) throw new DsError(400, "Stream-Fork-Sub-Offset needs Stream-Forked-From");
      forkSubOffset = strictUint(subRaw);
      if (forkSubOffset === undefined) throw new DsError(400, "Stream-Fork-Sub-Offset must be a non-negative integer");
      if (forkSubOffset > 0 && forkOffset === undefined) throw new DsError(400, "Stream-Fork-Sub-Offset needs Stream-Fork-Offset");
    }
    const ct = r.header("content-type");
    return {
      contentType: validContentType(ct) ? ct!.trim() : forkedFromRaw !== undefined ? undefined : "application/octet-stream",
      ttlSeconds,
      expiresAt: expiresRaw?.trim(),
      closed: r.header(H.closed)?.toLowerCase() === "true",
      forkedFrom: forkedFromRaw === undefined ? undefined : sourceName(forkedFromRaw),
      forkOffset,
      forkSubOffset: forkSubOffset === 0 ? undefined : forkSubOffset,
    };
  }

  function sameConfig(m: DurableMeta, c: CreateRequest): boolean {
    if (c.contentType !== undefined && mediaType(c.contentType) !== mediaType(m.contentType)) return false;
    const inheritsExpiry = c.forkedFrom !== undefined && c.ttlSeconds === undefined && c.expiresAt === undefined;
    if (!inheritsExpiry) {
      if (c.ttlSeconds !== m.ttlSeconds) return false;
      if ((c.expiresAt === undefined) !== (m.expiresAt === undefined)) return false;
      if (c.expiresAt !== undefined && Date.parse(c.expiresAt) !== Date.parse(m.expiresAt!)) return false;
    }
    if (c.closed !== m.closed) return false;
    if (c.forkedFrom !== m.forkedFrom) return false;
    if (c.forkOffset !== undefined && c.forkOffset !== m.forkOffset) return false;
    return (c.forkSubOffset ?? 0) === (m.forkSubOffset ?? 0);
  }

  async function createdReply(r: DsRequest, m: DurableMeta, status: number): Promise<DsReply> {
    const tail = await tailOf(m);
    const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, tail.position) };
    if (status === 201) headers["location"] = r.origin + STREAM_PREFIX + m.name.split("/").map(encodeURIComponent).join("/");
    if (tail.closed) headers[H.closed] = "true";
    return { status, headers };
  }

  /** What a fork copies from its source: the messages up to the fork point (and a partial one for a binary sub-offset). */
  async function planFork(src: DurableMeta, c: CreateRequest): Promise<{ count: number; copies: Map<number, EventDraft>; upTo: number; forkOffset: string }> {
    const tail = await tailOf(src);
    let point: number;
    let forkOffset: string;
    if (c.forkOffset === undefined || c.forkOffset === "now") {
      point = tail.position;
      forkOffset = c.forkOffset ?? offsetOf(src, point);
    } else {
      let parsed;
      try {
        parsed = parseOffset(c.forkOffset, src);
      } catch (err) {
        throw new DsError(400, err instanceof OffsetError ? `Stream-Fork-Offset: ${err.message}` : "malformed Stream-Fork-Offset");
      }
      point = parsed.kind === "at" ? parsed.position : 0;
      forkOffset = c.forkOffset;
      if (point > tail.position) throw new DsError(400, "Stream-Fork-Offset is beyond the source stream's tail");
    }
    const copies = new Map<number, EventDraft>();
    const srcId = logOf(src);
    const copy = (e: StoredEvent): EventDraft => {
      const d: EventDraft = { eventType: e.eventType, data: e.data };
      if (e.bytes) d.bytes = e.bytes;
      if (e.extra) d.extra = e.extra;
      if (Object.keys(e.metadata).length > 0) d.metadata = e.metadata;
      return d;
    };
    let cursor = src.base;
    let bytes = 0;
    while (cursor < src.base + point) {
      const page = await log.list(srcId, cursor, READ_EVENTS);
      for (const e of page.events) {
        if (e.seq > src.base + point) continue;
        bytes += e.bytes ? e.bytes.byteLength : JSON.stringify(e.data).length;
        if (bytes > config.maxForkBytes) throw new DsError(413, `a fork copies what it inherits; this one would copy more than ${config.maxForkBytes} bytes (DURABLE_MAX_FORK_BYTES)`);
        copies.set(e.seq - src.base, copy(e));
      }
      if (page.next <= cursor) break;
      cursor = page.next;
      if (!page.hasMore) break;
    }
    let count = point;
    let upTo = point;
    const sub = c.forkSubOffset ?? 0;
    if (sub > 0) {
      // The sub-offset counts into the data right after the fork point, and may not pass its end.
      const next = (await log.list(srcId, src.base + point, READ_EVENTS)).events;
      const first = next[0];
      if (!first) throw new DsError(400, "Stream-Fork-Sub-Offset: there is no data past Stream-Fork-Offset");
      if (isJson(src.contentType)) {
        // JSON: messages of the append (one atomic publish) that starts there.
        const batch = first.batchEnd !== undefined ? first.batchEnd - first.seq + 1 : 1;
        if (sub > batch) throw new DsError(400, "Stream-Fork-Sub-Offset passes the end of the next append");
        for (const e of next) if (e.seq <= first.seq + sub - 1) copies.set(e.seq - src.base, copy(e));
        count = first.seq - src.base + sub - 1;
        upTo = count;
      } else {
        const bytes = rawMessage(first);
        if (sub > bytes.length) throw new DsError(400, "Stream-Fork-Sub-Offset passes the end of the next append");
        count = first.seq - src.base;
        copies.set(count, { eventType: first.eventType, data: null, bytes: new Uint8Array(bytes.subarray(0, sub)) });
      }
    }
    return { count, copies, upTo, forkOffset };
  }

  async function create(r: DsRequest): Promise<DsReply> {
    const c = parseCreate(r);
    if (r.view) {
      // A view exists as soon as it is named: PUT confirms its (fixed) configuration or conflicts.
      const m = await ensureView(r.project, r.view);
      if (c.forkedFrom !== undefined || !sameConfig({ ...m, closed: (await tailOf(m)).closed }, c)) throw new DsError(409, "a log view is application/json, without expiry or fork");
      return createdReply(r, m, 200);
    }
    const existing = await load(r.project, r.name);
    if (existing) {
      if (existing.softDeleted) throw new DsError(409, "this name belongs to a deleted stream that forks still reference");
      if (!sameConfig(existing, c)) throw new DsError(409, "a stream with a different configuration exists here");
      return createdReply(r, existing, 200);
    }
    let src: DurableMeta | undefined;
    if (c.forkedFrom !== undefined) {
      src = await load(r.project, c.forkedFrom);
      if (!src) throw new DsError(404, "source stream not found");
      if (src.softDeleted) throw new DsError(409, "the source stream was deleted (its forks keep it reserved)");
      if (src.view) throw new DsError(400, "a log view cannot be forked");
      if (c.contentType !== undefined && mediaType(c.contentType) !== mediaType(src.contentType)) throw new DsError(409, "Content-Type differs from the source stream's");
    }
    const contentType = c.contentType ?? src?.contentType ?? "application/octet-stream";
    // Validate the initial body before anything is created.
    const drafts = r.body.length > 0 ? toDrafts({ contentType }, r.body, true) : [];
    const plan = src ? await planFork(src, c) : undefined;
    const id = idOf(r.project, r.name);
    const at = deps.now();
    const meta: DurableMeta = {
      project: r.project,
      name: r.name,
      inc: newIncarnation(),
      base: 0,
      contentType,
      createdAt: at,
      lastAccessAt: at,
      closed: false,
      ancestors: [],
      refCount: 0,
      softDeleted: false,
    };
    const inheritsExpiry = src && c.ttlSeconds === undefined && c.expiresAt === undefined;
    const ttl = inheritsExpiry ? src!.ttlSeconds : c.ttlSeconds;
    const expiresAt = inheritsExpiry ? src!.expiresAt : c.expiresAt;
    if (ttl !== undefined) meta.ttlSeconds = ttl;
    if (expiresAt !== undefined) meta.expiresAt = expiresAt;
    if (src && plan) {
      meta.forkedFrom = src.name;
      meta.forkOffset = plan.forkOffset;
      if (c.forkSubOffset !== undefined) meta.forkSubOffset = c.forkSubOffset;
      meta.sourceInc = src.inc;
      meta.ancestors = [{ inc: src.inc, upTo: plan.upTo }, ...src.ancestors.map((a) => ({ inc: a.inc, upTo: Math.min(a.upTo, plan.upTo) }))];
      // Take the reference before the fork exists, so the source cannot be collected in between.
      if (!(await durable.addRef(src.project, src.name, src.inc, +1))) throw new DsError(404, "source stream not found");
    }
    await log.reopenStream(id);
    const count = plan?.count ?? 0;
    meta.base = await log.reserveRange(id, count);
    const { created, meta: holder } = await durable.create(meta);
    if (!created) {
      // Another request created it first: our reserved range becomes placeholders.
      if (count > 0) await log.fill(id, meta.base, count, new Map());
      if (src) await durable.addRef(src.project, src.name, src.inc, -1);
      if (holder.softDeleted || !sameConfig(holder, c)) throw new DsError(409, "a stream with a different configuration exists here");
      return createdReply(r, holder, 200);
    }
    if (plan && count > 0) await log.fill(id, meta.base, count, plan.copies);
    if (drafts.length > 0) {
      await log.publish(id, drafts, { source: "durable", close: c.closed });
    } else if (c.closed) {
      await log.closeStream(id);
    }
    if (c.closed) Object.assign(meta, await durable.update(r.project, r.name, meta.inc, { closed: true }));
    return createdReply(r, meta, 201);
  }

  // ---------------------------------------------------------------- metadata (HEAD), delete

  async function head(r: DsRequest): Promise<DsReply> {
    const m = await target(r);
    const tail = await tailOf(m);
    const headers: Record<string, string> = {
      "content-type": m.contentType,
      [H.offset]: offsetOf(m, tail.position),
      "cache-control": "no-store",
      etag: `"${m.inc}:-1:${offsetOf(m, tail.position)}${tail.closed ? ":c" : ""}"`,
    };
    if (tail.closed) headers[H.closed] = "true";
    if (m.ttlSeconds !== undefined) headers[H.ttl] = String(m.ttlSeconds);
    if (m.expiresAt !== undefined) headers[H.expiresAt] = m.expiresAt;
    return { status: 200, headers };
  }

  async function remove(r: DsRequest): Promise<DsReply> {
    if (r.view) throw new DsError(405, "a log view is not deleted here (PurgeStream deletes a stream's events)", { allow: "GET, HEAD, POST, PUT, OPTIONS" });
    const m = await live(r.project, r.name);
    await retire(m);
    return { status: 204 };
  }

  // ---------------------------------------------------------------- append (POST), close

  function parseProducer(r: DsRequest): Producer | undefined {
    const id = r.header(H.producerId);
    const epoch = r.header(H.producerEpoch);
    const seq = r.header(H.producerSeq);
    if (id === undefined && epoch === undefined && seq === undefined) return undefined;
    if (id === undefined || epoch === undefined || seq === undefined) throw new DsError(400, "send Producer-Id, Producer-Epoch and Producer-Seq together");
    if (id === "" || id.length > MAX_PRODUCER_ID) throw new DsError(400, `Producer-Id must be 1-${MAX_PRODUCER_ID} characters`);
    const e = /^\d+$/.test(epoch) ? Number(epoch) : Number.NaN;
    const s = /^\d+$/.test(seq) ? Number(seq) : Number.NaN;
    if (!Number.isSafeInteger(e)) throw new DsError(400, "Producer-Epoch must be a non-negative integer up to 2^53-1");
    if (!Number.isSafeInteger(s)) throw new DsError(400, "Producer-Seq must be a non-negative integer up to 2^53-1");
    return { id, epoch: e, seq: s };
  }

  async function serialized<T>(key: string, run: () => Promise<T>): Promise<T> {
    const before = producerLocks.get(key) ?? Promise.resolve();
    const result = before.then(run, run);
    const settled = result.catch(() => undefined);
    producerLocks.set(key, settled);
    void settled.then(() => {
      if (producerLocks.get(key) === settled) producerLocks.delete(key);
    });
    return result;
  }

  function closedConflict(m: DurableMeta, position: number): DsError {
    return new DsError(409, "the stream is closed", { [H.closed]: "true", [H.offset]: offsetOf(m, position) });
  }

  async function append(r: DsRequest): Promise<DsReply> {
    const producer = parseProducer(r);
    const close = r.header(H.closed)?.toLowerCase() === "true";
    if (r.body.length === 0 && !close) throw new DsError(400, "empty body (only a close, Stream-Closed: true, may have none)");
    if (!producer) {
      const m = await target(r);
      await touch(m);
      return appendOnce(r, m, close, undefined);
    }
    const stream: StreamId = r.view ? { project: r.project, ...r.view } : idOf(r.project, r.name);
    return serialized(lockKey(stream, producer.id), async () => {
      const m = await target(r);
      await touch(m);
      return appendOnce(r, m, close, producer);
    });
  }

  /** One producer's requests to one stream run one at a time, in arrival order (PROTOCOL.md 5.2.1). */
  function lockKey(stream: StreamId, producerId: string): string {
    return `${streamName(stream)}\n${producerId}`;
  }

  async function appendOnce(r: DsRequest, m: DurableMeta, close: boolean, producer: Producer | undefined): Promise<DsReply> {
    const id = logOf(m);
    let verdict: Verdict | undefined;
    for (;;) {
      if (producer) {
        verdict = judgeProducer(await durable.getProducer(m.project, m.name, m.inc, producer.id), producer);
        const rejected = producerRejection(verdict);
        if (rejected) throw rejected;
      }
      const tail = await tailOf(m);
      const fresh = await durable.get(m.project, m.name);
      const closedBy = fresh?.inc === m.inc ? fresh.closedBy : undefined;
      if (verdict?.kind === "duplicate") {
        // A retry of something already accepted: acknowledged again, nothing appended twice. The
        // request may have died between claiming its sequence and appending (a crashed instance):
        // appending it again under the same unique keys stores it if, and only if, it is missing.
        if (!tail.closed && r.body.length > 0 && producer!.seq === verdict.lastSeq) {
          let drafts: EventDraft[] = [];
          try {
            drafts = toDrafts(m, r.body, false);
          } catch {
            // A retry whose body does not parse is still a retry: the original stands.
          }
          if (drafts.length > 0) await log.publish(id, drafts.map((d, i) => ({ ...d, idempotencyKey: producerKey(producer!, i) })), { source: "durable" }).catch(() => undefined);
        }
        const headers: Record<string, string> = { [H.producerEpoch]: String(producer!.epoch), [H.producerSeq]: String(verdict.lastSeq), [H.offset]: offsetOf(m, (await tailOf(m)).position) };
        if (tail.closed) headers[H.closed] = "true";
        return { status: 204, headers };
      }
      if (r.body.length === 0) {
        // Close only (idempotent): an already closed stream answers the same.
        if (!tail.closed && verdict?.kind === "accept" && !(await durable.casProducer(m.project, m.name, m.inc, producer!.id, verdict.expected, verdict.next))) continue;
        const final = tail.closed ? m.base + tail.position : await log.closeStream(id);
        await durable.update(m.project, m.name, m.inc, { closed: true, ...(producer && !tail.closed ? { closedBy: { producerId: producer.id, epoch: producer.epoch, seq: producer.seq } } : {}) });
        const headers: Record<string, string> = { [H.offset]: offsetOf(m, final - m.base), [H.closed]: "true" };
        if (producer) Object.assign(headers, { [H.producerEpoch]: String(producer.epoch), [H.producerSeq]: String(producer.seq) });
        return { status: 204, headers };
      }
      if (tail.closed) {
        if (producer && closedBy && closedBy.producerId === producer.id && closedBy.epoch === producer.epoch && closedBy.seq === producer.seq) {
          return { status: 204, headers: { [H.closed]: "true", [H.offset]: offsetOf(m, tail.position), [H.producerEpoch]: String(producer.epoch), [H.producerSeq]: String(producer.seq) } };
        }
        throw closedConflict(m, tail.position);
      }
      const ct = r.header("content-type");
      if (ct === undefined || ct.trim() === "") throw new DsError(400, "Content-Type is required");
      if (mediaType(ct) !== mediaType(m.contentType)) throw new DsError(409, `Content-Type ${mediaType(ct)} does not match the stream's ${mediaType(m.contentType)}`);
      const drafts = toDrafts(m, r.body, false);
      const streamSeq = r.header(H.seq);
      if (streamSeq !== undefined && !(await durable.claimStreamSeq(m.project, m.name, m.inc, streamSeq))) throw new DsError(409, "Stream-Seq is not greater than the last one");
      if (verdict?.kind === "accept" && !(await durable.casProducer(m.project, m.name, m.inc, producer!.id, verdict.expected, verdict.next))) continue;
      let stored: StoredEvent[];
      try {
        stored = await log.publish(id, producer ? drafts.map((d, i) => ({ ...d, idempotencyKey: producerKey(producer, i) })) : drafts, { source: "durable", close });
      } catch (err) {
        // Nothing was appended: give the producer its sequence back, so a retry is not taken for a duplicate.
        if (verdict?.kind === "accept") await durable.casProducer(m.project, m.name, m.inc, producer!.id, verdict.next, verdict.expected ?? { epoch: producer!.epoch, lastSeq: -1 }).catch(() => undefined);
        if (err instanceof StreamClosedError) {
          await durable.update(m.project, m.name, m.inc, { closed: true });
          throw closedConflict(m, (await tailOf(m)).position);
        }
        throw err;
      }
      if (close) await durable.update(m.project, m.name, m.inc, { closed: true, ...(producer ? { closedBy: { producerId: producer.id, epoch: producer.epoch, seq: producer.seq } } : {}) });
      const headers: Record<string, string> = { [H.offset]: offsetOf(m, stored[stored.length - 1]!.seq - m.base) };
      if (close) headers[H.closed] = "true";
      if (producer) Object.assign(headers, { [H.producerEpoch]: String(producer.epoch), [H.producerSeq]: String(producer.seq) });
      return { status: producer ? 200 : 204, headers };
    }
  }

  function producerRejection(v: Verdict): DsError | undefined {
    switch (v.kind) {
      case "stale":
        return new DsError(403, "stale producer epoch", { [H.producerEpoch]: String(v.epoch) });
      case "epoch-seq":
        return new DsError(400, "a new producer epoch must start at Producer-Seq 0");
      case "gap":
        return new DsError(409, "producer sequence gap", { [H.expectedSeq]: String(v.expected), [H.receivedSeq]: String(v.received) });
      default:
        return undefined;
    }
  }

  // ---------------------------------------------------------------- reads: catch-up, long-poll, SSE

  function readParams(r: DsRequest): { offset: string | undefined; live: string | undefined } {
    const all = r.query.getAll("offset");
    if (all.length > 1) throw new DsError(400, "one offset parameter only");
    const offset = all[0];
    if (offset === "") throw new DsError(400, "empty offset");
    const live = r.query.get("live") ?? undefined;
    if ((live === "long-poll" || live === "sse") && offset === undefined) throw new DsError(400, `live=${live} needs an offset`);
    return { offset, live };
  }

  function resolveStart(m: DurableMeta, offset: string | undefined, tail: number): number {
    if (offset === undefined) return 0;
    let p;
    try {
      p = parseOffset(offset, m);
    } catch (err) {
      throw new DsError(400, err instanceof Error ? err.message : "malformed offset");
    }
    return p.kind === "start" ? 0 : p.kind === "now" ? tail : p.position;
  }

  async function read(r: DsRequest): Promise<DsReply> {
    const { offset, live: mode } = readParams(r);
    if (offset !== undefined && offset !== "-1" && offset !== "now" && !OFFSET.test(offset)) throw new DsError(400, "malformed offset");
    const m = await target(r);
    await touch(m);
    const tail = await tailOf(m);
    const start = resolveStart(m, offset, tail.position);
    if (mode === "sse") return sse(r, m, start);
    if (offset === "now" && mode !== "long-poll") {
      const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, tail.position), [H.upToDate]: "true", "cache-control": "no-store" };
      if (tail.closed) headers[H.closed] = "true";
      return { status: 200, headers, body: isJson(m.contentType) ? "[]" : "" };
    }
    let page = await readAfter(m, start);
    if (mode === "long-poll" && page.events.length === 0) {
      const waited = await longPoll(r, m, start);
      if (!waited) {
        const now = await tailOf(m);
        const headers: Record<string, string> = { [H.offset]: offsetOf(m, start), [H.upToDate]: "true" };
        if (now.closed) headers[H.closed] = "true";
        else headers[H.cursor] = responseCursor(r.query.get("cursor"), nowMs());
        return { status: 204, headers };
      }
      page = waited;
    }
    const after = await tailOf(m);
    const atTail = page.upToDate && page.next >= after.position;
    const closed = after.closed && atTail;
    const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, page.next) };
    if (page.upToDate) headers[H.upToDate] = "true";
    if (closed) headers[H.closed] = "true";
    if (mode === "long-poll" && !closed) headers[H.cursor] = responseCursor(r.query.get("cursor"), nowMs());
    // Data before the tail never changes: cacheable. A read that reached the tail is not.
    headers["cache-control"] = page.upToDate ? "no-cache" : "private, max-age=60, stale-while-revalidate=300";
    const etag = `"${m.inc}:${offset ?? "-1"}:${offsetOf(m, page.next)}${closed ? ":c" : ""}"`;
    headers["etag"] = etag;
    if (r.header("if-none-match") === etag) return { status: 304, headers: { etag } };
    return { status: 200, headers, body: body(m, page.events) };
  }

  /** Waits for data after `start`; undefined on timeout or when the stream is (or becomes) closed there. */
  async function longPoll(r: DsRequest, m: DurableMeta, start: number): Promise<{ events: StoredEvent[]; next: number; upToDate: boolean } | undefined> {
    const id = logOf(m);
    const deadline = nowMs() + config.longPollTimeoutMs;
    while (!r.signal.aborted) {
      const w = log.watch(id);
      const page = await readAfter(m, start);
      if (page.events.length > 0) {
        w.cancel();
        return page;
      }
      const tail = await tailOf(m);
      const left = deadline - nowMs();
      if (tail.closed || left <= 0) {
        w.cancel();
        return undefined;
      }
      // Woken by local appends and closes at once; another instance's close is seen within a second.
      await w.wait(Math.min(left, 1000));
    }
    return undefined;
  }

  function control(m: DurableMeta, position: number, cursorIn: string | null, upToDate: boolean, closed: boolean): string {
    const c: Record<string, unknown> = { streamNextOffset: offsetOf(m, position) };
    if (closed) {
      c["streamClosed"] = true;
      c["upToDate"] = true;
    } else {
      c["streamCursor"] = responseCursor(cursorIn, nowMs());
      if (upToDate) c["upToDate"] = true;
    }
    return `event: control\n${sseData(JSON.stringify(c))}\n\n`;
  }

  function sse(r: DsRequest, m: DurableMeta, start: number): DsReply {
    const base64 = !isTextual(m.contentType);
    const headers: Record<string, string> = { "content-type": "text/event-stream", "cache-control": "no-cache" };
    if (base64) headers[H.sseEncoding] = "base64";
    const id = logOf(m);
    const cursorIn = r.query.get("cursor");
    async function* frames(): AsyncGenerator<string> {
      const end = nowMs() + config.sseMaxMs;
      let position = start;
      let first = true;
      while (!r.signal.aborted) {
        const w = log.watch(id);
        let waited = false;
        try {
          const page = await readAfter(m, position);
          const tail = await tailOf(m);
          const atTail = page.upToDate && page.next >= tail.position;
          const closed = tail.closed && atTail;
          if (page.events.length > 0) {
            const b = body(m, page.events);
            const payload = base64 ? b.toString("base64") : b.toString("utf8");
            yield `event: data\n${sseData(payload)}\n\n` + control(m, page.next, cursorIn, page.upToDate, closed);
          } else if (first || closed) {
            yield control(m, page.next, cursorIn, page.upToDate, closed);
          }
          first = false;
          position = page.next;
          if (closed) return;
          if (!page.upToDate) continue;
          const left = end - nowMs();
          if (left <= 0) return;
          waited = true;
          const woken = await w.wait(Math.min(left, config.longPollTimeoutMs));
          if (!woken && !r.signal.aborted) {
            // Idle: a control event keeps the connection (and proxies) alive and repeats the position.
            const t = await tailOf(m);
            const closedNow = t.closed && position >= t.position;
            yield control(m, position, cursorIn, true, closedNow);
            if (closedNow) return;
          }
        } finally {
          if (!waited) w.cancel();
        }
      }
    }
    return { status: 200, headers, sse: frames() };
  }

  /**
   * An idempotent producer's publish to any stream (PublishStream's producer fields), with the
   * same rules and the same state as the Producer-* headers: a durable stream's producers, or, for
   * topics, executions and tasks, those of their /v1/log view.
   */
  async function producerPublish(stream: StreamId, producer: Producer, drafts: EventDraft[]): Promise<ProducerOutcome> {
    if (producer.id === "" || producer.id.length > MAX_PRODUCER_ID) throw new ProducerRejection("invalid", `producer_id must be 1-${MAX_PRODUCER_ID} characters`);
    if (!Number.isSafeInteger(producer.epoch) || !Number.isSafeInteger(producer.seq)) throw new ProducerRejection("invalid", "producer_epoch and producer_seq must be at most 2^53-1");
    // Queued in arrival order before anything is awaited: one call's pipelined publishes keep their order.
    return serialized(lockKey(stream, producer.id), async () => {
      const m = stream.kind === "durable" ? await live(stream.project, stream.key) : await ensureView(stream.project, { kind: stream.kind, key: stream.key });
      const id = logOf(m);
      for (;;) {
        const v = judgeProducer(await durable.getProducer(m.project, m.name, m.inc, producer.id), producer);
        switch (v.kind) {
          case "stale":
            throw new ProducerRejection("stale", `stale producer epoch ${producer.epoch}: the producer is at epoch ${v.epoch}`, v.epoch);
          case "epoch-seq":
            throw new ProducerRejection("invalid", "a new producer epoch must start at producer_seq 0");
          case "gap":
            throw new ProducerRejection("gap", `producer_seq gap: expected ${v.expected}, got ${v.received}`, producer.epoch, v.expected);
          case "duplicate": {
            // As over HTTP: the newest accepted request is appended again under its keys, which stores it only if it is missing.
            if (producer.seq === v.lastSeq) await log.publish(id, drafts.map((d, i) => ({ ...d, idempotencyKey: producerKey(producer, i) })), { source: "streams" }).catch(() => undefined);
            return { events: [], duplicate: true, epoch: producer.epoch, seq: v.lastSeq };
          }
          case "accept": {
            if (!(await durable.casProducer(m.project, m.name, m.inc, producer.id, v.expected, v.next))) continue;
            try {
              const events = await log.publish(id, drafts.map((d, i) => ({ ...d, idempotencyKey: producerKey(producer, i) })), { source: "streams" });
              return { events, duplicate: false, epoch: producer.epoch, seq: producer.seq };
            } catch (err) {
              await durable.casProducer(m.project, m.name, m.inc, producer.id, v.next, v.expected ?? { epoch: producer.epoch, lastSeq: -1 }).catch(() => undefined);
              throw err;
            }
          }
        }
      }
    });
  }

  return {
    producerPublish,
    /** Serves one protocol request on /v1/stream/{name}. */
    async handle(r: DsRequest): Promise<DsReply> {
      switch (r.method) {
        case "PUT":
          return create(r);
        case "POST":
          return append(r);
        case "GET":
          return read(r);
        case "HEAD":
          return head(r);
        case "DELETE":
          return remove(r);
        default:
          throw new DsError(405, `method ${r.method} not allowed`, { allow: "GET, HEAD, POST, PUT, DELETE, OPTIONS" });
      }
    },
  };
}

export type DurableApi = ReturnType<typeof durableApi>;
