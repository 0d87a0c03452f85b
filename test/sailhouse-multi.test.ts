/** Sailhouse with several service instances on one MongoDB, and across a restart. */
import { afterAll, describe, expect, it } from "vitest";
import { SailhouseClient } from "@sailhouse/client";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";
import { eventually } from "./support/raw.js";
import type { MongoStore } from "../src/store/mongo/index.js";

const mongo = storeFactories.find((f) => f.name === "mongo")!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Sailhouse on one MongoDB shared by several instances", () => {
  const apps: App[] = [];
  afterAll(async () => {
    for (const a of apps) await a.close();
    await mongo.teardown();
  });

  it("appends each scheduled event exactly once while two instances' schedulers race", async () => {
    const dbName = `sh_race_${Date.now()}`;
    for (let i = 0; i < 2; i++) apps.push(await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }), workerIntervalMs: 20 }));
    const [one, two] = apps as [App, App];
    const c1 = new SailhouseClient("k", { api_url: one.url });
    const c2 = new SailhouseClient("k", { api_url: two.url });
    const topic = `race-${Date.now()}`;
    await c1.pull(topic, "s");
    const sendAt = new Date(Date.now() + 800);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await (i % 2 ? c1 : c2).publish(topic, { i }, { send_at: sendAt })).id);
    // Pull until all 40 came (however slowly a busy machine schedules them: the test's timeout
    // bounds this), then until no scheduled send is left: each is deleted only after its append,
    // so from then on nothing can be appended again, and a duplicate would be pulled now.
    const got: string[] = [];
    while (got.length < ids.length) {
      const e = await (got.length % 2 ? c1 : c2).pull(topic, "s");
      if (e) {
        got.push(e.id);
        await e.ack();
      } else await sleep(25);
    }
    const scheduled = (one.store as MongoStore).db.collection("sh_scheduled");
    await eventually(async () => (await scheduled.countDocuments({ topic })) === 0, 60_000, "every scheduled send finished");
    expect(await c1.pull(topic, "s")).toBeNull();
    expect([...got].sort()).toEqual([...ids].sort());
    const listed = await c2.getEvents(topic, "s", {});
    expect(listed.events.map((e) => e.id).sort()).toEqual([...ids].sort());
  }, 120_000);

  it("keeps subscription positions and acks across a restart", async () => {
    const dbName = `sh_restart_${Date.now()}`;
    const topic = `restart-${Date.now()}`;
    let app = await startTestServer({ store: await mongo.make({ dbName }) });
    let c = new SailhouseClient("k", { api_url: app.url });
    await c.pull(topic, "s");
    const a = await c.publish(topic, { n: 1 });
    const b = await c.publish(topic, { n: 2 });
    const first = await c.pull(topic, "s");
    expect(first?.id).toBe(a.id);
    await first!.ack();
    await app.close();

    app = await startTestServer({ store: await mongo.make({ dbName }) });
    apps.push(app);
    c = new SailhouseClient("k", { api_url: app.url });
    const next = await c.pull(topic, "s");
    expect(next?.id).toBe(b.id);
    await next!.ack();
    expect(await c.pull(topic, "s")).toBeNull();
  }, 60_000);
});
