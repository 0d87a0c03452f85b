/**
 * TerminalUse's task stream carries stream parts, not events: its SDKs decode every SSE `data:` as
 * one member of the `TextStreamPart` union (Vercel AI SDK v5 shapes, discriminated by `type`) and
 * drop anything else. This module maps one stored event, from any surface, to the parts it
 * streams as:
 *
 * 1. A TerminalUse text event (`content: {type: "text", text}`) is one text block:
 *    `text-start`, `text-delta` (the whole text), `text-end`, all with `id` = the event id.
 * 2. A value that already is a stream part is streamed as it is: a TerminalUse data event whose
 *    `data` is one, or any other event whose `data` is one (a `type` naming a part plus the
 *    part's required fields, typed as the SDK requires). For events without a `type` in their
 *    data, the event type stands in for it: `event_type: "tool-call", data: {toolCallId, ...}`.
 * 3. Anything else is one text block whose text is the data (a string as it is, other JSON
 *    serialised), so no event is invisible to a part-only client.
 *
 * Every part also carries `event: {id, sequence_id, event_type}` (the SDK models keep extra
 * fields), and on SSE the event's sequence is the `id:` of its last part only, so Last-Event-ID
 * never resumes in the middle of an event's parts.
 */
import type { JsonObject, JsonValue, StoredEvent } from "../core/types.js";

type FieldType = "string" | "boolean" | "int" | "object" | "array" | "usage" | "any";
/** A part type's fields the SDK checks: required ones, and optional ones (`?`) when present. */
type PartShape = Record<string, FieldType | `?${FieldType}`>;

const META = { metadata: "?object" } as const;

/** terminaluse 0.35.0, `terminaluse/types/text_stream_part_wrapper.py`. */
export const STREAM_PARTS: Record<string, PartShape> = {
  error: { error: "string" },
  finish: { finishReason: "any", totalUsage: "usage", ...META },
  "finish-step": { finishReason: "any", usage: "usage", ...META },
  "handler-complete": { eventId: "string", success: "boolean", taskId: "string", durationMs: "?int", error: "?string" },
  "reasoning-delta": { id: "string", text: "string", ...META },
  "reasoning-end": { id: "string", ...META },
  "reasoning-start": { id: "string", ...META },
  start: {},
  "start-step": { request: "?object", warnings: "?array", ...META },
  "text-delta": { id: "string", text: "string", ...META },
  "text-end": { id: "string", ...META },
  "text-start": { id: "string", ...META },
  "tool-call": { input: "object", toolCallId: "string", toolName: "string", ...META },
  "tool-input-delta": { delta: "string", id: "string", ...META },
  "tool-input-end": { id: "string", ...META },
  "tool-input-start": { id: "string", toolName: "string", ...META },
  "tool-result": { output: "any", toolCallId: "string", toolName: "string", ...META },
};

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function fits(v: JsonValue | undefined, t: FieldType): boolean {
  switch (t) {
    case "string":
      return typeof v === "string";
    case "boolean":
      return typeof v === "boolean";
    case "int":
      return typeof v === "number" && Number.isInteger(v);
    case "object":
      return isObject(v);
    case "array":
      return Array.isArray(v);
    case "usage":
      // StreamUsage: inputTokens and outputTokens required, totalTokens optional, all integers.
      return isObject(v) && fits(v["inputTokens"], "int") && fits(v["outputTokens"], "int") && (v["totalTokens"] === undefined || v["totalTokens"] === null || fits(v["totalTokens"], "int"));
    case "any":
      return v !== undefined;
  }
}

/** The value as a stream part the SDK accepts, or undefined. */
export function asStreamPart(v: JsonValue | undefined): JsonObject | undefined {
  if (!isObject(v) || typeof v["type"] !== "string") return undefined;
  const shape = STREAM_PARTS[v["type"]];
  if (!shape) return undefined;
  for (const [field, spec] of Object.entries(shape)) {
    const optional = spec.startsWith("?");
    const value = v[field];
    if (optional && (value === undefined || value === null)) continue;
    if (!fits(value, (optional ? spec.slice(1) : spec) as FieldType)) return undefined;
  }
  return v;
}

function textBlock(id: string, text: string): JsonObject[] {
  return [
    { type: "text-start", id },
    { type: "text-delta", id, text },
    { type: "text-end", id },
  ];
}

/** The stream parts of one stored event (see the module comment for the mapping). */
export function streamPartsOf(e: StoredEvent): JsonObject[] {
  const content = e.extra?.["content"];
  let parts: JsonObject[];
  if (isObject(content) && content["type"] === "text") {
    parts = textBlock(e.id, typeof content["text"] === "string" ? content["text"] : "");
  } else {
    const value = isObject(content) && content["type"] === "data" ? content["data"] : e.data;
    const typed = isObject(value) && value["type"] === undefined && STREAM_PARTS[e.eventType] ? { type: e.eventType, ...value } : value;
    const part = asStreamPart(typed);
    parts = part ? [part] : textBlock(e.id, typeof value === "string" ? value : JSON.stringify(value ?? null));
  }
  const event: JsonObject = { id: e.id, sequence_id: e.seq, event_type: e.eventType };
  return parts.map((p) => (p["event"] === undefined ? { ...p, event } : p));
}
