/**
 * The Durable Streams wire vocabulary: offsets, cursors, header values and content types. Pure
 * functions, no I/O (unit-tested in test/unit/durable-wire.test.ts).
 */
import type { DurableMeta } from "../../store/durable.js";

/**
 * An offset is `<incarnation>_<value>`, both 16 decimal digits: fixed width, so byte-wise order
 * is position order within a stream (the protocol's "lexicographically sortable"); URL-safe; never
 * `-1` or `now`. The position is the log sequence minus the incarnation's base, so a fork (which
 * copies its source's events to the same positions) shares its source's positions, and the
 * incarnation makes a re-created stream a new stream that old offsets do not address.
 *
 * The value is position × the stream's offset units (DurableMeta.offsetUnits): OFFSET_UNITS for
 * streams created since offsets became byte-position-like, 1 for streams created before (their
 * offsets stay what they were, so every offset already issued stays valid). With units > 1 a
 * message spans the values ((p-1)·units, p·units], as a message spans its bytes in the reference
 * server: a client that adds 1 to an offset (y-durable-streams resumes after a snapshot at
 * "offset + 1") lands inside the next message, and reading from inside a message returns that
 * message whole, exactly as the reference does. See docs/durable-streams.md.
 */
export const OFFSET = /^(\d{16})_(\d{16})$/;
const WIDTH = 16;
/** Offset values per message of streams created from now on. */
export const OFFSET_UNITS = 1000;

export function formatOffset(inc: string, position: number, units = 1): string {
  return `${inc}_${String(position * units).padStart(WIDTH, "0")}`;
}

export function newIncarnation(avoid?: string): string {
  for (;;) {
    const inc = `${String(Date.now()).padStart(13, "0")}${String(Math.floor(Math.random() * 1000)).padStart(3, "0")}`;
    if (inc !== avoid) return inc;
  }
}

export type ParsedOffset = { kind: "start" } | { kind: "now" } | { kind: "at"; position: number };

export class OffsetError extends Error {}

/**
 * Resolves an offset of a read (or a fork) against a stream: `-1` (start), `now` (tail), or a
 * position (a value inside a message resolves to the position before it: the read returns it). An offset of another incarnation is refused, except those a fork inherited (up to its
 * fork point) and the all-zero offset, which is the start of every stream (clients, and the
 * conformance suite, use it as such).
 */
export function parseOffset(raw: string, meta: Pick<DurableMeta, "inc" | "ancestors" | "offsetUnits">): ParsedOffset {
  if (raw === "-1") return { kind: "start" };
  if (raw === "now") return { kind: "now" };
  const m = OFFSET.exec(raw);
  if (!m) throw new OffsetError("malformed offset");
  const value = Number(m[2]);
  if (!Number.isSafeInteger(value)) throw new OffsetError("offset out of range");
  const position = Math.floor(value / (meta.offsetUnits ?? 1));
  if (position === 0) return { kind: "start" };
  if (m[1] === meta.inc) return { kind: "at", position };
  const inherited = meta.ancestors.find((a) => a.inc === m[1]);
  if (inherited && position <= inherited.upTo) return { kind: "at", position };
  throw new OffsetError("the offset does not belong to this stream (it may be an offset of a deleted stream of the same name)");
}

/** The protocol's strict non-negative integer: no sign, no leading zeros, no fraction or exponent. */
export function strictUint(v: string | undefined): number | undefined {
  if (v === undefined || !/^(0|[1-9]\d*)$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The media type, lower-cased, without parameters. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase();
}

export function isJson(contentType: string): boolean {
  return mediaType(contentType) === "application/json";
}

/** SSE carries text for text/* and JSON, base64 for everything else. */
export function isTextual(contentType: string): boolean {
  const t = mediaType(contentType);
  return t.startsWith("text/") || t === "application/json";
}

/** A syntactically valid `type/subtype` (anything else on PUT means the default, as the reference server does). */
export function validContentType(v: string | undefined): boolean {
  return v !== undefined && /^[\w.+-]+\/[\w.+-]+/.test(v.trim());
}

const CURSOR_EPOCH_MS = Date.UTC(2024, 9, 9);
const CURSOR_INTERVAL_S = 20;

/**
 * Stream-Cursor (protocol section 10.1): the number of 20 s intervals since 2024-10-09. When the
 * client echoes a cursor that is not behind, the answer moves ahead of it by 1-3600 s of jitter, so
 * cursors never repeat and a CDN cannot loop on a cached empty response.
 */
export function responseCursor(client: string | null | undefined, nowMs: number): string {
  const current = Math.floor((nowMs - CURSOR_EPOCH_MS) / (CURSOR_INTERVAL_S * 1000));
  const theirs = client ? Number.parseInt(client, 10) : Number.NaN;
  if (!Number.isFinite(theirs) || theirs < current) return String(current);
  const jitterS = 1 + Math.floor(Math.random() * 3600);
  return String(theirs + Math.max(1, Math.ceil(jitterS / CURSOR_INTERVAL_S)));
}

/**
 * SSE `data:` lines for a payload: every CR, LF or CRLF starts a new line, so no payload can forge
 * an event boundary. Written `data:<line>` (what the conformance suite expects byte for byte); a
 * line that starts with a space gets `data: ` instead, because readers strip exactly one leading
 * space and the payload's own must survive.
 */
export function sseData(payload: string): string {
  return payload
    .split(/\r\n|\r|\n/)
    .map((line) => (line.startsWith(" ") ? `data: ${line}` : `data:${line}`))
    .join("\n");
}
