// The console's calls to the service: Connect unary and server-streaming calls with JSON messages
// (read with fetch), and the Durable Streams protocol on /v1/stream/{name} (HEAD, POST, GET with
// live=sse). Credentials: the API key kept in localStorage, else the project header (AUTH=off).

/** The service answered 401: the console asks for an API key. */
export class Unauthenticated extends Error {}

const KEY = "agent-events.key";
const PROJECT = "agent-events.project";

export const credentials = {
  get key() {
    return localStorage.getItem(KEY) ?? "";
  },
  set key(v) {
    if (v) localStorage.setItem(KEY, v);
    else localStorage.removeItem(KEY);
  },
  get project() {
    return localStorage.getItem(PROJECT) ?? "default";
  },
  set project(v) {
    localStorage.setItem(PROJECT, v || "default");
  },
};

function headers(extra = {}) {
  const h = { ...extra };
  if (credentials.key) h.authorization = `Bearer ${credentials.key}`;
  else h["x-project-id"] = credentials.project;
  return h;
}

async function failure(res) {
  const text = await res.text().catch(() => "");
  let msg = text;
  try {
    const j = JSON.parse(text);
    msg = j.message ?? j.detail ?? j.error ?? text;
    if (typeof msg !== "string") msg = JSON.stringify(msg);
    if (j.code) msg = `${j.code}: ${msg}`;
  } catch {
    // not JSON: the text as it is
  }
  if (res.status === 401) return new Unauthenticated(msg || "an API key is required");
  return new Error(`HTTP ${res.status}${msg ? ` ${msg}` : ""}`);
}

/** A unary Connect call, JSON in and out. */
export async function unary(service, method, body) {
  const res = await fetch(`/${service}/${method}`, { method: "POST", headers: headers({ "content-type": "application/json", "connect-protocol-version": "1" }), body: JSON.stringify(body) });
  if (!res.ok) throw await failure(res);
  return res.json();
}

function envelope(json) {
  const bytes = new TextEncoder().encode(JSON.stringify(json));
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

/** A server-streaming Connect call: yields each response message until the stream ends. */
export async function* serverStream(service, method, body, signal) {
  const res = await fetch(`/${service}/${method}`, { method: "POST", headers: headers({ "content-type": "application/connect+json", "connect-protocol-version": "1" }), body: envelope(body), signal });
  if (!res.ok) throw await failure(res);
  const reader = res.body.getReader();
  let buf = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const joined = new Uint8Array(buf.length + value.length);
    joined.set(buf);
    joined.set(value, buf.length);
    buf = joined;
    while (buf.length >= 5) {
      const flags = buf[0];
      const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
      if (buf.length < 5 + len) break;
      const msg = JSON.parse(new TextDecoder().decode(buf.subarray(5, 5 + len)));
      buf = buf.slice(5 + len);
      if (flags & 2) {
        if (msg.error?.code === "unauthenticated") throw new Unauthenticated(msg.error.message ?? "");
        if (msg.error) throw new Error(`${msg.error.code}: ${msg.error.message ?? ""}`);
        return;
      }
      yield msg;
    }
  }
}

const durableUrl = (name) => `/v1/stream/${encodeURIComponent(name)}`;

/** A Durable Stream's content type and tail offset (HEAD). */
export async function durableHead(name) {
  const res = await fetch(durableUrl(name), { method: "HEAD", headers: headers() });
  if (!res.ok) throw res.status === 401 ? new Unauthenticated("an API key is required") : new Error(res.status === 404 ? "no such Durable Stream (deleted?)" : `HTTP ${res.status}`);
  return { contentType: res.headers.get("content-type") ?? "application/octet-stream", nextOffset: res.headers.get("stream-next-offset") ?? "", closed: res.headers.get("stream-closed") === "true" };
}

/** Appends to a Durable Stream (POST with the stream's content type). */
export async function durableAppend(name, contentType, body) {
  const res = await fetch(durableUrl(name), { method: "POST", headers: headers({ "content-type": contentType }), body });
  if (!res.ok) throw await failure(res);
  return res.headers.get("stream-next-offset") ?? "";
}

/**
 * Reads a Durable Stream from `offset` and follows it (live=sse): yields {data: string, base64}
 * for each data event and {control} for each control event (streamNextOffset, upToDate, ...).
 */
export async function* durableSse(name, offset, signal) {
  const res = await fetch(`${durableUrl(name)}?offset=${encodeURIComponent(offset)}&live=sse`, { headers: headers(), signal });
  if (!res.ok) throw await failure(res);
  const base64 = res.headers.get("stream-sse-data-encoding") === "base64";
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    text += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let v = colon < 0 ? "" : line.slice(colon + 1);
        if (v.startsWith(" ")) v = v.slice(1);
        if (field === "event") event = v;
        else if (field === "data") data.push(v);
      }
      if (event === "data") yield { data: data.join("\n"), base64 };
      else if (event === "control") yield { control: JSON.parse(data.join("\n")) };
    }
  }
}
