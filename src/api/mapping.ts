/**
 * One event, every dialect: any stored event, whichever surface published it, is served by every
 * surface that reads its stream. Where a dialect's shape is narrower than what another surface may
 * store, the event is mapped (never refused, never allowed to end a stream):
 *
 * - data that is not a JSON object, on surfaces whose data is an object (Kubiya, Sailhouse,
 *   TerminalUse data parts): `{"value": <data>}`;
 * - an event without TerminalUse content (published elsewhere into a task): a string is a text
 *   part, anything else a data part holding the object mapping above;
 * - data nested deeper than protobuf clients decode (events stored before the nesting limit, see
 *   core/json.ts) in a google.protobuf.Struct field: `{"data_json": "<its JSON text>"}`; in a
 *   google.protobuf.Value field, protobuf binary encoding writes the JSON text as a string (see
 *   rawValue in free-json.ts), while JSON surfaces serve it as stored.
 */
import { create } from "@bufbuild/protobuf";
import { ContentSchema, type Content } from "../../gen/events/v1/events_pb.js";
import { jsonDepth } from "../core/json.js";
import { MAX_PROTO_DATA_DEPTH } from "./free-json.js";
import type { JsonObject, JsonValue, StoredEvent } from "../core/types.js";
import { messageFromJson } from "./json.js";

/** Data as a JSON object (for google.protobuf.Struct fields): objects as they are, else {"value": data}. */
export function asObject(data: JsonValue | undefined): JsonObject {
  if (data === undefined) return {};
  if (data !== null && typeof data === "object" && jsonDepth(data) > MAX_PROTO_DATA_DEPTH) return { data_json: JSON.stringify(data) };
  return data !== null && typeof data === "object" && !Array.isArray(data) ? data : { value: data };
}

/** The TerminalUse content of an event: its own, else mapped from its data (see the module comment). */
export function contentOf(e: StoredEvent): Content {
  const c = e.extra?.["content"];
  if (c !== undefined) {
    try {
      return messageFromJson(ContentSchema, c);
    } catch {
      // Not TerminalUse's shape (written by another surface): mapped from the data below.
    }
  }
  return typeof e.data === "string"
    ? create(ContentSchema, { part: { case: "text", value: { text: e.data } } })
    : create(ContentSchema, { part: { case: "data", value: { data: asObject(e.data) } } });
}
