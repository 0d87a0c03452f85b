/**
 * Sailhouse's own SDKs against the started service, with auth off and with AUTH=required (the key
 * as both SDKs send it: a raw `Authorization: <key>`): the Python SDK (`sailhouse` on PyPI, pinned
 * in test/sdk/requirements.txt) and the JavaScript SDK (`@sailhouse/client`, a pinned
 * devDependency; test/sailhouse.test.ts drives it further with auth off). Every call each offers
 * that reaches the service; assertions on the SDK's own objects.
 */
import { SailhouseClient } from "@sailhouse/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { itSdk, RUST_SAILHOUSE, runPythonSdk, runSdkBinary, rustSdkAvailable, rustSdkRequired } from "./support/python-sdk.js";

const MODES: { name: string; env: Record<string, string>; apiKey: string }[] = [
  { name: "auth off", env: { AUTH: "off" }, apiKey: "any-key-is-ignored" },
  // The operator allow-list lets push endpoints use loopback with API keys on (README, "Push endpoints").
  { name: "AUTH=required", env: { AUTH: "required", API_KEYS: "acme:sh-key-1", PUSH_ALLOW: "127.0.0.1" }, apiKey: "sh-key-1" },
];

for (const mode of MODES) {
  describe(`Sailhouse SDKs, ${mode.name}`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ env: mode.env });
    });
    afterAll(async () => app?.close());

    itSdk("Python SDK: publish, pull (POST), ack, nack, subscribe, get_events, scheduled publish", async () => {
      const r = await runPythonSdk("sailhouse_py.py", { baseUrl: app.url, apiKey: mode.apiKey, args: { topic: "orders", subscription: "py-workers" } });
      expect(r.first_pull).toBeNull();
      expect(r.pulled).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), data: { n: 0 }, types: { id: "str", data: "dict" } });
      expect(r.nack_redelivered).toBe(true);
      expect(r.subscribed).toEqual([{ n: 2 }]);
      expect(r.after_subscribe_pull).toBeNull();
      expect(r.page).toEqual({ offset: 1, limit: 2, data: [{ n: 1 }, { n: 2 }], ids: ["str", "str"] });
      expect(r.as_type).toEqual({ n: 1 });
      expect(r.unknown_ack).toMatchObject({ error: "SailhouseError", message: "Failed to acknowledge message: 404" });
    });

    it("JavaScript SDK: publish, pull, ack, ackEvent, getEvents, wait, subscriber, admin.registerPushSubscription", async () => {
      const sh = new SailhouseClient(mode.apiKey, { api_url: app.url });
      const topic = "js-orders";
      expect(await sh.pull(topic, "js")).toBeNull();
      const a = await sh.publish(topic, { n: 1 }, { metadata: { source: "js" } });
      const b = await sh.publish(topic, { n: 2 });
      expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
      const first = await sh.pull<{ n: number }>(topic, "js");
      expect(first).toMatchObject({ id: a.id, data: { n: 1 }, metadata: { source: "js" }, topic, subscription: "js" });
      expect(Number.isNaN(Date.parse(first!.timestamp))).toBe(false);
      await first!.ack();
      const second = await sh.pull<{ n: number }>(topic, "js");
      await sh.ackEvent(topic, "js", second!.id);
      expect(second!.id).toBe(b.id);
      const page = await sh.getEvents<{ n: number }>(topic, "js", { time_window: "1h", queryable_path: "n" });
      expect([page.offset, page.limit, page.events.map((e) => e.data.n)]).toEqual([0, 100, [1, 2]]);
      expect(page.events.map((e) => e.queryableValue)).toEqual(["1", "2"]); // the value at queryable_path, as text
      await sh.publish(topic, { later: true }, { send_at: new Date(Date.now() + 3_600_000) });
      // wait(): a wait group over two events; acking both publishes its completion to the topic.
      expect(await sh.pull("js-done", "watch")).toBeNull();
      await sh.wait("js-done", [{ topic, body: { step: 1 } }, { topic, body: { step: 2 } }], { ttl: "10m" });
      const seen: unknown[] = [];
      const subscriber = sh.subscriber();
      subscriber.subscribe(topic, "js", async ({ event }) => {
        seen.push(event.data);
        if (seen.length === 2) subscriber.stop();
      });
      await subscriber.start(); // acks each event after its handler; returns once stopped
      expect(seen).toEqual([{ step: 1 }, { step: 2 }]);
      const done = await (async () => {
        for (let i = 0; i < 100; i++) {
          const e = await sh.pull<{ status: string }>("js-done", "watch");
          if (e) return e;
          await new Promise((r) => setTimeout(r, 50));
        }
        return null;
      })();
      expect(done?.data).toMatchObject({ status: "completed" });
      const reg = await sh.admin.registerPushSubscription(topic, "hook", "http://127.0.0.1:9/hook");
      expect(reg.outcome).toBe("created");
    });

    it.skipIf(!rustSdkAvailable && !rustSdkRequired)("Rust SDK (crates.io sailhouse 0.2.0): publish, get_events, Event::ack, wait, admin.register_push_subscription", async () => {
      expect(rustSdkAvailable, "build it: cargo build --locked --manifest-path test/sdk/rust/Cargo.toml").toBe(true);
      const js = new SailhouseClient(mode.apiKey, { api_url: app.url });
      expect(await js.pull("rs-orders", "rs")).toBeNull(); // the subscription the Rust SDK lists (it has no pull)
      expect(await js.pull("rs-done", "watch")).toBeNull();
      const r = await runSdkBinary(RUST_SAILHOUSE, { baseUrl: app.url, apiKey: mode.apiKey, args: { topic: "rs-orders", subscription: "rs", done_topic: "rs-done", hook_topic: "rs-hooks" } });
      expect(r.published).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/), expect.stringMatching(/^[0-9a-f-]{36}$/)]);
      expect(r.page).toEqual({ offset: 0, limit: 10, events: [{ id: r.published[0], data: { n: 1 } }, { id: r.published[1], data: { n: 2 } }] });
      expect(r.typed).toEqual([1, 2]);
      expect([r.waited, r.registered]).toEqual([true, "created"]);
      // Its acks took (POST …/events/{id} with a {} body): nothing is left on rs-orders.
      expect(await js.pull("rs-orders", "rs")).toBeNull();
      // sailhouse 0.2.0's wait() sends every event to the wait group's topic, not to WaitEvent.topic (the
      // SDK's doing: the service stores what it is sent); acking them completes the group.
      const left = [await js.pull<{ step: number }>("rs-done", "watch"), await js.pull<{ step: number }>("rs-done", "watch")];
      expect(left.map((e) => e?.data)).toEqual([{ step: 1 }, { step: 2 }]);
      for (const e of left) await e!.ack();
      let done = null;
      for (let i = 0; i < 100 && !done; i++) done = (await js.pull<{ status: string }>("rs-done", "watch")) ?? (await new Promise((f) => setTimeout(f, 50)), null);
      expect(done?.data).toMatchObject({ status: "completed" });
      if (mode.env.AUTH === "required") {
        const denied = await runSdkBinary(RUST_SAILHOUSE, { baseUrl: app.url, apiKey: "wrong", args: { topic: "rs-orders", subscription: "rs", done_topic: "x", hook_topic: "y" } });
        expect(denied.publish_error).toMatch(/decoding response body/);
      }
    });

    it("Go SDK's request shapes (github.com/sailhouse/sdk-go is not reachable through the module proxy here): a single {path, value} filter", async () => {
      // RegisterPushSubscription sends {type, endpoint, filter: {path, value}}; served as an equals filter.
      const headers = { authorization: mode.apiKey, "x-source": "sailhouse-go", "content-type": "application/json" };
      const put = await fetch(`${app.url}/topics/go-orders/subscriptions/go-sub`, { method: "PUT", headers, body: JSON.stringify({ type: "pull", filter: { path: "kind", value: "keep" } }) });
      expect([put.status, await put.json()]).toEqual([200, { outcome: "created" }]);
      const sh = new SailhouseClient(mode.apiKey, { api_url: app.url });
      await sh.publish("go-orders", { kind: "drop" });
      const kept = await sh.publish("go-orders", { kind: "keep" });
      expect((await sh.pull("go-orders", "go-sub"))?.id).toBe(kept.id);
      expect(await sh.pull("go-orders", "go-sub")).toBeNull();
      // GetEvents(…, WithTimeWindow(6*time.Hour)) sends Go's duration text.
      const listed = await fetch(`${app.url}/topics/go-orders/subscriptions/go-sub/events?time_window=6h0m0s&limit=10`, { headers });
      expect(listed.status).toBe(200);
      expect(((await listed.json()) as { events: { id: string }[] }).events.map((e) => e.id)).toEqual([kept.id]);
    });

    if (mode.env.AUTH === "required") {
      it("JavaScript SDK with a wrong key: the call rejects with the 401", async () => {
        const sh = new SailhouseClient("wrong", { api_url: app.url });
        await expect(sh.publish("js-orders", { n: 1 })).rejects.toMatchObject({ status: 401 });
      });

      itSdk("Python SDK with a wrong key: it raises its SailhouseError with 401", async () => {
        const r = await runPythonSdk("sailhouse_py.py", { baseUrl: app.url, apiKey: "wrong", args: { topic: "orders", subscription: "x" } }).catch((e: Error) => e.message);
        expect(r).toMatch(/SailhouseError: Failed to pull message: 401/);
      });
    }
  });
}
