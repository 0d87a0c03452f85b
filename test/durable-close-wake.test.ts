/**
 * A close that lands while a Durable Streams reader is looking at the stream's tail, on every store
 * adapter. The store is wrapped so that the looks at the stream record (head, isClosed, streamInfo)
 * that are in flight when the close lands are answered as a database may answer them: each read
 * from one side of the close, chosen here (the closed flag from after it, everything else from
 * before; or all of it from before), and all of them held until the closing append is done. So the
 * close falls exactly between a reader's "read found nothing more / not closed" and its wait.
 *
 * A reader must then end with every message and the close, and promptly: a close wakes a waiting
 * reader as an append does, with no window in which it is missed until the next periodic look
 * (CLOSE_CHECK_MS, 1 s, in src/api/durable/read.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Store } from "../src/core/store.js";
import type { StoredEvent, StreamId } from "../src/core/types.js";
import type { App } from "../src/server/app.js";
import { DEFAULT_PROJECT } from "../src/api/common.js";
import { storeFactories } from "./support/stores.js";
import { SseReader, startTestServer } from "./support/server.js";

/**
 * Well under CLOSE_CHECK_MS (1 s). A reader that missed the close's wake-up sees it at its next
 * look, at least 500 ms on: a second after its last one, or at the log's idle recheck, which
 * answers from the shared look for 500 ms after it was taken (sharedTail).
 */
const PROMPT_MS = 500;

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

interface Gate {
  /** Resolves once a look at the armed stream's record is in flight (and its "before" answers are read). */
  looking: Promise<void>;
  /** Looks starting from now on are not held (the closing request's own, if any). */
  closing(): void;
  /** Answers the held looks. */
  release(): void;
}

/**
 * Wraps a store: once armed for a stream, the next look(s) at its record are caught and held until
 * release(). Which looks: `fromSeq`, only those made after a read of the stream returned that
 * sequence (the reader has the message there, and looks at the tail next); `idle`, only those not
 * made right after a read of the stream (a live reader's periodic look, not one after a wake-up);
 * neither, the next. `closed`: which side of the close the caught isClosed() answers from; head()
 * and streamInfo() (one read of the record) answer from before.
 */
class Straddle {
  #arm:
    | { key: string; fromSeq: number | undefined; idle: boolean; open: boolean; closedSide: "before" | "after"; closing: boolean; reading: number; looking: Deferred; released: Deferred }
    | undefined;
  /** Streams read since their record was last looked at (the looks of one tick count as one). */
  readonly #readSinceLook = new Set<string>();

  arm(key: string, opts: { fromSeq?: number; idle?: boolean; closed: "before" | "after" }): Gate {
    const a = { key, fromSeq: opts.fromSeq, idle: opts.idle === true, open: opts.fromSeq === undefined, closedSide: opts.closed, closing: false, reading: 0, looking: deferred(), released: deferred() };
    this.#arm = a;
    return {
      looking: a.looking.promise,
      closing: () => void (a.closing = true),
      release: () => {
        if (this.#arm === a) this.#arm = undefined;
        a.released.resolve();
      },
    };
  }

  wrap(inner: Store): Store {
    const straddle = this;
    const caught = (s: StreamId) => {
      const a = straddle.#arm;
      const afterRead = straddle.#readSinceLook.has(s.key);
      if (afterRead) setImmediate(() => straddle.#readSinceLook.delete(s.key));
      return a && a.open && !a.closing && s.key === a.key && !(a.idle && afterRead) ? a : undefined;
    };
    /** A caught look: `before` is read now, `after` once released; the answer comes once released. */
    async function hold<T>(a: NonNullable<ReturnType<typeof caught>>, before: (() => Promise<T>) | undefined, after: () => Promise<T>): Promise<T> {
      a.reading++;
      let value: T | undefined;
      try {
        if (before) value = await before();
        // Looks made side by side (in the same tick) are all caught before the close may land.
        else await new Promise((r) => setImmediate(r));
      } finally {
        // Every look caught in this round has its "before" answer: the close may land now.
        if (--a.reading === 0) a.looking.resolve();
      }
      await a.released.promise;
      return before ? (value as T) : after();
    }
    const hooks: Partial<Record<keyof Store, unknown>> = {
      head: (s: StreamId) => {
        const a = caught(s);
        return a ? hold(a, () => inner.head(s), () => inner.head(s)) : inner.head(s);
      },
      streamInfo: (s: StreamId) => {
        const a = caught(s);
        return a ? hold(a, () => inner.streamInfo(s), () => inner.streamInfo(s)) : inner.streamInfo(s);
      },
      isClosed: (s: StreamId) => {
        const a = caught(s);
        if (!a) return inner.isClosed(s);
        return hold(a, a.closedSide === "before" ? () => inner.isClosed(s) : undefined, () => inner.isClosed(s));
      },
      read: async (s: StreamId, cursor: number, limit: number): Promise<StoredEvent[]> => {
        const docs = await inner.read(s, cursor, limit);
        straddle.#readSinceLook.add(s.key);
        const a = straddle.#arm;
        if (a && !a.open && s.key === a.key && docs.some((d) => d.seq >= a.fromSeq!)) a.open = true;
        return docs;
      },
    };
    return new Proxy(inner, {
      get(target, prop) {
        if (typeof prop === "string" && prop in hooks) return hooks[prop as keyof Store];
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  }
}

describe.each(storeFactories)("Durable Streams: a close while a reader looks at the tail ($name store)", (factory) => {
  const straddle = new Straddle();
  let app: App;
  let n = 0;
  beforeAll(async () => {
    app = await startTestServer({ store: straddle.wrap(await factory.make()) });
  });
  afterAll(async () => {
    await app.close();
    await factory.teardown();
  });

  const url = (name: string, query = ""): string => `${app.url}/v1/stream/${name}${query}`;
  const json = { "content-type": "application/json" };
  const id = (name: string): StreamId => ({ project: DEFAULT_PROJECT, kind: "durable", key: name });

  /** A stream holding messages 0..count-1; returns its name and the offset after them. */
  async function streamOf(count: number): Promise<{ name: string; offset: string }> {
    const name = `close-wake-${++n}-${Date.now()}`;
    expect((await fetch(url(name), { method: "PUT", headers: json })).status).toBe(201);
    const r = await fetch(url(name), { method: "POST", headers: json, body: JSON.stringify(Array.from({ length: count }, (_, i) => ({ i }))) });
    expect(r.ok).toBe(true);
    return { name, offset: r.headers.get("stream-next-offset")! };
  }
  /** Appends message `i` (none: a close without a message); `close`: closes the stream with it. */
  async function append(name: string, i: number | undefined, close = false): Promise<Response> {
    const r = await fetch(url(name), { method: "POST", headers: { ...json, ...(close ? { "stream-closed": "true" } : {}) }, ...(i === undefined ? {} : { body: JSON.stringify({ i }) }) });
    expect(r.ok).toBe(true);
    return r;
  }
  /** The next sequence the log hands out for the stream (what the next append's first message gets). */
  async function nextSeq(name: string): Promise<number> {
    return (await app.store.head(id(name))) + 1;
  }
  /** Holds the caught look, closes the stream meanwhile (with the final message `i`, if any), releases; the close's offset and when it was released. */
  async function closeDuring(gate: Gate, name: string, i: number | undefined): Promise<{ finalOffset: string; releasedAt: number }> {
    await within(gate.looking, 10_000, "a reader's look at the tail");
    gate.closing();
    const closed = await append(name, i, true);
    expect(closed.headers.get("stream-closed")).toBe("true");
    const releasedAt = Date.now();
    gate.release();
    return { finalOffset: closed.headers.get("stream-next-offset")!, releasedAt };
  }

  const dataOf = (r: SseReader) => r.messages.filter((m) => m.event === "data").flatMap((m) => (JSON.parse(m.data) as { i: number }[]).map((x) => x.i));
  const controlsOf = (r: SseReader) => r.messages.filter((m) => m.event === "control").map((m) => JSON.parse(m.data) as { streamNextOffset: string; streamClosed?: boolean });
  const upTo = (count: number) => Array.from({ length: count }, (_, i) => i);

  it("SSE: the final append lands between a live reader's read of the tail and its look at the closed flag", async () => {
    const { name } = await streamOf(10);
    const sse = new SseReader(url(name, "?offset=-1&live=sse"));
    try {
      await sse.until((r) => dataOf(r).length === 10);
      // The reader is woken by message 10, reads it, then looks at the tail: the close lands there.
      const gate = straddle.arm(name, { fromSeq: await nextSeq(name), closed: "after" });
      await append(name, 10);
      const { finalOffset } = await closeDuring(gate, name, 11);
      await within(sse.finished(), 10_000, "the SSE response to end");
      expect(dataOf(sse)).toEqual(upTo(12));
      const controls = controlsOf(sse);
      // Told "closed" once, last, at the final offset: never before it held message 11.
      expect(controls.filter((c) => c.streamClosed === true)).toEqual([expect.objectContaining({ streamNextOffset: finalOffset, streamClosed: true })]);
      expect(controls[controls.length - 1]!.streamClosed).toBe(true);
      expect(sse.endedByServer).toBe(true);
    } finally {
      await sse.close();
    }
  });

  it("SSE: a close that lands while an idle live reader's periodic look is in flight wakes it at once", async () => {
    const { name } = await streamOf(10);
    const sse = new SseReader(url(name, "?offset=-1&live=sse"));
    try {
      await sse.until((r) => dataOf(r).length === 10);
      // Idle at the tail: its next look at the record is the periodic one (about a second on);
      // all of that look is answered from before the close. A close without a message: no insert
      // the store's watcher could report (on MongoDB it reports an append made here too, when
      // the log's tail cache does not hold it), only the close's own wake-up.
      const gate = straddle.arm(name, { idle: true, closed: "before" });
      const { finalOffset, releasedAt } = await closeDuring(gate, name, undefined);
      await within(sse.finished(), 10_000, "the SSE response to end");
      const took = Date.now() - releasedAt;
      expect(dataOf(sse)).toEqual(upTo(10));
      expect(controlsOf(sse).filter((c) => c.streamClosed === true)).toEqual([expect.objectContaining({ streamNextOffset: finalOffset, streamClosed: true })]);
      expect(sse.endedByServer).toBe(true);
      expect(took).toBeLessThan(PROMPT_MS);
    } finally {
      await sse.close();
    }
  });

  it("long-poll: the final append lands while a woken long-poll looks at the tail for its answer", async () => {
    const { name, offset } = await streamOf(10);
    const gate = straddle.arm(name, { fromSeq: await nextSeq(name), closed: "after" });
    const first = fetch(url(name, `?offset=${offset}&live=long-poll`));
    await within(
      (async () => {
        while (app.log.followers(id(name)) === 0) await new Promise((r) => setTimeout(r, 5));
      })(),
      10_000,
      "the long-poll to wait",
    );
    await append(name, 10);
    const { finalOffset } = await closeDuring(gate, name, 11);
    // Long-poll as a client does, until told closed.
    const got: number[] = [];
    let res = await first;
    for (let rounds = 0; ; rounds++) {
      expect(rounds).toBeLessThan(5);
      if (res.status === 200) got.push(...((await res.json()) as { i: number }[]).map((x) => x.i));
      if (res.headers.get("stream-closed") === "true") break;
      res = await fetch(url(name, `?offset=${res.headers.get("stream-next-offset")}&live=long-poll`));
    }
    expect(got).toEqual([10, 11]);
    expect(res.headers.get("stream-next-offset")).toBe(finalOffset);
  });

  it("catch-up: the final append lands while a read looks at the tail it answers up to", async () => {
    const { name } = await streamOf(10);
    const gate = straddle.arm(name, { closed: "after" });
    const first = fetch(url(name, "?offset=-1"));
    const { finalOffset } = await closeDuring(gate, name, 10);
    const got: number[] = [];
    let res = await first;
    for (let rounds = 0; ; rounds++) {
      expect(rounds).toBeLessThan(5);
      expect(res.status).toBe(200);
      got.push(...((await res.json()) as { i: number }[]).map((x) => x.i));
      if (res.headers.get("stream-closed") === "true") break;
      res = await fetch(url(name, `?offset=${res.headers.get("stream-next-offset")}`));
    }
    expect(got).toEqual(upTo(11));
    expect(res.headers.get("stream-next-offset")).toBe(finalOffset);
  });
});
