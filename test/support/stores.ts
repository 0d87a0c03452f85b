import { randomUUID } from "node:crypto";
import { MemoryStore } from "../../src/store/memory/index.js";
import { MongoStore } from "../../src/store/mongo/index.js";
import type { Store } from "../../src/core/store.js";

export interface StoreFactory {
  name: string;
  /** A fresh, initialised store (its own database when Mongo). */
  make(opts?: { watch?: "auto" | "poll" | "changestream"; dbName?: string; operationTimeoutMs?: number }): Promise<Store>;
  /** Stops whatever the factory started. */
  teardown(): Promise<void>;
}

let mongo: { uri: string; stop(): Promise<void> } | undefined;

/** The adapters every contract and end-to-end suite runs against. */
export const storeFactories: StoreFactory[] = [
  {
    name: "memory",
    async make() {
      const s = new MemoryStore();
      await s.init();
      return s;
    },
    async teardown() {},
  },
  {
    name: "mongo",
    async make(opts = {}) {
      mongo ??= await (await import("./mongo.js")).startTestMongo();
      const s = new MongoStore({
        uri: mongo.uri,
        dbName: opts.dbName ?? `t_${randomUUID().replaceAll("-", "").slice(0, 16)}`,
        watch: opts.watch ?? "auto",
        pollIntervalMs: 20,
        serverSelectionTimeoutMs: 3000,
        ...(opts.operationTimeoutMs !== undefined ? { operationTimeoutMs: opts.operationTimeoutMs } : {}),
      });
      await s.init();
      return s;
    },
    async teardown() {
      await mongo?.stop();
      mongo = undefined;
    },
  },
];
