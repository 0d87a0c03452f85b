/**
 * MEMORY_MAX_BYTES bounds everything the in-memory store holds, not only events: tasks, Durable
 * Streams records, Sailhouse state, API keys (store/memory/budget.ts). When it is full every
 * surface says so — which limit and how to raise it — as the error table answers a capacity bound
 * (503 on the JSON and Durable Streams paths, `resource_exhausted` over RPC), never "the event
 * store is unavailable". Purging gives the room back.
 */
import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { AdminService } from "../gen/admin/v1/admin_pb.js";
import { MemoryBudget, MeteredMap } from "../src/store/memory/budget.js";
import { MemoryDurableStore } from "../src/store/memory/durable.js";
import { MemoryKeyStore } from "../src/store/memory/keys.js";
import { MemorySailhouseStore } from "../src/store/memory/sailhouse.js";
import { MemoryTaskStore } from "../src/store/memory/tasks.js";
import type { App } from "../src/server/app.js";
import { client, postJson, startTestServer } from "./support/server.js";

const P = { "X-Project-ID": "full" };
const h = { headers: { "x-project-id": "full" } };
const MiB = 1024 * 1024;
const pad = (n: number) => "x".repeat(n);

describe("MEMORY_MAX_BYTES counts every in-memory port", () => {
  it("each port's records are charged, refused past the bound with the limit named, and given back when deleted", async () => {
    const budget = new MemoryBudget(64 * 1024);
    const tasks = new MemoryTaskStore(budget);
    const durable = new MemoryDurableStore(budget);
    const keys = new MemoryKeyStore(budget);
    const sailhouse = new MemorySailhouseStore({ budget });
    const at = new Date();
    await tasks.createTask({ id: "t1", project: "p", params: { big: pad(8000) }, agentId: "a", agentName: "n/a", status: "IDLE", createdAt: at, updatedAt: at });
    const afterTask = budget.used;
    expect(afterTask).toBeGreaterThan(8000);
    await durable.create({ project: "p", name: "d", inc: "1", base: 0, contentType: "text/plain", createdAt: at, lastAccessAt: at, closed: false, ancestors: [], refCount: 0, softDeleted: false });
    await keys.insert({ id: "k1", hash: pad(64), project: "p", name: pad(4000), createdAt: at });
    await sailhouse.putSubscription({ project: "p", topic: "t", name: pad(2000), type: "pull" }, 0, "secret");
    await sailhouse.schedule({ id: "s1", project: "p", topic: "t", data: { big: pad(8000) }, metadata: {}, sendAt: at });
    const full = budget.used;
    expect(full).toBeGreaterThan(afterTask + 14_000);
    // Past the bound: refused, nothing stored, the message names the limit and how to raise it.
    const err = await tasks.createTask({ id: "t2", project: "p", params: { big: pad(60_000) }, agentId: "a", agentName: "n/a", status: "IDLE", createdAt: at, updatedAt: at }).catch((e: unknown) => e as Error);
    expect(err).toMatchObject({ name: "CapacityError" });
    expect((err as Error).message).toMatch(/MEMORY_MAX_BYTES=65536.*raise MEMORY_MAX_BYTES/);
    expect(await tasks.getTask("p", "t2")).toBeUndefined();
    expect(budget.used).toBe(full);
    // An update that would not fit leaves the task as it was.
    await expect(tasks.updateTask("p", "t1", { taskMetadata: { big: pad(60_000) }, updatedAt: at })).rejects.toMatchObject({ name: "CapacityError" });
    expect((await tasks.getTask("p", "t1"))?.taskMetadata).toBeUndefined();
    await sailhouse.finishScheduled("s1");
    expect(budget.used).toBeLessThan(full - 8000);
    const map = new MeteredMap<string, string>(budget, "a thing");
    const before = budget.used;
    map.set("a", pad(100));
    map.set("a", pad(10)); // replacing gives back the difference
    map.delete("a");
    expect(budget.used).toBe(before);
  });

  describe("through the service", () => {
    let app: App | undefined;
    afterEach(async () => {
      await app?.close();
      app = undefined;
    });

    it("tasks fill it: then a task, a publish, a Durable Stream and an API key are refused with the limit named (503 / resource_exhausted)", async () => {
      app = await startTestServer({ env: { MEMORY_MAX_BYTES: String(MiB), ADMIN_TOKEN: "admin" } });
      let accepted = 0;
      let refused: { status: number; json: any } | undefined;
      for (let i = 0; i < 200 && !refused; i++) {
        const r = await postJson(app, "/tasks", { agent_name: "ns/a", params: { blob: pad(20_000) } }, P);
        if (r.status === 201) accepted++;
        else refused = r;
      }
      // 1 MiB holds about 50 tasks of 20 kB (it accepted 30 MB of them before).
      expect(accepted).toBeGreaterThan(10);
      expect(accepted).toBeLessThan(60);
      expect(refused?.status).toBe(503);
      const limit = /in-memory store is full.*MEMORY_MAX_BYTES=1048576.*raise MEMORY_MAX_BYTES/;
      expect(JSON.stringify(refused?.json)).toMatch(limit);
      const publish = await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: { blob: pad(30_000) } }] }, P);
      expect(publish.status).toBe(503);
      expect(publish.json.error ?? publish.json.detail).toMatch(limit);
      expect(JSON.stringify(publish.json)).not.toMatch(/unavailable/);
      const rpc = await client(StreamService, app, "grpc")
        .publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{ eventType: "x", data: { kind: { case: "stringValue", value: pad(30_000) } } }] }, h)
        .catch((e: unknown) => ConnectError.from(e));
      expect(rpc).toBeInstanceOf(ConnectError);
      expect((rpc as ConnectError).code).toBe(Code.ResourceExhausted);
      expect((rpc as ConnectError).rawMessage).toMatch(limit);
      // Fill what is left with small tasks, then a Durable Stream and a key have no room either.
      for (let i = 0; i < 2000; i++) if ((await postJson(app, "/tasks", { agent_name: "ns/a" }, P)).status !== 201) break;
      const ds = await fetch(`${app.url}/v1/stream/${pad(900)}`, { method: "PUT", headers: { ...P, "content-type": "text/plain" } });
      expect(ds.status).toBe(503);
      expect(await ds.text()).toMatch(limit);
      const key = await client(AdminService, app, "connect").createApiKey({ project: "full", name: pad(900) }, { headers: { authorization: "Bearer admin" } }).catch((e: unknown) => ConnectError.from(e));
      expect((key as ConnectError).code).toBe(Code.ResourceExhausted);
    });

    it("events fill it; PurgeStream gives the room back", async () => {
      app = await startTestServer({ env: { MEMORY_MAX_BYTES: String(MiB) } });
      let n = 0;
      for (; n < 200; n++) if ((await postJson(app, "/api/v1/events/publish", { topic: "big", events: [{ data: { blob: pad(20_000) } }] }, P)).status !== 200) break;
      expect(n).toBeLessThan(60);
      const streams = client(StreamService, app, "grpc");
      await streams.purgeStream({ stream: { kind: StreamKind.TOPIC, key: "big" } }, h);
      expect((await postJson(app, "/api/v1/events/publish", { topic: "big", events: [{ data: { blob: pad(20_000) } }] }, P)).status).toBe(200);
    });
  });
});
