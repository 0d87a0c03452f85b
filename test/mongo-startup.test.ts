/**
 * Start-up on any MongoDB-wire server: a server without TTL indexes (error 238, as FerretDB answers)
 * gets a warning and the expiry sweep; an index that exists with other options stops start-up with
 * one actionable line; change streams are followed, filtered, and reopened when they close.
 */
import { afterAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { MongoClient } from "mongodb";
import { EventLog } from "../src/core/log.js";
import type { StoreUnavailableError, StreamId } from "../src/core/types.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { isUnavailable } from "../src/store/mongo/errors.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { TcpProxy } from "./support/proxy.js";
import { getJson, postJson, startTestServer } from "./support/server.js";

const db = () => `startup_${randomUUID().replaceAll("-", "").slice(0, 12)}`;

describe.skipIf(!!process.env["MONGODB_URI"])("start-up on a server without TTL indexes (error 238)", () => {
  let mongo: TestMongo;
  afterAll(() => mongo?.stop());

  it("starts with a warning and deletes expired streams' and events' documents with the sweep", async () => {
    mongo = await startTestMongo(0, ["--no-ttl"]);
    const warnings: string[] = [];
    const store = new MongoStore({ uri: mongo.uri, dbName: db(), watch: "poll", sweepIntervalMs: 0, warn: (m) => warnings.push(m) });
    const app = await startTestServer({ store });
    try {
      expect(store.hasTtlIndex).toBe(false);
      expect(warnings.join("\n")).toMatch(/does not support TTL indexes.*sweep/);
      // The service works: a Kubiya publish (sliding expiry on the stream record) and a read.
      const r = await postJson(app, "/api/v1/executions/ex-ttl/events", { event_type: "step", data: { n: 1 } }, { "X-Project-ID": "acme" });
      expect(r.status).toBe(202);
      const stream: StreamId = { project: "acme", kind: "execution", key: "ex-ttl" };
      const info = await store.streamInfo(stream);
      expect(info?.head).toBe(1);
      expect(info?.expireAt!.getTime()).toBeGreaterThan(Date.now() + 3_500_000);
      // An event with its own, past expiry is deleted by the sweep (no TTL monitor here).
      const other: StreamId = { project: "acme", kind: "topic", key: "own-expiry" };
      await store.reserve(other, 2);
      await store.append([
        { id: `x1-${randomUUID()}`, stream: "acme/topic/own-expiry", seq: 1, eventType: "t", data: 1, metadata: {}, createdAt: new Date(), expireAt: new Date(Date.now() - 1000) },
        { id: `x2-${randomUUID()}`, stream: "acme/topic/own-expiry", seq: 2, eventType: "t", data: 2, metadata: {}, createdAt: new Date() },
      ]);
      // An expired stream record: its events go too, the sequences stay taken.
      const gone: StreamId = { project: "acme", kind: "execution", key: "ex-gone" };
      await store.reserve(gone, 1, { expireAt: new Date(Date.now() + 100) });
      await store.append([{ id: `g1-${randomUUID()}`, stream: "acme/execution/ex-gone", seq: 1, eventType: "t", data: 1, metadata: {}, createdAt: new Date() }]);
      await new Promise((res) => setTimeout(res, 150));
      await store.sweep();
      const raw = store.db.collection("events");
      expect(await raw.countDocuments({ stream: "acme/topic/own-expiry" })).toBe(1);
      expect(await raw.countDocuments({ stream: "acme/execution/ex-gone" })).toBe(0);
      expect(await store.head(gone)).toBe(1);
      expect((await store.streamInfo(gone))?.floor).toBe(1);
      expect(await raw.countDocuments({ stream: "acme/execution/ex-ttl" })).toBe(1);
    } finally {
      await app.close();
    }
  });
});

describe("start-up problems and change streams", () => {
  let mongo: TestMongo;
  const proxies: TcpProxy[] = [];
  afterAll(async () => {
    for (const p of proxies) await p.stop();
    await mongo?.stop();
  });

  it("an index that exists with other options stops start-up with one actionable line", async () => {
    mongo ??= await startTestMongo();
    const dbName = db();
    const client = new MongoClient(mongo.uri);
    try {
      await client.db(dbName).collection("events").createIndex({ stream: 1, seq: 1 }, { name: "stream_seq" }); // not unique
      const store = new MongoStore({ uri: mongo.uri, dbName, watch: "poll" });
      const err = await store.init().then(() => undefined, (e: unknown) => e as Error);
      await store.close();
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).not.toContain("\n");
      expect(err!.message).toMatch(/index events\.stream_seq exists with different options .*dropIndex\("stream_seq"\)/);
    } finally {
      await client.close();
    }
  });

  it("classifies failover and unavailability as unavailable, other errors not", async () => {
    const { MongoServerError, MongoNetworkError, MongoServerSelectionError } = await import("mongodb");
    const server = (code: number, labels: string[] = []) => {
      const e = new MongoServerError({ code, errmsg: `code ${code}`, errorLabels: labels });
      return e;
    };
    for (const code of [10107, 11602, 189, 91, 64, 100, 13435, 50]) expect(isUnavailable(server(code)), String(code)).toBe(true);
    expect(isUnavailable(server(112, ["RetryableWriteError"]))).toBe(true);
    expect(isUnavailable(new MongoNetworkError("reset"))).toBe(true);
    expect(isUnavailable(new MongoServerSelectionError("no primary", { type: "Unknown", servers: new Map() } as never))).toBe(true);
    for (const code of [2, 11000, 121, 13]) expect(isUnavailable(server(code)), String(code)).toBe(false);
    expect(isUnavailable(new TypeError("bug"))).toBe(false);
    // A write on a socket the server closed can reach the caller as Node's bare system error.
    expect(isUnavailable(Object.assign(new Error("This socket has been ended by the other party"), { code: "EPIPE" }))).toBe(true);
    expect(isUnavailable(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }))).toBe(true);
    expect(isUnavailable(Object.assign(new Error("not a socket"), { code: "ERR_INVALID_ARG_TYPE" }))).toBe(false);
  });

  it("w:majority that cannot be confirmed answers 503 within the operation timeout, outcome unknown (never hangs)", async () => {
    mongo ??= await startTestMongo();
    const proxy = TcpProxy.toMongo(mongo.uri);
    proxies.push(proxy);
    // A server that takes every insert but never answers: what a primary waiting for an
    // unreachable majority looks like from the client.
    proxy.faults = (cmd) => (cmd.name === "insert" && cmd.collection === "events" ? { stallMs: 60_000 } : undefined);
    await proxy.start();
    const store = new MongoStore({ uri: proxy.mongoUri, dbName: db(), watch: "poll", operationTimeoutMs: 800 });
    await store.init();
    const log = new EventLog(store, { holeTimeoutMs: 300 });
    try {
      const t0 = Date.now();
      const err = (await log.publish({ project: "p", kind: "topic", key: "hang" }, [{ eventType: "t", data: 1 }]).catch((e: unknown) => e)) as StoreUnavailableError;
      expect(Date.now() - t0).toBeLessThan(5_000);
      expect(err.name).toBe("StoreUnavailableError");
      // The insert never came back and the range could not be closed either (the connection that
      // would carry the claim is the stalled one's pool): the reply must not claim "not stored".
      expect(["unknown", "not-stored"]).toContain(err.outcome);
    } finally {
      await log.close();
      await store.close();
    }
  }, 30_000);

  it("follows other instances' appends with a change stream filtered to followed streams, and reopens it when it closes", async () => {
    mongo ??= await startTestMongo();
    const proxy = TcpProxy.toMongo(mongo.uri);
    proxies.push(proxy);
    await proxy.start();
    const dbName = db();
    const logs: string[] = [];
    const watching = new MongoStore({ uri: proxy.mongoUri, dbName, watch: "changestream", serverSelectionTimeoutMs: 1000, log: (m) => logs.push(m), warn: (m) => logs.push(m) });
    const writer = new MongoStore({ uri: mongo.uri, dbName, watch: "poll" });
    await watching.init();
    await writer.init();
    // Long idle recheck: delivery within the test's bounds must come from the change stream.
    const a = new EventLog(watching, { idleRecheckMs: 60_000 });
    const b = new EventLog(writer, { idleRecheckMs: 60_000 });
    const stream: StreamId = { project: "p", kind: "topic", key: `cs-${randomUUID().slice(0, 8)}` };
    const got: number[] = [];
    const abort = new AbortController();
    const sub = (async () => {
      for await (const batch of a.subscribe(stream, 0, abort.signal)) got.push(...batch.map((e) => e.seq));
    })();
    const until = async (n: number, ms: number) => {
      const end = Date.now() + ms;
      while (got.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(got.length).toBe(n);
    };
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 0; i < 5; i++) await b.publish(stream, [{ eventType: "t", data: i }]);
      await until(5, 5_000);
      // The change stream's connection goes away: it is reopened and the followed stream re-read.
      await proxy.cut();
      await b.publish(stream, [{ eventType: "t", data: 5 }]);
      await proxy.restore();
      await until(6, 20_000);
      for (let i = 6; i < 10; i++) await b.publish(stream, [{ eventType: "t", data: i }]);
      await until(10, 5_000);
      expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      // The cut was survived by the change stream (the driver resumes it from its token on a
      // network error, else the watcher reopens it): nothing waited for the 60 s idle recheck.
      expect(logs.join("\n")).toMatch(/watching appends with a change stream/);
    } finally {
      abort.abort();
      await sub;
      await a.close();
      await b.close();
      await watching.close();
      await writer.close();
    }
  }, 60_000);
});

describe("the change stream watches only the streams this instance follows", () => {
  let mongo: TestMongo;
  afterAll(() => mongo?.stop());

  it("wakes followed streams once the cursor is open, then only on their inserts; a newly followed stream joins the filter", async () => {
    mongo = await startTestMongo();
    const dbName = db();
    const store = new MongoStore({ uri: mongo.uri, dbName, watch: "changestream" });
    const writer = new MongoStore({ uri: mongo.uri, dbName, watch: "poll" });
    await store.init();
    await writer.init();
    const followed: StreamId[] = [{ project: "p", kind: "topic", key: "a" }];
    const woken: string[] = [];
    const stop = store.watchAppends((s) => woken.push(s), () => followed);
    const append = async (key: string) => {
      const s: StreamId = { project: "p", kind: "topic", key };
      const seq = await writer.reserve(s, 1);
      await writer.append([{ id: randomUUID(), stream: `p/topic/${key}`, seq, eventType: "t", data: seq, metadata: {}, createdAt: new Date() }]);
    };
    const waitFor = async (pred: () => boolean) => {
      const end = Date.now() + 5_000;
      while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect(pred()).toBe(true);
    };
    try {
      // The wake-up that covers "appended before the cursor opened" comes once it is open.
      await waitFor(() => woken.includes("p/topic/a"));
      woken.length = 0;
      await append("b"); // not followed
      await append("a");
      await waitFor(() => woken.includes("p/topic/a"));
      expect(woken).not.toContain("p/topic/b");
      followed.push({ project: "p", kind: "topic", key: "b" });
      await new Promise((r) => setTimeout(r, 600)); // the watcher notices and reopens from its token
      woken.length = 0;
      await append("b");
      await waitFor(() => woken.includes("p/topic/b"));
    } finally {
      await stop();
      await store.close();
      await writer.close();
    }
  }, 30_000);
});

describe("two service instances on one MongoDB, 16 publishers each", () => {
  it("acks sequences 1..2000 without gaps and delivers all of them in order on both instances", async () => {
    const { storeFactories } = await import("./support/stores.js");
    const mongo = storeFactories.find((f) => f.name === "mongo")!;
    const dbName = db();
    const apps = [await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }) }), await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }) })];
    const topic = `two-${randomUUID().slice(0, 8)}`;
    const TOTAL = 2000;
    const PER_INSTANCE = 16;
    // 32 publishers share the 2,000 publishes: 62 or 63 each.
    const share = (g: number) => Math.floor(TOTAL / (2 * PER_INSTANCE)) + (g < TOTAL % (2 * PER_INSTANCE) ? 1 : 0);
    try {
      const readers = apps.map((app) => {
        const got: number[] = [];
        const abort = new AbortController();
        const done = (async () => {
          const res = await fetch(`${app.url}/api/v1/events/stream?topic=${topic}&project_id=acme&last_sequence_id=0`, { signal: abort.signal, headers: { accept: "text/event-stream" } });
          const decoder = new TextDecoder();
          let buf = "";
          try {
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
              buf += decoder.decode(chunk, { stream: true });
              let i: number;
              while ((i = buf.indexOf("\n\n")) >= 0) {
                const frame = buf.slice(0, i);
                buf = buf.slice(i + 2);
                const id = /^id: (\d+)$/m.exec(frame);
                if (id) got.push(Number(id[1]));
              }
              if (got.length >= TOTAL) break;
            }
          } catch {
            // aborted
          }
        })();
        return { got, abort, done };
      });
      await new Promise((r) => setTimeout(r, 300));
      const acked: number[] = [];
      await Promise.all(
        apps.flatMap((app, a) =>
          Array.from({ length: PER_INSTANCE }, async (_, p) => {
            for (let i = 0; i < share(a * PER_INSTANCE + p); i++) {
              const r = await postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: `i${a}p${p}`, data: i }] }, { "X-Project-ID": "acme" });
              expect(r.status).toBe(200);
              acked.push(r.json.sequence_ids[0]);
            }
          }),
        ),
      );
      expect([...acked].sort((x, y) => x - y)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
      const end = Date.now() + 60_000;
      while (readers.some((r) => r.got.length < TOTAL) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      for (const r of readers) {
        r.abort.abort();
        await r.done;
        expect(r.got).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
      }
      const listed = (await getJson(apps[0]!, `/api/v1/events?topic=${topic}&limit=1&project_id=acme&last_sequence_id=${TOTAL - 1}`)).json;
      expect(listed.events.map((e: { sequence_id: number }) => e.sequence_id)).toEqual([TOTAL]);
    } finally {
      for (const app of apps) await app.close();
      await mongo.teardown();
    }
  }, 180_000);
});
