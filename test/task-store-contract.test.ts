/** The TaskStore port's contract (tasks and message records), run against every adapter. */
import { afterAll, describe, expect, it } from "vitest";
import { MemoryTaskStore } from "../src/store/memory/tasks.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { MongoTaskStore } from "../src/store/mongo/tasks.js";
import type { Store } from "../src/core/store.js";
import type { MessageRecord, TaskRecord, TaskStore } from "../src/store/tasks.js";
import { storeFactories } from "./support/stores.js";

let n = 0;
const id = (prefix: string) => `${prefix}-${++n}`;

function task(extra: Partial<TaskRecord> = {}): TaskRecord {
  return { id: id("task"), project: "p", params: {}, agentId: "agent-1", agentName: "ns/agent", status: "IDLE", createdAt: new Date(1_700_000_000_000), updatedAt: new Date(1_700_000_000_000), ...extra };
}

function message(taskId: string, extra: Partial<MessageRecord> = {}): MessageRecord {
  return { id: id("msg"), project: "p", taskId, content: { type: "text", author: "user", content: "hi", format: "plain" }, createdAt: new Date(1_700_000_000_000), ...extra };
}

for (const factory of storeFactories) {
  describe(`task store contract: ${factory.name}`, () => {
    let base: Store;
    let tasks: TaskStore;
    afterAll(async () => {
      await base?.close();
      await factory.teardown();
    });

    it("initialises twice (indexes are created idempotently)", async () => {
      base = await factory.make();
      tasks = base instanceof MongoStore ? new MongoTaskStore(base.db) : new MemoryTaskStore();
      await tasks.init();
      await tasks.init();
      if (base instanceof MongoStore) {
        const names = (await base.db.collection("messages").indexes()).map((i) => i.name);
        expect(names).toContain("project_task_created_seq");
      }
    });

    it("round-trips a task exactly: any JSON params (keys MongoDB would refuse too), optional fields absent when not given", async () => {
      const params = { "$set": { "a.b": [1, 2.5, "three", null, true] }, nested: { deep: { deeper: ["é", "😀"] } }, empty: {} };
      const full = task({ name: "named", params, filesystemId: "fs-1" });
      await tasks.createTask(full);
      expect(await tasks.getTask("p", full.id)).toEqual(full);
      const bare = task();
      await tasks.createTask(bare);
      const got = (await tasks.getTask("p", bare.id))!;
      expect(Object.keys(got).sort()).toEqual(["agentId", "agentName", "createdAt", "id", "params", "project", "status", "updatedAt"]);
      expect(got.createdAt).toBeInstanceOf(Date);
      expect(got.createdAt.getTime()).toBe(1_700_000_000_000);
    });

    it("scopes tasks by project and never overwrites one", async () => {
      const t = task({ project: "acme" });
      await tasks.createTask(t);
      expect(await tasks.getTask("other", t.id)).toBeUndefined();
      expect(await tasks.getTask("acme", "no-such-task")).toBeUndefined();
      await expect(tasks.createTask({ ...t, project: "other", name: "hijack" })).rejects.toThrow();
      expect(await tasks.getTask("acme", t.id)).toEqual(t);
      expect(await tasks.getTask("other", t.id)).toBeUndefined();
    });

    it("writes a message once under 32 concurrent writes of one id; the first content stays", async () => {
      const t = task();
      await tasks.createTask(t);
      const m = message(t.id, { seq: 1 });
      await tasks.addMessage(m);
      await Promise.all(Array.from({ length: 32 }, (_v, i) => tasks.addMessage({ ...m, content: { type: "text", author: "user", content: `retry ${i}`, format: "plain" } })));
      expect(await tasks.listMessages("p", t.id)).toEqual([m]);
    });

    it("lists a task's messages oldest first, by sequence within one instant, scoped by project and task", async () => {
      const t = task();
      await tasks.createTask(t);
      const at = new Date(1_700_000_100_000);
      // One group commit: same instant; the ids sort against the sequence order.
      const m3 = message(t.id, { id: "a-3", createdAt: at, seq: 3, content: { type: "data", author: "user", data: { n: 3 } } });
      const m2 = message(t.id, { id: "b-2", createdAt: at, seq: 2 });
      const m1 = message(t.id, { id: "c-1", createdAt: new Date(at.getTime() - 1), seq: 1 });
      const later = message(t.id, { id: "0-later", createdAt: new Date(at.getTime() + 1), seq: 4 });
      for (const m of [later, m3, m2, m1]) await tasks.addMessage(m);
      await tasks.addMessage(message("another-task", { createdAt: at }));
      await tasks.addMessage(message(t.id, { project: "other", createdAt: at }));
      expect((await tasks.listMessages("p", t.id)).map((m) => m.id)).toEqual(["c-1", "b-2", "a-3", "0-later"]);
      expect((await tasks.listMessages("p", t.id))[2]).toEqual(m3);
      expect(await tasks.listMessages("p", "no-such-task")).toEqual([]);
      expect((await tasks.listMessages("other", t.id)).map((m) => m.project)).toEqual(["other"]);
    });
  });
}
