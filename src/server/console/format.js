// How the console shows things: stream kinds, events in their API form, one-line previews, times,
// ages, rates and byte dumps. Pure functions (no DOM, no network).

export const KINDS = { topic: "STREAM_KIND_TOPIC", execution: "STREAM_KIND_EXECUTION", task: "STREAM_KIND_TASK", durable: "STREAM_KIND_DURABLE" };

export const kindOf = (pb) => Object.keys(KINDS).find((k) => KINDS[k] === pb) ?? String(pb);

/**
 * A TerminalUse content part as TerminalUse's API writes it ({"type": "text", "text": …}), from
 * the protobuf JSON of events.v1.Content ({"text": {"text": …}}).
 */
export function apiContent(c) {
  if (!c || typeof c !== "object") return c;
  if (c.text) return { type: "text", text: c.text.text ?? "" };
  if (c.data) return { type: "data", data: c.data.data ?? {} };
  return c;
}

const DIALECT_FIELDS = { executionId: "execution_id", rootExecutionId: "root_execution_id", attemptNumber: "attempt_number", waitGroupInstanceId: "wait_group_instance_id", idempotencyKey: "idempotency_key", timestamp: "timestamp", expireAt: "expire_at" };

/** An events.v1.Event (protobuf JSON) as the console shows and copies it: API field names, content in its API form. */
export function eventView(e) {
  const v = { sequence: Number(e.sequence), id: e.id, event_type: e.eventType ?? "", created_at: e.createdAt };
  if (e.content) v.content = apiContent(e.content);
  else if (e.payload !== undefined) v.payload_base64 = e.payload;
  else v.data = e.data ?? null;
  if (e.metadata && Object.keys(e.metadata).length > 0) v.metadata = e.metadata;
  for (const [from, to] of Object.entries(DIALECT_FIELDS)) if (e[from] !== undefined) v[to] = e[from];
  return v;
}

/** One line of at most `max` characters. */
export function oneLine(text, max = 240) {
  const line = String(text).replace(/\s+/g, " ");
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** The part of an event view worth previewing: its content, data or payload. */
export function previewOf(view) {
  if (view.content !== undefined) return oneLine(JSON.stringify(view.content));
  if (view.payload_base64 !== undefined) return `${atob(view.payload_base64).length} bytes`;
  return oneLine(JSON.stringify(view.data));
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** Local wall-clock time with milliseconds: 14:03:07.512. */
export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "now", "12 s", "3 min", "5 h", "2 d" ago. */
export function age(ms) {
  if (!Number.isFinite(ms)) return "–";
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 1) return "now";
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** Events per second: "12/s", "0.5/s", "0/s"; "–" before there are two readings. */
export function rate(perSecond) {
  if (perSecond === undefined || !Number.isFinite(perSecond)) return "–";
  if (perSecond === 0) return "0/s";
  return perSecond >= 10 ? `${Math.round(perSecond)}/s` : `${perSecond.toFixed(1)}/s`;
}

/**
 * An instant typed by an operator: anything Date.parse reads (ISO 8601, RFC 2822), or a time of
 * day ("14:03", "14:03:07.5") meaning today, local time. Undefined when unreadable.
 */
export function parseInstant(text) {
  const t = text.trim();
  const m = /^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(t);
  if (m) {
    const d = new Date();
    d.setHours(Number(m[1]), Number(m[2]), Number(m[3] ?? 0), Number((m[4] ?? "0").padEnd(3, "0")));
    return d;
  }
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}

/** A hex dump: offset, 16 bytes in hex, the printable ASCII; at most `max` bytes. */
export function hexdump(bytes, max = 4096) {
  const lines = [];
  for (let i = 0; i < Math.min(bytes.length, max); i += 16) {
    const row = bytes.subarray(i, Math.min(i + 16, bytes.length));
    const hex = [...row].map((b) => pad(b.toString(16))).join(" ");
    const ascii = [...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${pad(i.toString(16), 8)}  ${hex.padEnd(47)}  |${ascii}|`);
  }
  if (bytes.length > max) lines.push(`… ${bytes.length - max} more bytes`);
  return lines.join("\n");
}

/** The bytes as UTF-8 text, or undefined when they are not valid UTF-8. */
export function utf8(bytes) {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
