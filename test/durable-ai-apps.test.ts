/**
 * What the Durable Streams ecosystem's clients need from the server (issue 19), at the protocol
 * level, on both stores: appends bounded by bytes, not by count (a client batches whatever queued
 * up); a catch-up read answered whole in one response, streamed, and aborted (never ended short)
 * when it cannot be completed; offsets a client may add 1 to (y-durable-streams' compaction) and offsets past the tail
 * clamped to it; the producers' keys out of every client's reach; SSE that never ends by age when
 * DURABLE_SSE_MAX_MS=0.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import type { Store } from "../src/core/store.js";
import { MemoryStore } from "../src/store/memory/index.js";
import { loadConfig } from "../src/config.js";
import { client, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const P = { "x-project-id": "ai-apps" };

/** What y-durable-streams 0.2.7 does to resume after a snapshot: +1 on the part after `_`, same width. */
const plusOne = (o: string): string => o.replace(/_(\d+)$/, (_m, n: string) => `_${String(Number(n) + 1).padStart(n.length, "0")}`);

describe.each(storeFactories)("Durable Streams for AI apps ($name store)", (factory) => {
  let app: App;
  let n = 0;
  beforeAll(async () => {
    // Small read pages, so a catch-up of a few hundred KB is many pages streamed as one answer.
    // mongo-java-server stores about one document per millisecond on a busy CI machine, so a
    // 5,000-message append can pass the default 5 s store deadline there; a real MongoDB stores it
    // in one insertMany well within it.
    app = await startTestServer({ store: await factory.make({ operationTimeoutMs: 30_000 }), env: { DURABLE_READ_MAX_BYTES: "4096" } });
  });
  afterAll(async () => {
    await app.close();
    await factory.teardown();
  });
  const url = (name: string, query = "") => `${app.url}/v1/stream/${name}${query}`;
  const put = (name: string, contentType: string) => fetch(url(name), { method: "PUT", headers: { ...P, "content-type": contentType } });
  const post = (name: string, contentType: string, body: string | Uint8Array, headers: Record<string, string> = {}) =>
    fetch(url(name), { method: "POST", headers: { ...P, "content-type": contentType, ...headers }, body });
  const get = (name: string, query: string) => fetch(url(name, query), { headers: P });

  /** Every message from the start, however many requests it takes (the assertion is on values). */
  async function readAll(name: string): Promise<unknown[]> {
    const out: unknown[] = [];
    for (let offset = "-1"; ; ) {
      const r = await get(name, `?offset=${offset}`);
      expect(r.status).toBe(200);
      out.push(...((await r.json()) as unknown[]));
      offset = r.headers.get("stream-next-offset")!;
      if (r.headers.get("stream-up-to-date") === "true") return out;
    }
  }

  it("a JSON-array append of 5,000 messages lands whole, with and without producer headers (bounded by bytes, not MAX_BATCH_EVENTS)", async () => {
    // An IdempotentProducer burst of 5,000 (what the client merges into one POST); 1,500 plain (past MAX_BATCH_EVENTS too).
    for (const [producer, count] of [[true, 5000], [false, 1500]] as const) {
      const name = `burst-${++n}`;
      await put(name, "application/json");
      const before = (await fetch(url(name), { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
      const msgs = Array.from({ length: count }, (_, i) => ({ i, text: `token ${i}` }));
      const headers: Record<string, string> = producer ? { "producer-id": "burst", "producer-epoch": "0", "producer-seq": "0" } : {};
      const r = await post(name, "application/json", JSON.stringify(msgs), headers);
      expect(r.status).toBe(producer ? 200 : 204);
      expect(r.headers.get("stream-next-offset")! > before).toBe(true);
      expect(await readAll(name)).toEqual(msgs);
      if (producer) {
        // The same request again (a retry): acknowledged as a duplicate, nothing appended twice.
        const again = await post(name, "application/json", JSON.stringify(msgs), headers);
        expect(again.status).toBe(204);
        expect((await readAll(name)).length).toBe(count);
      }
    }
  });

  it("a catch-up read answers everything from its offset to the tail in one response, JSON and raw bytes, from the start and from the middle", async () => {
    const json = `catchup-json-${++n}`;
    await put(json, "application/json");
    const first = Array.from({ length: 700 }, (_, i) => ({ i, text: `part one ${i}` }));
    const second = Array.from({ length: 800 }, (_, i) => ({ i, text: `part two ${i}` }));
    const mid = (await post(json, "application/json", JSON.stringify(first))).headers.get("stream-next-offset")!;
    await post(json, "application/json", JSON.stringify(second));
    const tail = (await fetch(url(json), { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
    for (const [from, want] of [["-1", [...first, ...second]], [mid, second]] as const) {
      const r = await get(json, `?offset=${from}`);
      expect(r.status).toBe(200);
      expect(r.headers.get("stream-next-offset")).toBe(tail);
      expect(r.headers.get("stream-up-to-date")).toBe("true");
      expect(await r.json()).toEqual(want);
    }
    const raw = `catchup-raw-${++n}`;
    await put(raw, "application/octet-stream");
    const chunks = Array.from({ length: 40 }, (_, i) => new Uint8Array(1500).fill(i));
    for (const c of chunks) await post(raw, "application/octet-stream", c);
    const r = await get(raw, "?offset=-1");
    expect(Buffer.from(await r.arrayBuffer()).equals(Buffer.concat(chunks))).toBe(true);
    expect(r.headers.get("stream-up-to-date")).toBe("true");
  });

  it("a client cannot take a producer's internal idempotency key: refused on /v1/log and on StreamService.Publish, and the producer's append is stored", async () => {
    const key = "ds-producer:0:0:0:p1";
    // 1. A plain append on a topic's durable view, then the producer's first append there.
    const topic = `victim-${++n}`;
    const plain = await fetch(`${app.url}/v1/log/topic/${topic}`, {
      method: "POST",
      headers: { ...P, "content-type": "application/json" },
      body: JSON.stringify({ type: "evil", data: { x: 1 }, idempotency_key: key }),
    });
    expect(plain.status).toBe(400);
    expect(await plain.text()).toMatch(/idempotency_key may not start with "ds-producer:"/);
    const first = await fetch(`${app.url}/v1/log/topic/${topic}`, {
      method: "POST",
      headers: { ...P, "content-type": "application/json", "producer-id": "p1", "producer-epoch": "0", "producer-seq": "0" },
      body: JSON.stringify({ type: "answer", data: { ok: true } }),
    });
    expect(first.status).toBe(200);
    const view = (await (await fetch(`${app.url}/v1/log/topic/${topic}?offset=-1`, { headers: P })).json()) as { type: string; data: unknown; idempotency_key?: string }[];
    expect(view.map((e) => [e.type, e.data, e.idempotency_key])).toEqual([["answer", { ok: true }, undefined]]);

    // 2. StreamService.Publish into a durable stream, then the producer's first append over HTTP.
    const name = `victim-${++n}`;
    await put(name, "application/json");
    const rpc = client(StreamService, app, "connect");
    const err = await rpc.publish({ stream: { kind: StreamKind.DURABLE, key: name }, events: [{ eventType: "application/json", payload: new TextEncoder().encode("{}"), idempotencyKey: key }] }, { headers: P }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(3); // invalid_argument
    expect(err?.rawMessage).toMatch(/ds-producer:/);
    const append = await post(name, "application/json", JSON.stringify({ answer: 42 }), { "producer-id": "p1", "producer-epoch": "0", "producer-seq": "0" });
    expect(append.status).toBe(200);
    expect(await readAll(name)).toEqual([{ answer: 42 }]);
  });

  it("Stream-Close-Reason: only with a close, printable ASCII, set by the first close and shown wherever the close is", async () => {
    const name = `reason-${++n}`;
    await put(name, "application/json");
    const bad = [
      await post(name, "application/json", "{}", { "stream-close-reason": "no close" }),
      await fetch(url(name), { method: "POST", headers: { ...P, "stream-closed": "true", "stream-close-reason": "x".repeat(257) } }),
    ];
    expect(bad.map((r) => r.status)).toEqual([400, 400]);
    const stop = await fetch(url(name), { method: "POST", headers: { ...P, "stream-closed": "true", "stream-close-reason": "stopped by user" } });
    expect([stop.status, stop.headers.get("stream-close-reason")]).toEqual([204, "stopped by user"]);
    const again = await fetch(url(name), { method: "POST", headers: { ...P, "stream-closed": "true", "stream-close-reason": "something else" } });
    expect([again.status, again.headers.get("stream-close-reason")]).toEqual([204, "stopped by user"]);
    const refused = await post(name, "application/json", "{}");
    expect([refused.status, refused.headers.get("stream-closed"), refused.headers.get("stream-close-reason")]).toEqual([409, "true", "stopped by user"]);
    const read = await get(name, "?offset=-1");
    expect([read.headers.get("stream-closed"), read.headers.get("stream-close-reason")]).toEqual(["true", "stopped by user"]);
    const poll = await get(name, `?offset=${read.headers.get("stream-next-offset")}&live=long-poll`);
    expect([poll.status, poll.headers.get("stream-closed"), poll.headers.get("stream-close-reason")]).toEqual([204, "true", "stopped by user"]);
  });

  it("y-durable-streams' resume at snapshot offset + 1 reads every update after the snapshot, none skipped", async () => {
    const name = `yjs-${++n}`;
    expect((await put(name, "application/octet-stream")).status).toBe(201);
    for (const b of [1, 2, 3]) expect((await post(name, "application/octet-stream", Uint8Array.of(b))).status).toBe(204);
    // The compactor reads to the tail; the snapshot is keyed by the offset it got.
    const snap = await get(name, "?offset=-1");
    expect([...new Uint8Array(await snap.arrayBuffer())]).toEqual([1, 2, 3]);
    const snapshotOffset = snap.headers.get("stream-next-offset")!;
    for (const b of [4, 5]) await post(name, "application/octet-stream", Uint8Array.of(b));
    for (const from of [snapshotOffset, plusOne(snapshotOffset)]) {
      const rest = await get(name, `?offset=${from}`);
      expect(rest.status).toBe(200);
      expect([...new Uint8Array(await rest.arrayBuffer())]).toEqual([4, 5]);
    }
    // Offsets stay monotonic and sortable: + 1 sorts between the snapshot offset and the next one.
    const tail = (await fetch(url(name), { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
    expect([tail, plusOne(snapshotOffset), snapshotOffset].sort()).toEqual([snapshotOffset, plusOne(snapshotOffset), tail]);
  });

  it("an offset beyond the tail reads from the tail: the next offset answered is the tail, not an echo", async () => {
    const name = `clamp-${++n}`;
    await put(name, "application/json");
    await post(name, "application/json", JSON.stringify([{ a: 1 }, { a: 2 }]));
    const tail = (await fetch(url(name), { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
    const beyond = tail.replace(/_(\d+)$/, (_m, d: string) => `_${String(Number(d) * 10 + 12345).padStart(16, "0")}`);
    expect(beyond > tail).toBe(true);
    const r = await get(name, `?offset=${beyond}`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual([]);
    expect(r.headers.get("stream-next-offset")).toBe(tail);
    expect(r.headers.get("stream-up-to-date")).toBe("true");
    // A long-poll from beyond the tail waits at the tail and gets what is appended next.
    const poll = get(name, `?offset=${beyond}&live=long-poll`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await post(name, "application/json", JSON.stringify({ a: 3 }));
    const got = await poll;
    expect(got.status).toBe(200);
    expect(await got.json()).toEqual([{ a: 3 }]);
  });
});

describe("a catch-up answer that cannot be completed is aborted, never ended short (memory store)", () => {
  const P2 = { ...P, "content-type": "application/octet-stream" };

  it("a store error mid-answer aborts the response", async () => {
    const inner = new MemoryStore();
    await inner.init();
    let failAfter = Number.POSITIVE_INFINITY;
    // The store fails its reads once armed (after the first page of the answer was read).
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        if (prop === "read") return async (...args: Parameters<Store["read"]>) => {
          if (failAfter-- <= 0) throw new Error("store read failed (test)");
          return target.read(...args);
        };
        const v = Reflect.get(target, prop, receiver);
        return typeof v === "function" ? v.bind(target) : v;
      },
    }) as Store;
    const app = await startTestServer({ store, env: { DURABLE_READ_MAX_BYTES: "1024" } });
    try {
      await fetch(`${app.url}/v1/stream/cut`, { method: "PUT", headers: P2 });
      for (let i = 0; i < 120; i++) await fetch(`${app.url}/v1/stream/cut`, { method: "POST", headers: P2, body: new Uint8Array(900).fill(i) });
      // About 120 pages (more than a connection buffers, so the first ones are sent); the store fails part-way through.
      failAfter = 80;
      let status = 0;
      const outcome = await fetch(`${app.url}/v1/stream/cut?offset=-1`, { headers: P }).then((r) => ((status = r.status), r.arrayBuffer())).then(
        (b) => `ended after ${b.byteLength} bytes`,
        () => "aborted",
      );
      expect([status, outcome]).toEqual([200, "aborted"]);
      failAfter = Number.POSITIVE_INFINITY;
      // The service goes on, and the same read completes once the store answers.
      const again = await fetch(`${app.url}/v1/stream/cut?offset=-1`, { headers: P });
      expect((await again.arrayBuffer()).byteLength).toBe(120 * 900);
    } finally {
      await app.close();
    }
  });

  it("a client that stops reading past SUBSCRIBER_STALL_TIMEOUT_MS is cut off: the connection closes before the last chunk", async () => {
    const app = await startTestServer({ env: { SUBSCRIBER_STALL_TIMEOUT_MS: "300" } });
    try {
      await fetch(`${app.url}/v1/stream/slow`, { method: "PUT", headers: P2 });
      const mib = 1024 * 1024;
      for (let i = 0; i < 24; i++) await fetch(`${app.url}/v1/stream/slow`, { method: "POST", headers: P2, body: new Uint8Array(mib).fill(i) });
      const { port } = new URL(app.url);
      const socket = net.connect(Number(port), "127.0.0.1");
      const received: Buffer[] = [];
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
      socket.on("data", (b: Buffer) => received.push(b));
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.write("GET /v1/stream/slow?offset=-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nx-project-id: ai-apps\r\n\r\n");
      socket.pause();
      const stalled = async () => /responses_cut_total\{reason="stalled"\} [1-9]/.test(await (await fetch(`${app.url}/metrics`)).text());
      for (let i = 0; i < 600 && !(await stalled()); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await stalled()).toBe(true);
      socket.resume();
      await closed;
      const all = Buffer.concat(received);
      const head = all.subarray(0, all.indexOf("\r\n\r\n")).toString();
      expect(head).toMatch(/^HTTP\/1.1 200/);
      expect(head.toLowerCase()).toContain("transfer-encoding: chunked");
      // No terminating chunk: the client cannot take this for a complete answer.
      expect(all.subarray(-5).toString()).not.toBe("0\r\n\r\n");
      expect(all.length).toBeLessThan(24 * mib);
    } finally {
      await app.close();
    }
  });
});

describe("readers report a close only where nothing is left before it, and pass sequences that were never stored (memory store)", () => {
  it("past sequences taken but never stored (an append that died), long-poll and SSE reach the tail and the close; a catch-up completes", async () => {
    const store = new MemoryStore();
    await store.init();
    const app = await startTestServer({ store, env: { HOLE_TIMEOUT_MS: "100", DURABLE_LONG_POLL_MS: "5000" } });
    try {
      const u = `${app.url}/v1/stream/holed`;
      await fetch(u, { method: "PUT", headers: { ...P, "content-type": "application/json" } });
      await fetch(u, { method: "POST", headers: { ...P, "content-type": "application/json" }, body: JSON.stringify({ a: 1 }) });
      const before = (await fetch(u, { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
      // An append that took two sequences and died before storing them, then the stream is closed.
      await store.reserve({ project: "ai-apps", kind: "durable", key: "holed" }, 2);
      expect((await fetch(u, { method: "POST", headers: { ...P, "stream-closed": "true" } })).status).toBe(204);
      const tail = (await fetch(u, { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
      expect(tail > before).toBe(true);
      const r = await fetch(`${u}?offset=${before}&live=long-poll`, { headers: P });
      expect([r.status, r.headers.get("stream-closed"), r.headers.get("stream-next-offset")]).toEqual([204, "true", tail]);
      const sse = new SseReader(`${u}?offset=${before}&live=sse`, P);
      await sse.until((x) => x.messages.some((m) => m.event === "control" && m.data.includes('"streamClosed":true')), 30_000);
      await sse.finished();
      // On an open stream too, a catch-up to the tail passes them (claimed after HOLE_TIMEOUT_MS) and completes.
      const open = `${app.url}/v1/stream/holed-open`;
      await fetch(open, { method: "PUT", headers: { ...P, "content-type": "application/json" } });
      await fetch(open, { method: "POST", headers: { ...P, "content-type": "application/json" }, body: JSON.stringify({ b: 1 }) });
      await store.reserve({ project: "ai-apps", kind: "durable", key: "holed-open" }, 2);
      const openTail = (await fetch(open, { method: "HEAD", headers: P })).headers.get("stream-next-offset")!;
      const all = await fetch(`${open}?offset=-1`, { headers: P });
      expect([all.status, all.headers.get("stream-next-offset"), await all.json()]).toEqual([200, openTail, [{ b: 1 }]]);
    } finally {
      await app.close();
    }
  });
});

describe("DURABLE_SSE_MAX_MS", () => {
  it("0 means SSE never ends by age; the default stays 60 s; 1-99 is refused", () => {
    expect(loadConfig({}).durableSseMaxMs).toBe(60_000);
    expect(loadConfig({ DURABLE_SSE_MAX_MS: "0" }).durableSseMaxMs).toBe(0);
    expect(() => loadConfig({ DURABLE_SSE_MAX_MS: "50" })).toThrow(/DURABLE_SSE_MAX_MS/);
  });

  it("with 0, an SSE reader outlives many idle periods and keeps getting data; with a maximum it is ended", async () => {
    const forever = await startTestServer({ env: { DURABLE_SSE_MAX_MS: "0", DURABLE_LONG_POLL_MS: "100" } });
    const bounded = await startTestServer({ env: { DURABLE_SSE_MAX_MS: "300", DURABLE_LONG_POLL_MS: "100" } });
    try {
      for (const app of [forever, bounded]) await fetch(`${app.url}/v1/stream/sse`, { method: "PUT", headers: { ...P, "content-type": "application/json" } });
      const readers = [forever, bounded].map((app) => new SseReader(`${app.url}/v1/stream/sse?offset=-1&live=sse`, P));
      // The bounded one ends by age (generously waited for); by then the other has idled many times.
      await readers[1]!.finished();
      expect(readers[1]!.endedByServer).toBe(true);
      const idle = () => readers[0]!.messages.filter((m) => m.event === "control").length;
      const before = idle();
      await readers[0]!.until(() => idle() >= before + 5, 30_000);
      expect(readers[0]!.endedByServer).toBe(false);
      await fetch(`${forever.url}/v1/stream/sse`, { method: "POST", headers: { ...P, "content-type": "application/json" }, body: JSON.stringify({ late: true }) });
      await readers[0]!.until((r) => r.messages.some((m) => m.event === "data" && m.data.includes("late")), 30_000);
      await readers[0]!.close();
    } finally {
      await forever.close();
      await bounded.close();
    }
  });
});
