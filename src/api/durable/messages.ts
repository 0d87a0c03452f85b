/**
 * Messages on the wire: a stream's events as a response body (JSON array, raw bytes, or a log
 * view's envelopes), and an append's body as event drafts. Pure functions, no I/O.
 */
import { freeJsonProblem } from "../../core/json.js";
import type { DurableMeta } from "../../store/durable.js";
import { internalKeyPrefix, type EventDraft, type JsonValue, type StoredEvent } from "../../core/types.js";
import { DsError } from "./protocol.js";
import { isJson, mediaType } from "./wire.js";

/** One message of a JSON stream, as JSON text. */
export function jsonMessage(e: StoredEvent): string {
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
export function rawMessage(e: StoredEvent): Buffer {
  return e.bytes ? Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength) : Buffer.from(JSON.stringify(e.data));
}

export function body(m: DurableMeta, events: readonly StoredEvent[]): Buffer {
  const w = bodyWriter(m);
  return Buffer.concat([w.part(events), w.end()]);
}

/**
 * A response body in pieces, for an answer streamed page by page: `part()` for each page, in
 * order, then `end()`; the pieces concatenated are body() of all the pages' events.
 */
export function bodyWriter(m: Pick<DurableMeta, "contentType" | "view">): { part(events: readonly StoredEvent[]): Buffer; end(): Buffer } {
  if (!m.view && !isJson(m.contentType)) return { part: (events) => Buffer.concat(events.map(rawMessage)), end: () => Buffer.alloc(0) };
  const message = m.view ? (e: StoredEvent) => JSON.stringify(envelope(e)) : jsonMessage;
  let opened = false;
  return {
    part(events) {
      if (events.length === 0) return Buffer.alloc(0);
      const text = (opened ? "," : "[") + events.map(message).join(",");
      opened = true;
      return Buffer.from(text);
    },
    end: () => Buffer.from(opened ? "]" : "[]"),
  };
}

/**
 * A view's message for one event of a topic, execution or task: the event as one JSON object.
 * POSTing `{type, data, metadata, idempotency_key}` appends an event with those (server-set
 * fields, if sent back, are ignored), so what is read can be written again.
 */
export function envelope(e: StoredEvent): Record<string, unknown> {
  const out: Record<string, unknown> = { id: e.id, sequence: e.seq, type: e.eventType, data: e.data, metadata: e.metadata, created_at: e.createdAt.toISOString() };
  if (e.bytes) out["payload_base64"] = Buffer.from(e.bytes).toString("base64");
  // The service's own keys (a producer's request keys) are not the event's: not shown, so what is read can be written again.
  if (e.idempotencyKey !== undefined && internalKeyPrefix(e.idempotencyKey) === undefined) out["idempotency_key"] = e.idempotencyKey;
  if (e.expireAt) out["expire_at"] = e.expireAt.toISOString();
  if (e.extra && Object.keys(e.extra).length > 0) out["extra"] = e.extra;
  return out;
}

export function fromEnvelope(v: JsonValue, i: number): EventDraft {
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
export function toDrafts(m: Pick<DurableMeta, "contentType" | "view">, raw: Buffer, creating: boolean): EventDraft[] {
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
