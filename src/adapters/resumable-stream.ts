/**
 * A backend for Vercel's `resumable-stream` (its generic entry, `resumable-stream/generic`) on this
 * service's Durable Streams API, in place of Redis: an app that resumes AI answers with
 * `createResumableStreamContext({ publisher, subscriber })` points the two at this service and
 * needs no Redis. Imported as `agent-events/resumable-stream`; talks to the service over HTTP only
 * (`/v1/stream/...`), so it runs wherever the app runs (Next.js route handlers, workers, Node).
 *
 * What the library needs, and how each maps onto Durable Streams (no server state beyond streams):
 * - publish/subscribe on a channel: one JSON stream per channel, `<prefix>/channel/<channel>`,
 *   with a sliding `Stream-TTL`. `subscribe` creates the stream if missing (PUT is idempotent),
 *   takes its tail offset, and only then returns, so every message published after it returns
 *   is delivered (the library relies on this: it subscribes before announcing itself). Messages
 *   come over SSE from that offset, in publish order. `publish` appends one message; a channel
 *   nobody ever subscribed to does not exist, and publishing to it reaches nobody (0), as in Redis.
 * - `set` (with `EX`), `get`, `incr` on a key: one JSON stream per key, `<prefix>/key/<key>`,
 *   holding the key's operations in the order the service stored them:
 *   `{"op":"set","value","expiresAt"}` and `{"op":"incr","id"}`. The key's value is the fold of
 *   that log, which every instance computes the same way, so `incr` is atomic across instances
 *   without a compare-and-set (an `incr` keeps the key's expiry, as in Redis): an instance appends its `incr` (with a fresh id), reads the log
 *   from the start up to its own entry and returns the value there. As in Redis, `incr` of a
 *   missing (or expired) key gives 1, and `incr` of a value that is not an integer fails with
 *   "ERR value is not an integer or out of range" (the library reads a finished stream's "DONE"
 *   from that error) and changes nothing. Expiry (`EX`) is kept in the `set` entry and checked
 *   when folding; the key's stream lives at least that long (its `Stream-TTL`, sliding).
 * A resumable stream's key sees one `set`, one `incr` per reader and a final `set`, so these logs
 * stay a few entries long.
 */
import { randomUUID } from "node:crypto";
import { stream as readStream, type StreamResponse } from "@durable-streams/client";

/** resumable-stream's `Publisher` (resumable-stream/generic), structurally. */
export interface ResumableStreamPublisher {
  connect: () => Promise<unknown>;
  publish: (channel: string, message: string) => Promise<number>;
  set: (key: string, value: string, options?: { EX?: number }) => Promise<"OK">;
  get: (key: string) => Promise<string | null>;
  incr: (key: string) => Promise<number>;
}

/** resumable-stream's `Subscriber` (resumable-stream/generic), structurally. */
export interface ResumableStreamSubscriber {
  connect: () => Promise<unknown>;
  subscribe: (channel: string, callback: (message: string) => void) => Promise<void>;
  unsubscribe: (channel: string) => Promise<void>;
}

export interface DurableStreamsBackendOptions {
  /** The service's base URL, e.g. `https://events.example.com` (streams live under `/v1/stream/`). */
  url: string;
  /** Headers for every request, e.g. `{ Authorization: "Bearer <key>" }`; a function is called per request. */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /** Stream name prefix for this app's channels and keys. Default `resumable-stream`. */
  prefix?: string;
  /** Sliding lifetime of channel streams, and the least lifetime of key streams, in seconds. Default 86400 (the library's own expiry). */
  ttlSeconds?: number;
  /** fetch to use (tests, custom agents). Default: the global fetch. */
  fetch?: typeof fetch;
}

interface SetEntry {
  op: "set";
  value: string;
  /** Epoch milliseconds, or null: never. */
  expiresAt: number | null;
}
interface IncrEntry {
  op: "incr";
  id: string;
  /** Epoch milliseconds when it was written: a value that had expired by then counts as missing. */
  at: number;
}
type KeyEntry = SetEntry | IncrEntry;

const NOT_AN_INTEGER = "ERR value is not an integer or out of range";

class DurableStreamsHttp {
  readonly #base: string;
  readonly #prefix: string;
  readonly ttlSeconds: number;
  readonly #headers: DurableStreamsBackendOptions["headers"];
  readonly fetch: typeof fetch;

  constructor(opts: DurableStreamsBackendOptions) {
    if (!/^https?:\/\//.test(opts.url)) throw new TypeError(`url must be an http(s) base URL, got ${JSON.stringify(opts.url)}`);
    this.#base = opts.url.replace(/\/+$/, "");
    this.#prefix = opts.prefix ?? "resumable-stream";
    this.ttlSeconds = opts.ttlSeconds ?? 86_400;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) throw new TypeError("ttlSeconds must be a positive integer");
    this.#headers = opts.headers;
    this.fetch = opts.fetch ?? ((...args) => globalThis.fetch(...args));
  }

  /** The stream URL for a channel or key (each segment URL-encoded: Redis names may hold anything). */
  url(kind: "channel" | "key", name: string): string {
    return `${this.#base}/v1/stream/${encodeURIComponent(this.#prefix)}/${kind}/${encodeURIComponent(name)}`;
  }

  async headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const h = typeof this.#headers === "function" ? await this.#headers() : (this.#headers ?? {});
    return { ...h, ...extra };
  }

  /** Creates the JSON stream if missing; returns its tail offset. An existing stream with another TTL is used as it is. */
  async ensure(url: string, ttlSeconds: number): Promise<string> {
    const res = await this.fetch(url, { method: "PUT", headers: await this.headers({ "content-type": "application/json", "stream-ttl": String(ttlSeconds) }) });
    await res.body?.cancel();
    if (res.ok) {
      const offset = res.headers.get("stream-next-offset");
      if (offset) return offset;
    } else if (res.status !== 409) {
      throw await httpError("create", url, res);
    }
    const head = await this.fetch(url, { method: "HEAD", headers: await this.headers() });
    const offset = head.headers.get("stream-next-offset");
    if (!head.ok || !offset) throw await httpError("head", url, head);
    return offset;
  }

  /** Appends one JSON message; returns the offset after it, or undefined when the stream does not exist. */
  async append(url: string, message: unknown): Promise<string | undefined> {
    const res = await this.fetch(url, { method: "POST", headers: await this.headers({ "content-type": "application/json" }), body: JSON.stringify([message]) });
    await res.body?.cancel();
    if (res.status === 404) return undefined;
    if (!res.ok) throw await httpError("append", url, res);
    return res.headers.get("stream-next-offset") ?? "";
  }

  /** Reads the stream's messages from the start (catch-up, to its tail); [] when it does not exist. */
  async readAll<T>(url: string): Promise<T[]> {
    try {
      const res = await readStream<T>({ url, offset: "-1", live: false, json: true, headers: await this.headers(), fetch: this.fetch, warnOnHttp: false });
      return await res.json();
    } catch (err) {
      if ((err as { status?: number }).status === 404) return [];
      throw err;
    }
  }
}

async function httpError(what: string, url: string, res: Response): Promise<Error> {
  const text = await res.text().catch(() => "");
  return new Error(`Durable Streams ${what} ${url}: HTTP ${res.status}${text ? `: ${text.slice(0, 300)}` : ""}`);
}

/** The value a key's log folds to just after entry `upTo` (inclusive; the whole log when absent). */
function fold(entries: KeyEntry[], now: number, upTo?: string): { value: string | null; error?: string } {
  let value: string | null = null;
  let expiresAt: number | null = null;
  for (const e of entries) {
    if (e.op === "incr" && expiresAt !== null && expiresAt <= e.at) value = expiresAt = null;
    let error: string | undefined;
    if (e.op === "set") {
      value = e.value;
      expiresAt = e.expiresAt;
    } else if (value === null) {
      value = "1";
    } else if (/^-?\d+$/.test(value) && Number.isSafeInteger(Number(value) + 1)) {
      value = String(Number(value) + 1);
    } else {
      error = NOT_AN_INTEGER;
    }
    if (e.op === "incr" && e.id === upTo) return { value, error };
  }
  if (expiresAt !== null && expiresAt <= now) value = null;
  if (upTo !== undefined) throw new Error(`incr ${upTo} not found in the key's log`);
  return { value };
}

/** The publisher half: `publish`, and the key-value operations `set`, `get`, `incr`. */
export function createPublisher(opts: DurableStreamsBackendOptions): ResumableStreamPublisher {
  const http = new DurableStreamsHttp(opts);
  const keyStream = async (key: string, ttlSeconds: number): Promise<string> => {
    const url = http.url("key", key);
    await http.ensure(url, Math.max(ttlSeconds, http.ttlSeconds));
    return url;
  };
  return {
    connect: async () => undefined,
    async publish(channel, message) {
      return (await http.append(http.url("channel", channel), message)) === undefined ? 0 : 1;
    },
    async set(key, value, options) {
      const ex = options?.EX;
      if (ex !== undefined && (!Number.isInteger(ex) || ex < 1)) throw new Error("ERR invalid expire time in 'set' command");
      const url = await keyStream(key, ex ?? http.ttlSeconds);
      const entry: SetEntry = { op: "set", value: String(value), expiresAt: ex === undefined ? null : Date.now() + ex * 1000 };
      if ((await http.append(url, entry)) === undefined) throw new Error(`Durable Streams key stream ${url} vanished`);
      return "OK";
    },
    async get(key) {
      return fold(await http.readAll<KeyEntry>(http.url("key", key)), Date.now()).value;
    },
    async incr(key) {
      const url = await keyStream(key, http.ttlSeconds);
      const id = randomUUID();
      if ((await http.append(url, { op: "incr", id, at: Date.now() } satisfies IncrEntry)) === undefined) throw new Error(`Durable Streams key stream ${url} vanished`);
      const { value, error } = fold(await http.readAll<KeyEntry>(url), Date.now(), id);
      if (error) throw new Error(error);
      return Number(value);
    },
  };
}

/** The subscriber half: one live SSE read per subscribed channel. */
export function createSubscriber(opts: DurableStreamsBackendOptions): ResumableStreamSubscriber {
  const http = new DurableStreamsHttp(opts);
  const live = new Map<string, { abort: AbortController; response?: StreamResponse<string> }>();
  const stop = (channel: string): void => {
    const sub = live.get(channel);
    if (!sub) return;
    live.delete(channel);
    sub.abort.abort();
    sub.response?.cancel();
  };
  return {
    connect: async () => undefined,
    async subscribe(channel, callback) {
      stop(channel);
      const sub: { abort: AbortController; response?: StreamResponse<string> } = { abort: new AbortController() };
      live.set(channel, sub);
      const url = http.url("channel", channel);
      // The tail as of now: everything published after subscribe() returns is read from here.
      const offset = await http.ensure(url, http.ttlSeconds);
      const response = await readStream<string>({ url, offset, live: "sse", json: true, headers: await http.headers(), fetch: http.fetch, signal: sub.abort.signal, warnOnHttp: false });
      if (live.get(channel) !== sub) {
        response.cancel();
        return;
      }
      sub.response = response;
      response.subscribeJson((batch) => {
        if (live.get(channel) !== sub) return;
        for (const message of batch.items) callback(message);
      });
      response.closed.catch(() => {
        // An aborted read (unsubscribe) ends here; a failed one stops delivering, as a dropped Redis connection would.
      });
    },
    async unsubscribe(channel) {
      stop(channel);
    },
  };
}

/** Both halves, for `createResumableStreamContext({ waitUntil, ...createDurableStreamsBackend({ url }) })`. */
export function createDurableStreamsBackend(opts: DurableStreamsBackendOptions): { publisher: ResumableStreamPublisher; subscriber: ResumableStreamSubscriber } {
  return { publisher: createPublisher(opts), subscriber: createSubscriber(opts) };
}
