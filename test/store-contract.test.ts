/**
 * The store port's contract, run against every adapter, each test on a fresh store (its own
 * database on MongoDB), so no test depends on what another left behind (the model: nats-server's
 * store_test.go).
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { DuplicateEventError, SequenceTakenError, streamName, type StoredEvent, type StreamId } from "../src/core/types.js";
import type { Store } from "../src/core/store.js";
import { storeFactories } from "./support/stores.js";

let n = 0;
const fresh = (kind: StreamId["kind"] = "topic"): StreamId => ({ project: "p/1", kind, key: `s/${++n}` });

function event(stream: StreamId, seq: number, extra: Partial<StoredEvent> = {}): StoredEvent {
  return {
    id: `${streamName(stream)}#${seq}`,
    stream: streamName(stream),
    seq,
    eventType: "t",
    data: { seq, nested: { deep: [1, "two", null, { $dollar: "ok", "dot.ted": true }] } },
    metadata: { m: seq },
    createdAt: new Date(1_700_000_000_000 + seq),
    ...extra,
  };
}

for (const factory of storeFactories) {
  describe(`store contract: ${factory.name}`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await factory.make();
    });
    afterEach(async () => store.close());
    afterAll(async () => factory.teardown());

    it("initialises again (indexes are idempotent) and answers ping", async () => {
      await store.init();
      await store.ping();
    });

    it("reserves gapless ranges per stream, one call per batch", async () => {
      const a = fresh();
      const b = fresh();
      expect(await store.head(a)).toBe(0);
      expect(await store.reserve(a, 3)).toBe(3);
      expect(await store.reserve(a, 1)).toBe(4);
      expect(await store.reserve(b, 2)).toBe(2);
      expect(await store.head(a)).toBe(4);
      expect(await store.head(b)).toBe(2);
    });

    // mongo-java-server's own findAndModify is not atomic under concurrency (50 concurrent $inc on
    // one document gave 47 distinct values); the test harness serialises its writes (as MongoDB's
    // single-document atomicity guarantees), so this holds on every store here.
    it("hands out distinct sequences under 50 concurrent reservations", async () => {
      const s = fresh();
      const lasts = await Promise.all(Array.from({ length: 50 }, (_, i) => store.reserve(s, (i % 3) + 1)));
      const taken = lasts.flatMap((last, i) => Array.from({ length: (i % 3) + 1 }, (_, k) => last - k));
      expect(new Set(taken).size).toBe(taken.length);
      expect(Math.max(...taken)).toBe(taken.length);
      expect(Math.min(...taken)).toBe(1);
    });

    it("appends and reads back values exactly, in sequence order", async () => {
      const s = fresh();
      await store.reserve(s, 3);
      const evs = [event(s, 1), event(s, 2, { batchEnd: 3, idempotencyKey: "k2", extra: { execution_id: "x" } }), event(s, 3, { batchEnd: 3, expireAt: new Date(1_800_000_000_000) })];
      // Out of order on purpose: a later sequence may land first.
      await store.append([evs[2]!]);
      await store.append([evs[0]!, evs[1]!]);
      const got = await store.read(s, 0, 10);
      expect(got).toEqual(evs);
      expect(await store.read(s, 1, 1)).toEqual([evs[1]]);
      expect(await store.read(s, 3, 10)).toEqual([]);
      expect(await store.readBefore(s, 3, 10)).toEqual([evs[1], evs[0]]);
    });

    it("rejects a second event at a taken sequence and keeps the first", async () => {
      const s = fresh();
      await store.reserve(s, 1);
      await store.append([event(s, 1)]);
      await expect(store.append([event(s, 1, { id: "other", data: "dup" })])).rejects.toThrow();
      expect((await store.read(s, 0, 10)).map((e) => e.data)).toEqual([event(s, 1).data]);
    });

    it("finds events by id and by idempotency key, and refuses a taken id or key", async () => {
      const s = fresh("task");
      await store.reserve(s, 3);
      await store.append([event(s, 1, { idempotencyKey: "k" })]);
      expect((await store.findByIdempotencyKey(s, "k"))?.seq).toBe(1);
      expect(await store.findByIdempotencyKey(s, "other")).toBeUndefined();
      expect(await store.findByIdempotencyKey(fresh("task"), "k")).toBeUndefined();
      expect((await store.getEvent(event(s, 1).id))?.data).toEqual(event(s, 1).data);
      expect(await store.getEvent("no-such-id")).toBeUndefined();
      await expect(store.append([event(s, 2, { idempotencyKey: "k" })])).rejects.toBeInstanceOf(DuplicateEventError);
      await expect(store.append([event(s, 3, { id: event(s, 1).id })])).rejects.toBeInstanceOf(DuplicateEventError);
      expect((await store.read(s, 0, 10)).map((e) => e.seq)).toEqual([1]);
    });

    it("voids only the failed publisher's own events", async () => {
      const s = fresh();
      await store.reserve(s, 2);
      await store.append([event(s, 1)]);
      await store.voidRange(s, 1, 2, new Date(1_700_000_000_100), ["someone-else"]);
      const got = await store.read(s, 0, 10);
      expect(got.map((e) => [e.seq, e.void ?? false])).toEqual([
        [1, false],
        [2, true],
      ]);
    });

    it("turns a failed publish's range into void placeholders", async () => {
      const s = fresh();
      await store.reserve(s, 4);
      await store.append([event(s, 1), event(s, 2)]);
      await store.voidRange(s, 2, 3, new Date(1_700_000_000_100), [event(s, 2).id, event(s, 3).id]);
      const got = await store.read(s, 0, 10);
      expect(got.map((e) => [e.seq, e.void ?? false])).toEqual([
        [1, false],
        [2, true],
        [3, true],
      ]);
    });

    it("frees a voided event's id and idempotency key, so the publish can be written again", async () => {
      const s = fresh("task");
      await store.reserve(s, 3);
      const e = event(s, 1, { idempotencyKey: "again" });
      await store.append([e]);
      await store.voidRange(s, 1, 2, new Date(1_700_000_000_100), [e.id]);
      expect(await store.getEvent(e.id)).toBeUndefined();
      expect(await store.findByIdempotencyKey(s, "again")).toBeUndefined();
      await store.append([{ ...e, seq: 3 }]);
      expect((await store.findByIdempotencyKey(s, "again"))?.seq).toBe(3);
      expect((await store.getEvent(e.id))?.seq).toBe(3);
      expect((await store.read(s, 0, 10)).map((x) => [x.seq, x.void ?? false, x.void ? "" : x.id])).toEqual([
        [1, true, ""],
        [2, true, ""],
        [3, false, e.id],
      ]);
    });

    it("slides a stream's expiry on its record (never earlier), without rewriting its events", async () => {
      const s = fresh("execution");
      const later = new Date(Date.now() + 3_600_000);
      const own = new Date(Date.now() + 7_200_000);
      await store.reserve(s, 2, { expireAt: new Date(Date.now() + 60_000) });
      await store.append([event(s, 1), event(s, 2, { expireAt: own })]);
      await store.reserve(s, 1, { expireAt: later });
      await store.touch(s, new Date(Date.now() + 1_000)); // earlier: ignored
      expect((await store.streamInfo(s))?.expireAt?.getTime()).toBe(later.getTime());
      // Events expire with their stream unless they live longer on their own.
      expect((await store.read(s, 0, 10)).map((e) => e.expireAt?.getTime())).toEqual([later.getTime(), own.getTime()]);
    });

    it("an expired stream serves none of its old events after its expiry slides again; its sequences stay taken", async () => {
      const s = fresh("execution");
      await store.reserve(s, 2, { expireAt: new Date(Date.now() - 1_000) });
      await store.append([event(s, 1), event(s, 2)]);
      const last = await store.reserve(s, 1, { expireAt: new Date(Date.now() + 60_000) });
      expect(last).toBe(3);
      await store.append([event(s, 3)]);
      const got = await store.read(s, 0, 10);
      // Sequences 1-2 are behind the floor: one purge marker stands for them.
      expect(got.map((e) => [e.seq, e.void ?? false])).toEqual([
        [2, true],
        [3, false],
      ]);
      expect((await store.streamInfo(s))?.floor).toBe(2);
    });

    it("a reader's claim (voidRange with no ids) fills only free sequences, and a late append there fails", async () => {
      const s = fresh();
      await store.reserve(s, 3);
      await store.append([event(s, 1)]);
      expect(await store.voidRange(s, 1, 2, new Date(1_700_000_000_100), [])).toBe(1);
      expect(await store.voidRange(s, 1, 2, new Date(1_700_000_000_100), [])).toBe(0);
      await expect(store.append([event(s, 2)])).rejects.toBeInstanceOf(SequenceTakenError);
      // An ordered append stops at the taken sequence: nothing after it is stored either.
      await expect(store.append([event(s, 2), event(s, 3)])).rejects.toBeInstanceOf(SequenceTakenError);
      expect((await store.read(s, 0, 10)).map((e) => [e.seq, e.void ?? false])).toEqual([
        [1, false],
        [2, true],
      ]);
    });

    it("purges a stream's events and no other's; its sequences stay taken", async () => {
      const s = fresh();
      const other = fresh();
      await store.reserve(s, 3);
      await store.append([event(s, 1, { idempotencyKey: "k1" }), event(s, 2), event(s, 3)]);
      await store.reserve(other, 1);
      await store.append([event(other, 1)]);
      expect(await store.purge(s)).toBe(3);
      // What is left is the purge marker at the last sequence: void, created at the epoch.
      expect((await store.read(s, 0, 10)).map((e) => [e.seq, e.void, e.createdAt.getTime()])).toEqual([[3, true, 0]]);
      expect(await store.getEvent(`${streamName(s)}#1`)).toBeUndefined();
      expect(await store.findByIdempotencyKey(s, "k1")).toBeUndefined();
      expect((await store.read(other, 0, 10)).map((e) => e.seq)).toEqual([1]);
      expect(await store.head(s)).toBe(3);
      // The next publish continues after 3, and its id/key may be used again.
      expect(await store.reserve(s, 1)).toBe(4);
      await store.append([event(s, 4, { idempotencyKey: "k1" })]);
      expect((await store.read(s, 0, 10)).map((e) => e.seq)).toEqual([3, 4]);
      expect(await store.purge(fresh())).toBe(0);
    });

    it("finds the cursor for an instant", async () => {
      const s = fresh();
      await store.reserve(s, 3);
      await store.append([event(s, 1), event(s, 2), event(s, 3)]);
      expect(await store.cursorAt(s, new Date(1_700_000_000_000 + 2))).toBe(2);
      expect(await store.cursorAt(s, new Date(0))).toBe(0);
    });

    it("binds an execution to the first project that names it", async () => {
      expect(await store.executionProject("ex-contract")).toBeUndefined();
      expect(await store.bindExecution("ex-contract", "a")).toBe("a");
      expect(await store.bindExecution("ex-contract", "b")).toBe("a");
      expect(await store.executionProject("ex-contract")).toBe("a");
    });

    it("keeps streams of different projects and kinds apart", async () => {
      const a: StreamId = { project: "p", kind: "topic", key: "same" };
      const b: StreamId = { project: "q", kind: "topic", key: "same" };
      const c: StreamId = { project: "p", kind: "task", key: "same" };
      for (const s of [a, b, c]) await store.reserve(s, 1);
      await store.append([event(a, 1, { data: "a" })]);
      await store.append([event(b, 1, { data: "b" })]);
      expect((await store.read(a, 0, 10)).map((e) => e.data)).toEqual(["a"]);
      expect((await store.read(b, 0, 10)).map((e) => e.data)).toEqual(["b"]);
      expect(await store.read(c, 0, 10)).toEqual([]);
    });

    it("lists each stream's last append time: set by reserve() (not by touch()), moved forward by the next one", async () => {
      const s: StreamId = { project: "la", kind: "topic", key: "t" };
      const quiet: StreamId = { project: "la", kind: "topic", key: "u" };
      const before = Date.now();
      await store.reserve(s, 2);
      await store.touch(quiet, new Date(Date.now() + 60_000));
      const [first, untouched] = await store.listStreams("la", { limit: 10 });
      expect(first!.lastAppendAt!.getTime()).toBeGreaterThanOrEqual(before - 1000);
      expect(untouched).toEqual({ stream: quiet, head: 0, events: 0 });
      await new Promise((r) => setTimeout(r, 5));
      await store.reserve(s, 1);
      const [second] = await store.listStreams("la", { limit: 1 });
      expect(second!.head).toBe(3);
      expect(second!.lastAppendAt!.getTime()).toBeGreaterThan(first!.lastAppendAt!.getTime());
    });

    it("lists a project's streams in (kind, key) order, filtered by kind in the query, paged after a stream", async () => {
      // Many streams of another kind must not hide the few asked for (they did when the store
      // fetched a fixed number and the caller filtered afterwards).
      // (No key between U+E000 and U+FFFF: mongo-java-server orders strings by UTF-16 units, MongoDB
      // and the memory store by UTF-8 bytes; both agree on these.)
      const keys = ["b", "a", "é", "z", "A", "a/b", "😀", "~"];
      for (let i = 0; i < 30; i++) await store.reserve({ project: "lp", kind: "execution", key: `ex-${String(i).padStart(2, "0")}` }, 1);
      for (const key of keys) await store.reserve({ project: "lp", kind: "topic", key }, 2);
      await store.reserve({ project: "other", kind: "topic", key: "x" }, 1);
      const utf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
      const sorted = [...keys].sort(utf8);
      const topics = await store.listStreams("lp", { kind: "topic", limit: 5 });
      expect(topics.map((s) => s.stream.key)).toEqual(sorted.slice(0, 5));
      expect(topics[0]).toEqual({ stream: { project: "lp", kind: "topic", key: sorted[0] }, head: 2, events: 0, lastAppendAt: expect.any(Date) });
      const rest = await store.listStreams("lp", { kind: "topic", after: { kind: "topic", key: topics[4]!.stream.key }, limit: 100 });
      expect(rest.map((s) => s.stream.key)).toEqual(sorted.slice(5));
      // Without a kind: executions before topics; a page starting inside the executions runs on into the topics.
      const all = await store.listStreams("lp", { limit: 100 });
      expect(all.map((s) => `${s.stream.kind}:${s.stream.key}`)).toEqual([...Array.from({ length: 30 }, (_, i) => `execution:ex-${String(i).padStart(2, "0")}`), ...sorted.map((k) => `topic:${k}`)]);
      const tail = await store.listStreams("lp", { after: { kind: "execution", key: "ex-28" }, limit: 3 });
      expect(tail.map((s) => `${s.stream.kind}:${s.stream.key}`)).toEqual(["execution:ex-29", `topic:${sorted[0]}`, `topic:${sorted[1]}`]);
      expect(await store.listStreams("lp", { kind: "task", limit: 10 })).toEqual([]);
      expect(await store.listStreams("lp", { kind: "execution", after: { kind: "topic", key: "" }, limit: 10 })).toEqual([]);
    });
  });
}
