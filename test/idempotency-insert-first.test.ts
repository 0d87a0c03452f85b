/**
 * Server-made idempotency keys (`keysAreNew`) are inserted without a lookup first; a repeat (a
 * retry after a crash) still answers with the stored event and stores nothing new. Both stores.
 */
import { afterAll, describe, expect, it } from "vitest";
import { EventLog } from "../src/core/log.js";
import type { Store } from "../src/core/store.js";
import { storeFactories } from "./support/stores.js";

for (const factory of storeFactories) {
  describe(`insert first for new idempotency keys (${factory.name} store)`, () => {
    let store: Store;
    afterAll(async () => {
      await store?.close();
      await factory.teardown();
    });

    it("stores a new key without looking it up, and answers a repeat with the stored event", async () => {
      store = await factory.make();
      const lookups: string[] = [];
      const find = store.findByIdempotencyKey.bind(store);
      store.findByIdempotencyKey = (s, k) => (lookups.push(k), find(s, k));
      const log = new EventLog(store);
      const stream = { project: "p", kind: "topic" as const, key: `if-${Date.now()}` };
      const draft = (id: string, n: number) => ({ id, eventType: "", data: { n }, idempotencyKey: `sailhouse:${id}` });
      const [first] = await log.publish(stream, [draft("e-1", 1)], { keysAreNew: true, internalKeys: true });
      expect(lookups).toEqual([]);
      // A retry after a crash: same id, same key, other data. The stored event answers it.
      const [again] = await log.publish(stream, [draft("e-1", 2)], { keysAreNew: true, internalKeys: true });
      expect(lookups).toEqual(["sailhouse:e-1"]);
      expect([again!.id, again!.seq, again!.data]).toEqual([first!.id, first!.seq, { n: 1 }]);
      const [next] = await log.publish(stream, [draft("e-2", 3)], { keysAreNew: true, internalKeys: true });
      const page = await log.list(stream, 0, 100);
      expect(page.events.map((e) => [e.id, e.data])).toEqual([
        ["e-1", { n: 1 }],
        ["e-2", { n: 3 }],
      ]);
      // The failed round's sequence became a void placeholder: the next event is after it.
      expect(next!.seq).toBe(first!.seq + 2);
    });
  });
}
