/**
 * The DurableStore contract (Durable Streams metadata and idempotent-producer state), run against
 * every adapter; and the store port's close/reopen of a log stream, which refuses appends
 * atomically with the sequence grab.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryDurableStore } from "../src/store/memory/durable.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { MongoDurableStore } from "../src/store/mongo/durable.js";
import type { Store } from "../src/core/store.js";
import type { DurableMeta, DurableStore } from "../src/store/durable.js";
import { IncarnationMismatchError, StreamClosedError, type StreamId } from "../src/core/types.js";
import { storeFactories } from "./support/stores.js";

let n = 0;
function meta(extra: Partial<DurableMeta> = {}): DurableMeta {
  const at = new Date(1_700_000_000_000);
  return { project: "p", name: `s/${++n}`, inc: "1700000000000001", base: 0, contentType: "text/plain", createdAt: at, lastAccessAt: at, closed: false, ancestors: [], refCount: 0, softDeleted: false, ...extra };
}

for (const factory of storeFactories) {
  describe(`durable store contract: ${factory.name}`, () => {
    let base: Store;
    let ds: DurableStore;
    beforeEach(async () => {
      base = await factory.make();
      ds = base instanceof MongoStore ? new MongoDurableStore(base.connection) : new MemoryDurableStore();
      await ds.init();
    });
    afterEach(async () => base.close());
    afterAll(async () => factory.teardown());

    it("initialises twice", async () => {
      await ds.init();
    });

    it("creates a name once: a second create returns the holder unchanged", async () => {
      const m = meta({ ttlSeconds: 5, expiresAt: undefined, ancestors: [{ inc: "0000000000000007", upTo: 3 }] });
      delete m.expiresAt;
      const first = await ds.create(m);
      expect(first.created).toBe(true);
      const second = await ds.create({ ...m, inc: "1700000000000002", contentType: "application/json" });
      expect(second.created).toBe(false);
      expect(second.meta).toEqual(m);
      expect(await ds.get("p", m.name)).toEqual(m);
      expect(await ds.get("other-project", m.name)).toBeUndefined();
    });

    it("updates, counts references and removes only the named incarnation", async () => {
      const m = meta();
      await ds.create(m);
      expect(await ds.update("p", m.name, "9999999999999999", { closed: true })).toBeUndefined();
      const closed = await ds.update("p", m.name, m.inc, { closed: true, closedBy: { producerId: "a", epoch: 1, seq: 2 } });
      expect(closed?.closed).toBe(true);
      expect(closed?.closedBy).toEqual({ producerId: "a", epoch: 1, seq: 2 });
      expect((await ds.addRef("p", m.name, m.inc, 2))?.refCount).toBe(2);
      expect((await ds.addRef("p", m.name, m.inc, -1))?.refCount).toBe(1);
      expect(await ds.addRef("p", m.name, "9999999999999999", 1)).toBeUndefined();
      expect(await ds.remove("p", m.name, "9999999999999999")).toBe(false);
      expect(await ds.remove("p", m.name, m.inc)).toBe(true);
      expect(await ds.get("p", m.name)).toBeUndefined();
      expect((await ds.create(m)).created).toBe(true);
    });

    it("accepts only strictly increasing Stream-Seq values, byte-wise", async () => {
      const m = meta();
      await ds.create(m);
      expect(await ds.claimStreamSeq("p", m.name, m.inc, "2")).toBe(true);
      expect(await ds.claimStreamSeq("p", m.name, m.inc, "10")).toBe(false); // "10" < "2" byte-wise
      expect(await ds.claimStreamSeq("p", m.name, m.inc, "2")).toBe(false);
      expect(await ds.claimStreamSeq("p", m.name, m.inc, "20")).toBe(true);
      expect(await ds.claimStreamSeq("p", m.name, m.inc, "B")).toBe(true);
      expect(await ds.claimStreamSeq("p", m.name, m.inc, "a")).toBe(true); // "a" (0x61) > "B" (0x42)
      expect(await ds.claimStreamSeq("p", m.name, "9999999999999999", "zz")).toBe(false);
    });

    it("moves producer state only from the expected state (compare-and-set)", async () => {
      const m = meta();
      await ds.create(m);
      expect(await ds.getProducer("p", m.name, m.inc, "w")).toBeUndefined();
      expect(await ds.casProducer("p", m.name, m.inc, "w", { epoch: 0, lastSeq: 0 }, { epoch: 0, lastSeq: 1 })).toBe(false);
      expect(await ds.casProducer("p", m.name, m.inc, "w", undefined, { epoch: 0, lastSeq: 0 })).toBe(true);
      expect(await ds.casProducer("p", m.name, m.inc, "w", undefined, { epoch: 0, lastSeq: 0 })).toBe(false);
      expect(await ds.casProducer("p", m.name, m.inc, "w", { epoch: 0, lastSeq: 0 }, { epoch: 0, lastSeq: 1 })).toBe(true);
      expect(await ds.casProducer("p", m.name, m.inc, "w", { epoch: 0, lastSeq: 0 }, { epoch: 0, lastSeq: 1 })).toBe(false);
      expect(await ds.getProducer("p", m.name, m.inc, "w")).toEqual({ epoch: 0, lastSeq: 1 });
      // Another incarnation of the same name (a re-created stream) starts with no producers.
      expect(await ds.getProducer("p", m.name, "1700000000000009", "w")).toBeUndefined();
      await ds.removeProducers("p", m.name, m.inc);
      expect(await ds.getProducer("p", m.name, m.inc, "w")).toBeUndefined();
    });

    it("closes a log stream atomically with reserve, reopens it, and keeps sequences", async () => {
      const s: StreamId = { project: "p", kind: "durable", key: `log-${++n}` };
      expect(await base.reserve(s, 2)).toBe(2);
      expect(await base.isClosed(s)).toBe(false);
      expect(await base.streamInfo(s)).toMatchObject({ head: 2, closed: false });
      expect(await base.reserve(s, 1, { close: true })).toBe(3); // the final append closes it in the same step
      expect(await base.isClosed(s)).toBe(true);
      // One read of the record: the head with the close is the final one (what readers go by).
      expect(await base.streamInfo(s)).toMatchObject({ head: 3, closed: true });
      await expect(base.reserve(s, 1)).rejects.toBeInstanceOf(StreamClosedError);
      expect(await base.closeStream(s)).toBe(3);
      expect(await base.head(s)).toBe(3);
      expect(await base.reopenStream(s)).toBe(3);
      expect(await base.streamInfo(s)).toMatchObject({ head: 3, closed: false });
      expect(await base.reserve(s, 1)).toBe(4);
      const fresh: StreamId = { project: "p", kind: "durable", key: `log-${++n}` };
      expect(await base.closeStream(fresh)).toBe(0);
      expect(await base.streamInfo(fresh)).toMatchObject({ head: 0, closed: true });
      await expect(base.reserve(fresh, 1)).rejects.toBeInstanceOf(StreamClosedError);
    });

    it("a reserve naming an incarnation takes sequences only while the stream record holds it", async () => {
      const s: StreamId = { project: "p", kind: "durable", key: `inc-${++n}` };
      expect(await base.reserve(s, 1)).toBe(1);
      // A record without one (made before records kept incarnations) says so, and can be given one once.
      await expect(base.reserve(s, 1, { inc: "a" })).rejects.toEqual(new IncarnationMismatchError(undefined));
      expect(await base.setIncarnation(s, "a", "b")).toBe(false);
      expect(await base.setIncarnation(s, "a", null)).toBe(true);
      expect(await base.setIncarnation(s, "x", null)).toBe(false);
      expect(await base.reserve(s, 2, { inc: "a" })).toBe(3);
      // Deleted (closed) and created again: the old incarnation is refused before the close is reported.
      await base.closeStream(s);
      await expect(base.reserve(s, 1, { inc: "a" })).rejects.toBeInstanceOf(StreamClosedError);
      expect(await base.reopenStream(s, "b")).toBe(3);
      const refused = await base.reserve(s, 1, { inc: "a" }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(IncarnationMismatchError);
      expect((refused as IncarnationMismatchError).found).toBe("b");
      expect(await base.head(s)).toBe(3); // nothing taken
      expect(await base.reserve(s, 1, { inc: "b", close: true })).toBe(4);
      await expect(base.reserve(s, 1, { inc: "a" })).rejects.toBeInstanceOf(IncarnationMismatchError);
      await expect(base.reserve(s, 1, { inc: "b" })).rejects.toBeInstanceOf(StreamClosedError);
      // A create that lost to another gives the record the winner's incarnation back, unless replaced since.
      expect(await base.setIncarnation(s, "w", "b")).toBe(true);
      expect(await base.setIncarnation(s, "v", "b")).toBe(false);
    });

    it("stores opaque payloads byte-exact", async () => {
      const s: StreamId = { project: "p", kind: "durable", key: `bytes-${++n}` };
      const bytes = new Uint8Array(256).map((_, i) => i);
      await base.reserve(s, 1);
      await base.append([{ id: `b-${n}`, stream: `p/durable/${s.key}`, seq: 1, eventType: "application/octet-stream", data: null, metadata: {}, createdAt: new Date(), bytes }]);
      const [e] = await base.read(s, 0, 10);
      expect(e?.bytes && Buffer.from(e.bytes).equals(Buffer.from(bytes))).toBe(true);
      expect(e?.data).toBeNull();
    });
  });
}
