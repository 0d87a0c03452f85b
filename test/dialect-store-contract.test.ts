/** Contracts of the Sailhouse and TerminalUse stores, run against every adapter, each test on a fresh store. */
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemorySailhouseStore } from "../src/store/memory/sailhouse.js";
import { MemoryTaskStore } from "../src/store/memory/tasks.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { MongoSailhouseStore } from "../src/store/mongo/sailhouse.js";
import { MongoTaskStore } from "../src/store/mongo/tasks.js";
import type { SailhouseStore, Subscription } from "../src/store/sailhouse.js";
import type { TaskStore } from "../src/store/tasks.js";
import type { Store } from "../src/core/store.js";
import { storeFactories } from "./support/stores.js";

for (const factory of storeFactories) {
  describe(`Sailhouse and task stores: ${factory.name}`, () => {
    let base: Store;
    let sh: SailhouseStore;
    let tasks: TaskStore;
    beforeEach(async () => {
      base = await factory.make();
      sh = base instanceof MongoStore ? new MongoSailhouseStore(base.connection) : new MemorySailhouseStore();
      tasks = base instanceof MongoStore ? new MongoTaskStore(base.connection) : new MemoryTaskStore();
      await sh.init();
      await tasks.init();
    });
    afterEach(async () => base.close());
    afterAll(async () => factory.teardown());

    it("initialises twice", async () => {
      await sh.init();
      await tasks.init();
    });

    it("creates, updates and reports subscriptions, keeping the first secret and cursor", async () => {
      const created = await sh.putSubscription({ project: "p", topic: "t", name: "s", type: "pull" }, 5, "secret-1");
      expect(created.outcome).toBe("created");
      expect(created.subscription).toMatchObject({ project: "p", topic: "t", name: "s", type: "pull", cursor: 5, secret: "secret-1" });
      expect((await sh.putSubscription({ project: "p", topic: "t", name: "s", type: "pull" }, 9, "secret-2")).outcome).toBe("none");
      const updated = await sh.putSubscription({ project: "p", topic: "t", name: "s", type: "push", endpoint: "http://h/x", filter: { filters: [], operator: "or" } }, 9, "secret-3");
      expect(updated.outcome).toBe("updated");
      expect(updated.subscription).toMatchObject({ type: "push", endpoint: "http://h/x", filter: { filters: [], operator: "or" }, cursor: 5, secret: "secret-1" });
      expect((await sh.pushSubscriptions()).map((s) => s.name)).toContain("s");
      expect(await sh.getSubscription("other", "t", "s")).toBeUndefined();
    });

    it("lists a topic's subscriptions by name, records push health (a put ends it), deletes a subscription with its deliveries", async () => {
      for (const name of ["b", "a"]) await sh.putSubscription({ project: "p", topic: "lt", name, type: "push", endpoint: "http://h/x" }, 0, "s");
      await sh.putSubscription({ project: "other", topic: "lt", name: "c", type: "pull" }, 0, "s");
      expect((await sh.subscriptionsPage("p", { topic: "lt", limit: 10 })).map((s) => s.name)).toEqual(["a", "b"]);
      const a = (await sh.getSubscription("p", "lt", "a"))!;
      const health = { failures: 2, lastError: "the endpoint answered 500", failingSince: new Date(1_000), retryAt: new Date(3_000) };
      await sh.setPushHealth(a, health);
      expect((await sh.getSubscription("p", "lt", "a"))?.health).toEqual(health);
      expect((await sh.pushSubscriptions()).find((s) => s.topic === "lt" && s.name === "a")?.health).toEqual(health);
      await sh.putSubscription({ project: "p", topic: "lt", name: "a", type: "push", endpoint: "http://h/x" }, 0, "s");
      expect((await sh.getSubscription("p", "lt", "a"))?.health).toBeUndefined();
      await sh.setPushHealth(a, health);
      await sh.setPushHealth(a, undefined);
      expect((await sh.getSubscription("p", "lt", "a"))?.health).toBeUndefined();

      expect(await sh.nextRetry(a)).toBeUndefined();
      const at = (ms: number) => new Date(1_000_000 + ms);
      await sh.advance(a, 0, 2, [{ eventId: "e1", seq: 1, acked: false, lockedUntil: at(500), attempts: 0 }, { eventId: "e2", seq: 2, acked: false, lockedUntil: at(100), attempts: 0 }]);
      expect(await sh.nextRetry(a)).toEqual(at(100));
      await sh.ack(a, "e2");
      expect(await sh.nextRetry(a)).toEqual(at(500));
      expect(await sh.deleteSubscription("p", "lt", "a")).toBe(true);
      expect(await sh.deleteSubscription("p", "lt", "a")).toBe(false);
      expect(await sh.getSubscription("p", "lt", "a")).toBeUndefined();
      // Created again, it starts without the old deliveries.
      const again = (await sh.putSubscription({ project: "p", topic: "lt", name: "a", type: "pull" }, 2, "s")).subscription;
      expect(await sh.claim(again, at(10_000), 1000)).toBeUndefined();
      expect((await sh.subscriptionsPage("p", { topic: "lt", limit: 10 })).map((s) => s.name)).toEqual(["a", "b"]);
    });

    it("pages a project's subscriptions in (topic, name) order, one topic's or all, and counts each one's unacked deliveries", async () => {
      const names = [["b", "x"], ["a", "z"], ["a", "y"], ["é", "a"], ["a/b", "c"]] as const;
      for (const [topic, name] of names) await sh.putSubscription({ project: "pg", topic, name, type: "pull" }, 0, "s");
      await sh.putSubscription({ project: "other", topic: "a", name: "q", type: "pull" }, 0, "s");
      const utf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
      const order = [...names].sort((p, q) => utf8(p[0], q[0]) || utf8(p[1], q[1])).map(([t, n]) => `${t}:${n}`);
      const key = (s: Subscription) => `${s.topic}:${s.name}`;
      const first = await sh.subscriptionsPage("pg", { limit: 2 });
      expect(first.map(key)).toEqual(order.slice(0, 2));
      const rest = await sh.subscriptionsPage("pg", { after: { topic: first[1]!.topic, name: first[1]!.name }, limit: 100 });
      expect(rest.map(key)).toEqual(order.slice(2));
      expect((await sh.subscriptionsPage("pg", { topic: "a", limit: 100 })).map(key)).toEqual(["a:y", "a:z"]);
      expect((await sh.subscriptionsPage("pg", { topic: "a", after: { topic: "a", name: "y" }, limit: 100 })).map(key)).toEqual(["a:z"]);
      expect(await sh.subscriptionsPage("pg", { topic: "a", after: { topic: "b", name: "" }, limit: 100 })).toEqual([]);

      const sub = (await sh.getSubscription("pg", "a", "y"))!;
      expect(await sh.unacked(sub)).toEqual({ count: 0 });
      const d = (eventId: string, seq: number) => ({ eventId, seq, acked: false, lockedUntil: new Date(1_000), attempts: 0 });
      await sh.advance(sub, 0, 9, [d("e7", 7), d("e4", 4), d("e9", 9)]);
      expect(await sh.unacked(sub)).toEqual({ count: 3, oldestSeq: 4 });
      await sh.ack(sub, "e4");
      expect(await sh.unacked(sub)).toEqual({ count: 2, oldestSeq: 7 });
      expect(await sh.unacked((await sh.getSubscription("pg", "a", "z"))!)).toEqual({ count: 0 });
    });

    it("tells when background work is next due: a free scheduled send, a lease that lapses, a wait group that expires", async () => {
      const base = (await sh.nextDue())?.getTime();
      const far = new Date(Date.now() + 3_600_000);
      await sh.schedule({ id: "due-1", project: "p", topic: "t", data: {}, metadata: {}, sendAt: far });
      expect(await sh.nextDue()).toEqual(base !== undefined && base < far.getTime() ? new Date(base) : far);
      await sh.createWaitGroup({ id: "due-wg", project: "p", topic: "t", status: "open", members: [], acked: [], createdAt: new Date(), expiresAt: new Date(far.getTime() - 60_000) });
      expect((await sh.nextDue())?.getTime()).toBeLessThanOrEqual(far.getTime() - 60_000);
      await sh.setWaitGroupStatus("due-wg", ["open"], "completed");
      // A send due now but leased by a worker is due again when its lease lapses, not before.
      const now = new Date();
      await sh.schedule({ id: "due-2", project: "p", topic: "t", data: {}, metadata: {}, sendAt: new Date(now.getTime() - 1000) });
      expect((await sh.claimDue(now, 60_000, 100)).map((i) => i.id)).toContain("due-2");
      const next = (await sh.nextDue())!.getTime();
      expect(next).toBeGreaterThan(now.getTime());
      expect(next).toBeLessThanOrEqual(now.getTime() + 60_000);
      await sh.finishScheduled("due-2");
      await sh.finishScheduled("due-1");
    });

    it("advances a cursor only from where it is, and claims/acks/releases deliveries in sequence order", async () => {
      const { subscription: sub } = await sh.putSubscription({ project: "p", topic: "t2", name: "s", type: "pull" }, 0, "x");
      const now = new Date(1_000_000);
      const d = (eventId: string, seq: number) => ({ eventId, seq, acked: false, lockedUntil: now, attempts: 0 });
      expect(await sh.advance(sub, 0, 3, [d("e2", 2), d("e1", 1), d("e3", 3)])).toBe(true);
      expect(await sh.advance(sub, 0, 3, [d("e1", 1)])).toBe(false); // someone else moved it already
      const fresh = (await sh.getSubscription("p", "t2", "s")) as Subscription;
      expect(fresh.cursor).toBe(3);
      const first = await sh.claim(fresh, now, 30_000);
      expect(first).toMatchObject({ eventId: "e1", seq: 1, attempts: 1 });
      expect((await sh.claim(fresh, now, 30_000))?.eventId).toBe("e2"); // e1 is locked
      expect((await sh.ack(fresh, "e1"))?.acked).toBe(true);
      expect(await sh.ack(fresh, "nope")).toBeUndefined();
      expect(await sh.release(fresh, "e2", now)).toBe(true);
      expect((await sh.claim(fresh, now, 30_000))?.eventId).toBe("e2");
      expect((await sh.claim(fresh, now, 30_000))?.eventId).toBe("e3");
      expect(await sh.claim(fresh, now, 30_000)).toBeUndefined();
      expect((await sh.claim(fresh, new Date(now.getTime() + 30_000), 30_000))?.eventId).toBe("e2"); // lock lapsed
      expect(await sh.release(fresh, "e1", now)).toBe(false); // acked
    });

    it("leases due scheduled events once until the lease lapses", async () => {
      const at = new Date(2_000_000);
      await sh.schedule({ id: "sched-1", project: "p", topic: "t", data: { a: 1 }, metadata: { m: "x" }, sendAt: at, waitGroupInstanceId: "wg" });
      await sh.schedule({ id: "sched-2", project: "p", topic: "t", data: {}, metadata: {}, sendAt: new Date(3_000_000) });
      expect(await sh.claimDue(new Date(1_999_999), 10_000, 10)).toEqual([]);
      const got = await sh.claimDue(at, 10_000, 10);
      expect(got).toEqual([{ id: "sched-1", project: "p", topic: "t", data: { a: 1 }, metadata: { m: "x" }, sendAt: at, waitGroupInstanceId: "wg" }]);
      expect(await sh.claimDue(new Date(at.getTime() + 5_000), 10_000, 10)).toEqual([]);
      expect((await sh.claimDue(new Date(at.getTime() + 10_000), 10_000, 10)).map((s) => s.id)).toEqual(["sched-1"]);
      await sh.finishScheduled("sched-1");
      expect((await sh.claimDue(new Date(3_000_000), 10_000, 10)).map((s) => s.id)).toEqual(["sched-2"]);
    });

    it("tracks wait-group members and acks, and changes status once", async () => {
      await sh.createWaitGroup({ id: "wg-1", project: "p", topic: "done", status: "open", members: [], acked: [], createdAt: new Date(1), expiresAt: new Date(5_000) });
      await sh.addWaitGroupMember("wg-1", "a");
      await sh.addWaitGroupMember("wg-1", "b");
      await sh.addWaitGroupMember("wg-1", "b");
      await sh.removeWaitGroupMember("wg-1", "b");
      const g = await sh.ackWaitGroupMember("wg-1", "a");
      expect(g).toMatchObject({ members: ["a"], acked: ["a"], status: "open" });
      expect(await sh.getWaitGroup("other", "wg-1")).toBeUndefined();
      expect(await sh.setWaitGroupStatus("wg-1", ["open"], "in_progress")).toBe(true);
      expect(await sh.setWaitGroupStatus("wg-1", ["open"], "in_progress")).toBe(false);
      expect((await sh.expiredWaitGroups(new Date(5_000))).map((x) => x.id)).toContain("wg-1");
      expect(await sh.setWaitGroupStatus("wg-1", ["in_progress"], "completed")).toBe(true);
      expect((await sh.expiredWaitGroups(new Date(5_000))).map((x) => x.id)).not.toContain("wg-1");
    });

    it("stores tasks per project", async () => {
      const t = { id: "task-1", project: "p", name: "n", params: { a: [1] }, agentId: "ag", agentName: "ns/ag", status: "IDLE", createdAt: new Date(10), updatedAt: new Date(10) };
      await tasks.createTask(t);
      expect(await tasks.getTask("p", "task-1")).toEqual(t);
      expect(await tasks.getTask("q", "task-1")).toBeUndefined();
    });
  });
}
