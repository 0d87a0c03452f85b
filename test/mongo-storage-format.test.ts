/**
 * The events collection's storage format and its migration at start-up (docs/operations.md,
 * "Storage format"): the TTL index on expire_at is sparse (an earlier version's non-sparse one is
 * replaced, safely with several instances starting at once), and an event's JSON is a BSON
 * document where BSON keeps it exactly, else JSON text as before; readers accept both forms.
 */
import { afterAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { Long, MongoClient } from "mongodb";
import { EventLog } from "../src/core/log.js";
import type { EventDraft, JsonValue, StreamId } from "../src/core/types.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { bsonExact } from "../src/store/mongo/payload.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";

const until = async (f: () => boolean, what: string) => {
  const end = Date.now() + 30_000;
  while (!f()) {
    if (Date.now() > end) throw new Error(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe("MongoDB storage format", () => {
  let mongo: TestMongo;
  let raw: MongoClient;
  const stores: MongoStore[] = [];
  afterAll(async () => {
    for (const s of stores) await s.close();
    await raw?.close();
    await mongo?.stop();
  });

  it("replaces an earlier version's non-sparse TTL index with a sparse one, with two instances starting at once", async () => {
    mongo = await startTestMongo();
    raw = new MongoClient(mongo.uri);
    const dbName = `fmt_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const events = raw.db(dbName).collection("events");
    await events.createIndex({ expire_at: 1 }, { expireAfterSeconds: 0, name: "expire_at_ttl" });
    // An event as earlier versions stored it: JSON text in `payload`.
    await events.insertOne({ _id: "old-1" as never, stream: "acme/topic/fmt", seq: Long.fromNumber(1), event_type: "t", payload: JSON.stringify({ data: { old: true }, metadata: { m: 1 }, extra: { x: "y" } }), created_at: new Date() });
    const two = [0, 1].map(() => new MongoStore({ uri: mongo.uri, dbName, watch: "poll", sweepIntervalMs: 0 }));
    stores.push(...two);
    await Promise.all(two.map((s) => s.init()));
    await until(() => two.every((s) => s.indexState.get("events.expire_at_sparse_ttl") === "ready"), "the sparse TTL index on both instances");
    const ttl = (await events.indexes()).filter((i) => JSON.stringify(i.key) === JSON.stringify({ expire_at: 1 }));
    expect(ttl.map((i) => [i.name, i.sparse, i.expireAfterSeconds])).toEqual([["expire_at_sparse_ttl", true, 0]]);
    // Started again: nothing to replace, nothing fails.
    const again = new MongoStore({ uri: mongo.uri, dbName, watch: "poll", sweepIntervalMs: 0 });
    stores.push(again);
    await again.init();
    await until(() => again.indexState.get("events.expire_at_sparse_ttl") === "ready", "the index, started again");

    // The old event reads as before; new events are stored as BSON where BSON keeps them exactly.
    const log = new EventLog(two[0]!);
    const stream: StreamId = { project: "acme", kind: "topic", key: "fmt" };
    await two[0]!.reserve(stream, 1); // the old event's sequence
    const odd: JsonValue[] = [{ $set: 1 }, { "a.b": 2 }, { "": 3 }, JSON.parse('{"__proto__": {"p": 1}}') as JsonValue];
    const drafts: EventDraft[] = [{ eventType: "t", data: { n: 1, nested: [1.5, "s", null, true, { deep: { k: -2 } }] }, metadata: { tag: "v" } }, ...odd.map((data) => ({ eventType: "t", data }))];
    await log.publish(stream, drafts);
    const page = await log.list(stream, 0, 100);
    expect(page.events.map((e) => [e.data, e.metadata, e.extra])).toEqual([
      [{ old: true }, { m: 1 }, { x: "y" }],
      ...drafts.map((d) => [d.data, d.metadata ?? {}, undefined]),
    ]);
    expect(Object.getPrototypeOf(page.events[page.events.length - 1]!.data)).toBe(Object.prototype); // "__proto__" stayed a key
    const docs = await events.find({ stream: "acme/topic/fmt" }).sort({ seq: 1 }).toArray();
    expect(docs.map((d) => (d["body"] !== undefined ? "body" : "payload"))).toEqual(["payload", "body", "payload", "payload", "payload", "payload"]);
    expect(docs[1]!["body"]).toEqual({ data: drafts[0]!.data, metadata: { tag: "v" } });
  });

  it("keeps as BSON only what BSON keeps exactly", () => {
    expect(bsonExact({ a: [1, "x", null, false, { b: 2.5 }] })).toBe(true);
    for (const v of [{ $k: 1 }, { "a.b": 1 }, { "a\0b": 1 }, { "": 1 }, ["\udc00"], { ["\ud800"]: 1 }]) expect(bsonExact(v as JsonValue), JSON.stringify(v)).toBe(false);
    let deep: JsonValue = 1;
    for (let i = 0; i < 95; i++) deep = [deep];
    expect(bsonExact(deep)).toBe(false);
  });
});
