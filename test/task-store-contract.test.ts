/** The TaskStore port's contract, run against every adapter, each test on a fresh store (message records are derived from task events: terminaluse.test.ts). */
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryTaskStore } from "../src/store/memory/tasks.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { MongoTaskStore } from "../src/store/mongo/tasks.js";
import type { Store } from "../src/core/store.js";
import type { TaskFilter, TaskPage, TaskRecord, TaskStore } from "../src/store/tasks.js";
import { storeFactories } from "./support/stores.js";

let n = 0;
const id = (prefix: string) => `${prefix}-${++n}`;

function task(extra: Partial<TaskRecord> = {}): TaskRecord {
  return { id: id("task"), project: "p", params: {}, agentId: "agent-1", agentName: "ns/agent", status: "IDLE", createdAt: new Date(1_700_000_000_000), updatedAt: new Date(1_700_000_000_000), ...extra };
}

for (const factory of storeFactories) {
  describe(`task store contract: ${factory.name}`, () => {
    let base: Store;
    let tasks: TaskStore;
    beforeEach(async () => {
      base = await factory.make();
      tasks = base instanceof MongoStore ? new MongoTaskStore(base.connection) : new MemoryTaskStore();
      await tasks.init();
    });
    afterEach(async () => base.close());
    afterAll(async () => factory.teardown());

    it("initialises twice (indexes are created idempotently)", async () => {
      await tasks.init();
      if (base instanceof MongoStore) {
        const names = (await base.db.collection("tasks").indexes()).map((i) => i.name);
        expect(names).toEqual(expect.arrayContaining(["project_created", "project_name_created"]));
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

    it("lists a project's tasks filtered, ordered and paged alike on every store", async () => {
      const project = "listing";
      const at = (s: number) => new Date(1_700_000_000_000 + s * 1000);
      const mk = (i: number, extra: Partial<TaskRecord>) => task({ id: `list-${i}`, project, createdAt: at(i), updatedAt: at(10 - i), ...extra });
      const all = [
        mk(1, { name: "b", agentId: "a1", agentName: "ns1/x", status: "IDLE" }),
        mk(2, { name: "a", agentId: "a1", agentName: "ns1/x", status: "RUNNING" }),
        mk(3, { agentId: "a2", agentName: "ns2/y", status: "CANCELED" }),
        mk(4, { name: "c", agentId: "a2", agentName: "ns.2/y", status: "IDLE" }),
        // Same creation instant as 4: the id breaks the tie.
        mk(5, { name: "c", agentId: "a3", agentName: "ns1/z", status: "IDLE", createdAt: at(4) }),
      ];
      for (const t of all) await tasks.createTask(t);
      await tasks.createTask(task({ id: "list-other-project", project: "elsewhere" }));
      const page: TaskPage = { orderBy: "created_at", direction: "desc", offset: 0, limit: 100 };
      const ids = async (f: TaskFilter, p: Partial<TaskPage> = {}) => (await tasks.listTasks(project, f, { ...page, ...p })).map((t) => t.id);
      expect(await ids({})).toEqual(["list-5", "list-4", "list-3", "list-2", "list-1"]);
      expect(await ids({}, { direction: "asc" })).toEqual(["list-1", "list-2", "list-3", "list-4", "list-5"]);
      expect(await ids({}, { orderBy: "updated_at", direction: "asc" })).toEqual(["list-5", "list-4", "list-3", "list-2", "list-1"]);
      expect(await ids({}, { orderBy: "name", direction: "asc" })).toEqual(["list-3", "list-2", "list-1", "list-4", "list-5"]);
      expect(await ids({}, { offset: 1, limit: 2 })).toEqual(["list-4", "list-3"]);
      expect(await ids({ agentId: "a1" })).toEqual(["list-2", "list-1"]);
      expect(await ids({ agentName: "ns2/y" })).toEqual(["list-3"]);
      // A namespace is the agent name's prefix, matched literally ("ns.2" is not a pattern).
      expect(await ids({ namespace: "ns1" })).toEqual(["list-5", "list-2", "list-1"]);
      expect(await ids({ namespace: "ns.2" })).toEqual(["list-4"]);
      expect(await ids({ namespace: "ns" })).toEqual([]);
      expect(await ids({ statuses: ["IDLE", "CANCELED"] })).toEqual(["list-5", "list-4", "list-3", "list-1"]);
      expect(await ids({ createdAfter: at(1), createdBefore: at(4) })).toEqual(["list-3", "list-2"]);
      expect(await ids({ namespace: "ns1", statuses: ["IDLE"], agentName: "ns1/z" })).toEqual(["list-5"]);
      // By name: the newest of that name, of that agent when given.
      expect((await tasks.getTaskByName(project, "c"))?.id).toBe("list-5");
      expect((await tasks.getTaskByName(project, "c", "a2"))?.id).toBe("list-4");
      expect(await tasks.getTaskByName(project, "c", "a1")).toBeUndefined();
      expect(await tasks.getTaskByName("elsewhere", "c")).toBeUndefined();
    });

    it("updates a task atomically, only from the statuses it names, within its project", async () => {
      const t = task({ project: "upd", status: "IDLE" });
      await tasks.createTask(t);
      const later = new Date(1_700_000_500_000);
      expect(await tasks.updateTask("other", t.id, { status: "CANCELED", updatedAt: later })).toBeUndefined();
      expect(await tasks.updateTask("upd", "no-such-task", { status: "CANCELED", updatedAt: later })).toBeUndefined();
      const meta = { nested: { "a.b": [1, "two", null] }, "$x": true };
      expect(await tasks.updateTask("upd", t.id, { taskMetadata: meta, updatedAt: later })).toEqual({ ...t, taskMetadata: meta, updatedAt: later });
      // 16 concurrent cancels from IDLE/RUNNING: exactly one applies (one conditional findOneAndUpdate
      // on MongoDB; mongo-java-server's findAndModify is not atomic, so there only "at least one").
      const results = await Promise.all(Array.from({ length: 16 }, () => tasks.updateTask("upd", t.id, { status: "CANCELED", statusReason: "stop", updatedAt: later, fromStatuses: ["IDLE", "RUNNING"] })));
      const applied = results.filter((r) => r !== undefined);
      if (base instanceof MongoStore && !process.env["MONGODB_URI"]) expect(applied.length).toBeGreaterThanOrEqual(1);
      else expect(applied).toHaveLength(1);
      expect(await tasks.updateTask("upd", t.id, { status: "RUNNING", updatedAt: later, fromStatuses: ["IDLE", "RUNNING"] })).toBeUndefined();
      expect(await tasks.getTask("upd", t.id)).toEqual({ ...t, status: "CANCELED", statusReason: "stop", taskMetadata: meta, updatedAt: later });
    });
  });
}
