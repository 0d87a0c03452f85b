/**
 * Sailhouse end to end, with Sailhouse's own JavaScript client (@sailhouse/client, `api_url`
 * pointed at the service) and the generated Connect client, on every store adapter.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SailhouseClient } from "@sailhouse/client";
import { Code, ConnectError } from "@connectrpc/connect";
import { SailhouseService } from "../gen/sailhouse/v1/sailhouse_pb.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

let n = 0;
const name = (p: string) => `${p}-${++n}-${Date.now()}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(fn: () => Promise<T | undefined | null>, timeoutMs = 10_000, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== null) return v;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await sleep(stepMs);
  }
}

for (const factory of storeFactories) {
  describe(`Sailhouse on the ${factory.name} store`, () => {
    let app: App;
    let clock = 0;
    let sh: SailhouseClient;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), now: () => Date.now() + clock, workerIntervalMs: 50 });
      sh = new SailhouseClient("test-key", { api_url: app.url });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("publishes (201 {id}) and pulls, acks; a subscription sees events published after it exists", async () => {
      const topic = name("orders");
      const before = await sh.publish(topic, { n: 0 });
      expect(before.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(await sh.pull(topic, "workers")).toBeNull(); // creates the pull subscription at the head
      const a = await sh.publish(topic, { n: 1 }, { metadata: { source: "test" } });
      const b = await sh.publish(topic, { n: 2 });
      const first = await sh.pull<{ n: number }>(topic, "workers");
      expect(first).toMatchObject({ id: a.id, data: { n: 1 }, metadata: { source: "test" } });
      expect(Date.parse(first!.timestamp)).not.toBeNaN();
      await first!.ack();
      const second = await sh.pull<{ n: number }>(topic, "workers");
      expect(second).toMatchObject({ id: b.id, data: { n: 2 } });
      await second!.ack();
      expect(await sh.pull(topic, "workers")).toBeNull();
      // The raw status codes the SDKs depend on.
      const raw = await postJson(app, `/topics/${topic}/events`, { data: { n: 3 } }, { authorization: "test-key" });
      expect(raw.status).toBe(201);
      expect(Object.keys(raw.json)).toEqual(["id"]);
      const pulled = await fetch(`${app.url}/topics/${topic}/subscriptions/workers/events/pull`);
      expect(pulled.status).toBe(200);
      const body = await pulled.json();
      expect(body).toMatchObject({ id: raw.json.id, topic_id: topic, data: { n: 3 }, metadata: {} });
      const empty = await fetch(`${app.url}/topics/${topic}/subscriptions/workers/events/pull`);
      expect(empty.status).toBe(204);
    });

    it("locks a pulled event for 30 s, redelivers after the lock lapses, and nack makes it due at once", async () => {
      const topic = name("locks");
      await sh.pull(topic, "s");
      const e = await sh.publish(topic, { job: 1 });
      const got = await sh.pull(topic, "s");
      expect(got?.id).toBe(e.id);
      expect(await sh.pull(topic, "s")).toBeNull(); // locked
      clock += 29_000;
      expect(await sh.pull(topic, "s")).toBeNull();
      clock += 2_000; // 31 s after the pull: due again
      const again = await sh.pull(topic, "s");
      expect(again?.id).toBe(e.id);
      const nack = await fetch(`${app.url}/topics/${topic}/subscriptions/s/events/${e.id}/nack`, { method: "POST" });
      expect(nack.status).toBe(204);
      const third = await sh.pull(topic, "s");
      expect(third?.id).toBe(e.id);
      await third!.ack();
      clock += 60_000;
      expect(await sh.pull(topic, "s")).toBeNull(); // acked: never again
      const unknownAck = await fetch(`${app.url}/topics/${topic}/subscriptions/s/events/not-an-event`, { method: "POST" });
      expect(unknownAck.status).toBe(404);
      const unknownSub = await fetch(`${app.url}/topics/${topic}/subscriptions/nobody/events/${e.id}`, { method: "POST" });
      expect(unknownSub.status).toBe(404);
    });

    it("holds send_at events and appends them, in order, when due: never early, and soon after", async () => {
      const topic = name("delayed");
      await sh.pull(topic, "s");
      const t0 = Date.now() + clock;
      const later = await sh.publish(topic, { k: "later" }, { send_at: new Date(t0 + 1600) });
      const soon = await sh.publish(topic, { k: "soon" }, { send_at: new Date(t0 + 900) });
      const now = await sh.publish(topic, { k: "now" });
      // Each arrival with the time the service appended it (the event's timestamp, the service's
      // clock): the test's own polling and a busy machine do not enter the figures.
      const arrivals: [string, number][] = [];
      while (arrivals.length < 3) {
        const e = await sh.pull<{ k: string }>(topic, "s");
        if (e) {
          arrivals.push([e.id, Date.parse(e.timestamp)]);
          await e.ack();
        } else await sleep(20);
      }
      expect(arrivals.map((a) => a[0])).toEqual([now.id, soon.id, later.id]);
      expect(arrivals[1]![1]).toBeGreaterThanOrEqual(t0 + 900);
      expect(arrivals[2]![1]).toBeGreaterThanOrEqual(t0 + 1600);
      // Soon after: measured on the service's clock, so the bound holds on a busy machine and
      // still fails a scheduler that misses its due time (the worker here rescans every 50 ms).
      expect(arrivals[1]![1] - (t0 + 900)).toBeLessThan(10_000);
      expect(arrivals[2]![1] - (t0 + 1600)).toBeLessThan(10_000);
      // Appended once each: the topic holds exactly these three.
      const listed = await sh.getEvents(topic, "s");
      expect(listed.events.map((e) => e.id)).toEqual([now.id, soon.id, later.id]);
    });

    it("lists a subscription's events with offset, limit and time_window", async () => {
      const topic = name("list");
      await sh.pull(topic, "s");
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push((await sh.publish(topic, { i, nested: { v: `v${i}` } })).id);
      const page = await sh.getEvents<{ i: number }>(topic, "s");
      expect(page.offset).toBe(0);
      expect(page.limit).toBe(100);
      expect(page.events.map((e) => e.id)).toEqual(ids);
      const raw = await getJson(app, `/topics/${topic}/subscriptions/s/events?offset=1&limit=2&queryable_path=nested.v&time_window=10m`);
      expect(raw.status).toBe(200);
      expect(raw.json.offset).toBe(1);
      expect(raw.json.limit).toBe(2);
      expect(raw.json.events.map((e: any) => [e.id, e.data.i, e.queryableValue])).toEqual([
        [ids[1], 1, "v1"],
        [ids[2], 2, "v2"],
      ]);
      clock += 11 * 60_000;
      expect((await getJson(app, `/topics/${topic}/subscriptions/s/events?time_window=10m`)).json.events).toEqual([]);
    });

    it("completes a wait group exactly once, after the last ack and not before", async () => {
      const done = name("done");
      const t1 = name("wg-a");
      const t2 = name("wg-b");
      await sh.pull(done, "watch");
      await sh.pull(t1, "s");
      await sh.pull(t2, "s");
      await sh.wait(done, [
        { topic: t1, body: { step: 1 } },
        { topic: t2, body: { step: 2 } },
        { topic: t2, body: { step: 3 } },
      ]);
      const e1 = await until(() => sh.pull(t1, "s"));
      const e2 = await until(() => sh.pull(t2, "s"));
      const e3 = await until(() => sh.pull(t2, "s"));
      await e1.ack();
      await e2.ack();
      await sleep(200);
      expect(await sh.pull(done, "watch")).toBeNull(); // one member still unacked
      await e3.ack();
      const completion = await until(() => sh.pull<{ wait_group_instance_id: string; status: string }>(done, "watch"));
      expect(completion.data.status).toBe("completed");
      await completion.ack();
      await e3.ack(); // a repeated ack completes nothing again
      await sleep(300);
      expect(await sh.pull(done, "watch")).toBeNull();
      expect((await sh.getEvents(done, "watch")).events).toHaveLength(1);
    });

    it("publishes a wait group's event when its ttl lapses", async () => {
      const done = name("wg-ttl");
      await sh.pull(done, "watch");
      const r = await postJson(app, "/waitgroups/instances", { topic: done, ttl: "2s" });
      expect(r.status).toBe(200);
      const id = r.json.wait_group_instance_id;
      await sh.publish(name("wg-ttl-member"), { x: 1 }, { wait_group_instance_id: id });
      expect((await fetch(`${app.url}/waitgroups/instances/${id}/events`, { method: "PUT", body: "{}" })).status).toBe(200);
      expect(await sh.pull(done, "watch")).toBeNull();
      clock += 3000;
      const timedOut = await until(() => sh.pull<{ status: string; wait_group_instance_id: string }>(done, "watch"));
      expect(timedOut.data).toEqual({ wait_group_instance_id: id, status: "expired" });
    });

    it("registers push subscriptions with the SDK's admin client and delivers signed pushes, retrying failures", async () => {
      const topic = name("push");
      const received: { body: string; signature: string; eventId: string }[] = [];
      let fail = 1;
      const endpoint = http.createServer((req, res) => {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
          if (fail-- > 0) {
            res.writeHead(500).end();
            return;
          }
          received.push({ body, signature: String(req.headers["sailhouse-signature"]), eventId: String(req.headers["event-id"]) });
          res.writeHead(200).end();
        });
      });
      await new Promise<void>((r) => endpoint.listen(0, "127.0.0.1", r));
      try {
        const url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/hook`;
        const reg = await sh.admin.registerPushSubscription(topic, "hook", url, { filter: { filters: [{ path: "kind", condition: "equals", value: "keep" }], operator: "and" } });
        expect(reg.outcome).toBe("created");
        const secret = (reg as unknown as { secret: string }).secret;
        expect(secret).toMatch(/^[0-9a-f]{48}$/);
        expect((await sh.admin.registerPushSubscription(topic, "hook", url, { filter: { filters: [{ path: "kind", condition: "equals", value: "keep" }], operator: "and" } })).outcome).toBe("none");
        await sh.publish(topic, { kind: "drop" });
        const kept = await sh.publish(topic, { kind: "keep", n: 1 });
        clock += 0;
        await until(async () => (received.length >= 1 ? true : (clock += 1000, undefined)), 15_000, 100);
        await sleep(300);
        expect(received).toHaveLength(1);
        const push = received[0]!;
        expect(push.eventId).toBe(kept.id);
        expect(JSON.parse(push.body)).toMatchObject({ id: kept.id, data: { kind: "keep", n: 1 } });
        expect(sh.verifyPushSubscription(push.signature, push.body, secret)).toBe(true);
        const bad = await fetch(`${app.url}/api/v1/topics/${topic}/subscriptions/hook`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ type: "push" }) });
        expect(bad.status).toBe(400);
        expect(((await bad.json()) as { error: string }).error).toMatch(/endpoint/);
      } finally {
        endpoint.close();
      }
    });

    it("rejects bad sends with 400/404/413 JSON errors and stores nothing", async () => {
      const topic = name("bad");
      await sh.pull(topic, "s");
      const cases: [unknown, number, RegExp][] = [
        [{}, 400, /data/],
        [{ data: [1, 2] }, 400, /data/],
        [{ data: "x" }, 400, /data/],
        [{ data: {}, send_at: "tomorrow" }, 400, /send_at/],
        [{ data: {}, metadata: 5 }, 400, /metadata/],
        ["{not json", 400, /JSON/],
        [{ data: {}, wait_group_instance_id: "nope" }, 404, /wait group/],
        [{ data: { big: "x".repeat(4 * 1024 * 1024) } }, 413, /exceeds/],
      ];
      for (const [body, status, msg] of cases) {
        const r = await postJson(app, `/topics/${topic}/events`, body);
        expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(status);
        expect(r.json.error).toMatch(msg);
      }
      await expect(sh.publish(topic, "not an object" as never)).rejects.toThrow();
      expect(await sh.pull(topic, "s")).toBeNull();
      expect((await sh.getEvents(topic, "s")).events).toEqual([]);
      const badSub = await fetch(`${app.url}/topics/${topic}/subscriptions/x`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ type: "carrier-pigeon" }) });
      expect(badSub.status).toBe(400);
      const badFilter = await fetch(`${app.url}/topics/${topic}/subscriptions/x`, { method: "PUT", body: JSON.stringify({ type: "pull", filter: { filters: [{ path: "a", condition: "resembles" }] } }) });
      expect(badFilter.status).toBe(400);
      expect((await getJson(app, `/topics/${topic}/subscriptions/x/events`)).status).toBe(404);
      expect((await fetch(`${app.url}/waitgroups/instances/nope/events`, { method: "PUT" })).status).toBe(404);
      expect((await postJson(app, "/waitgroups/instances", { ttl: "1m" })).status).toBe(400);
      expect((await postJson(app, "/waitgroups/instances", { topic: "t", ttl: "soon" })).status).toBe(400);
    });

    it("serves the same operations over gRPC, with a server-streaming subscription", async () => {
      const rpc = client(SailhouseService, app, "grpc");
      const topic = name("rpc");
      const put = await rpc.putSubscription({ topicSlug: topic, subscriptionSlug: "s", type: "pull" });
      expect(put.outcome).toBe("created");
      expect((await rpc.pullEvent({ topicSlug: topic, subscriptionSlug: "s" })).found).toBe(false);
      const sent = await rpc.sendEvent({ topicSlug: topic, data: { a: 1 } });
      const pulled = await rpc.pullEvent({ topicSlug: topic, subscriptionSlug: "s" });
      expect(pulled.event?.id).toBe(sent.id);
      expect(pulled.event?.data).toEqual({ a: 1 });
      await rpc.ackEvent({ topicSlug: topic, subscriptionSlug: "s", eventId: sent.id });
      await expect(rpc.ackEvent({ topicSlug: topic, subscriptionSlug: "s", eventId: "nope" })).rejects.toMatchObject({ code: Code.NotFound });
      await expect(rpc.sendEvent({ topicSlug: topic })).rejects.toMatchObject({ code: Code.InvalidArgument });

      const abort = new AbortController();
      const streamed: string[] = [];
      const reader = (async () => {
        try {
          for await (const e of rpc.streamSubscription({ topicSlug: topic, subscriptionSlug: "s" }, { signal: abort.signal })) {
            streamed.push(e.id);
            await rpc.ackEvent({ topicSlug: topic, subscriptionSlug: "s", eventId: e.id });
            if (streamed.length === 3) break;
          }
        } catch (e) {
          if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
        }
      })();
      await sleep(100);
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await rpc.sendEvent({ topicSlug: topic, data: { i } })).id);
      await reader;
      abort.abort();
      expect(streamed).toEqual(ids);
    });
  });
}
