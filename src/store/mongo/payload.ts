/**
 * How an event's JSON (data, metadata, the dialect's extra fields) is kept in its MongoDB
 * document (docs/operations.md, "Storage format"):
 *
 * - `body`: a BSON document {data, metadata, extra}, whenever BSON keeps the JSON exactly: smaller
 *   than JSON text, no parse of a string on every read, and readable in the MongoDB shell;
 * - `payload`: the JSON text of the same, for JSON that BSON would not keep exactly or that
 *   MongoDB refuses: empty keys, keys starting with "$", containing "." or NUL, "__proto__" keys (a JavaScript
 *   BSON decoder sets the prototype instead), strings with lone surrogates (BSON's UTF-8 would
 *   replace them), nesting deeper than MongoDB's limit.
 *
 * Readers accept both forms, so events stored before this format (all `payload`) read as before.
 */
import type { JsonObject, JsonValue } from "../../core/types.js";
import { wellFormed } from "../../core/json.js";

export interface EventBody {
  data: JsonValue;
  metadata?: JsonObject;
  extra?: JsonObject;
}

/** MongoDB nests documents 100 deep; the body itself and the event document take two levels. */
const MAX_BSON_DEPTH = 90;

/** Whether BSON (and MongoDB) keep this JSON value exactly. */
export function bsonExact(v: JsonValue, depth = 0): boolean {
  if (typeof v === "string") return wellFormed(v);
  if (v === null || typeof v !== "object") return typeof v !== "number" || Number.isFinite(v);
  if (depth >= MAX_BSON_DEPTH) return false;
  if (Array.isArray(v)) return v.every((x) => bsonExact(x, depth + 1));
  for (const k of Object.keys(v)) {
    if (k === "" || k.startsWith("$") || k.includes(".") || k.includes("\0") || k === "__proto__" || !wellFormed(k)) return false;
    if (!bsonExact(v[k]!, depth + 1)) return false;
  }
  return true;
}

/** The document fields for an event's JSON: `body` when BSON keeps it exactly, else `payload`. */
export function storedBody(body: EventBody): { body: EventBody } | { payload: string } {
  const b: EventBody = { data: body.data };
  if (body.metadata !== undefined) b.metadata = body.metadata;
  if (body.extra !== undefined) b.extra = body.extra;
  return bsonExact(b as unknown as JsonValue) ? { body: b } : { payload: JSON.stringify(b) };
}

/** An event's JSON from its document, whichever form it was stored in. */
export function readBody(d: { body?: EventBody; payload?: string }): EventBody {
  if (d.body !== undefined) return d.body;
  return JSON.parse(d.payload ?? "{}") as EventBody;
}
