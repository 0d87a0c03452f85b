/**
 * Push delivery is isolated: a push endpoint that accepts and never answers holds up only its own
 * subscription. Next to it a healthy endpoint on the same topic gets every event, and scheduled
 * sends fire; an endpoint that refuses backs off, is reported (list, /metrics), and can be
 * deleted. The push timeout is set far beyond the test's waits, so a healthy delivery that waited
 * for the stalled one could not arrive in time. Both stores, real HTTP endpoints.
 */
import http from "node:http";
import type net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SailhouseService } from "../gen/sailhouse/v1/sailhouse_pb.js";
import type { App } from "../src/server/app.js";
import { eventually } from "./support/raw.js";
import { client, getJson, postJson, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const P = { "X-Project-ID": "iso" };

interface Endpoint {
  url: string;
  received: { id: string; data: unknown }[];
  hits: number;
  close(): Promise<void>;
}

/** A local push endpoint: answers `status`, or (undefined) accepts the request and never answers. */
async function endpoint(status: number | undefined): Promise<Endpoint> {
  const sockets = new Set<net.Socket>();
  const ep: Endpoint = { url: "", received: [], hits: 0, close: async () => {} };
  const server = http.createServer((req, res) => {
    ep.hits++;
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (status === undefined) return; // stalled: the connection stays open, unanswered
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id: string; data: unknown };
      if (status < 300) ep.received.push({ id: body.id, data: body.data });
      res.writeHead(status).end();
    });
  });
  server.on("connection", (s) => (sockets.add(s), s.on("close", () => sockets.delete(s))));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  ep.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`;
  ep.close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r()));
  };
  return ep;
}

for (const factory of storeFactories) {
  describe(`push delivery isolated (${factory.name} store)`, () => {
    let app: App;
    const endpoints: Endpoint[] = [];
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), pushTimeoutMs: 120_000 });
    });
    afterAll(async () => {
      await app?.close();
      await Promise.all(endpoints.map((e) => e.close()));
      await factory.teardown();
    });
    const put = async (topic: string, sub: string, url: string) => expect((await fetch(`${app.url}/topics/${topic}/subscriptions/${sub}`, { method: "PUT", headers: { ...P, "content-type": "application/json" }, body: JSON.stringify({ type: "push", endpoint: url }) })).status).toBe(200);

    it("a stalled endpoint holds up neither the healthy subscription of the same topic nor scheduled sends", async () => {
      const stalled = await endpoint(undefined);
      const healthy = await endpoint(200);
      endpoints.push(stalled, healthy);
      const topic = `iso-${Date.now()}`;
      await put(topic, "stalled", stalled.url);
      await put(topic, "healthy", healthy.url);
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) ids.push((await postJson(app, `/topics/${topic}/events`, { data: { i } }, P)).json.id);
      await eventually(() => healthy.received.length >= 6, 20_000, "the healthy endpoint gets every event");
      expect(healthy.received.map((e) => e.id).sort()).toEqual([...ids].sort());
      expect(stalled.hits).toBeGreaterThanOrEqual(1); // it was tried, and is still holding its requests
      // A scheduled send fires while the stalled endpoint still holds its requests.
      const sendAt = new Date(Date.now() + 300).toISOString();
      const scheduled = (await postJson(app, `/topics/${topic}/events`, { data: { scheduled: true }, send_at: sendAt }, P)).json.id as string;
      await eventually(() => healthy.received.some((e) => e.id === scheduled), 20_000, "the scheduled send reaches the healthy endpoint");
      expect(healthy.received.find((e) => e.id === scheduled)?.data).toEqual({ scheduled: true });
    });

    it("an endpoint that refuses backs off and is reported; subscriptions are listed and deleted (JSON and RPC)", async () => {
      const refusing = await endpoint(500);
      const healthy = await endpoint(200);
      endpoints.push(refusing, healthy);
      const topic = `dead-${Date.now()}`;
      await put(topic, "dead", refusing.url);
      await put(topic, "ok", healthy.url);
      await postJson(app, `/topics/${topic}/events`, { data: { n: 1 } }, P);
      await eventually(async () => (await getJson(app, `/topics/${topic}/subscriptions/dead`, P)).json?.push_status?.status === "failing", 20_000, "the refusing endpoint is reported failing");
      const listed = await getJson(app, `/topics/${topic}/subscriptions`, P);
      expect(listed.status).toBe(200);
      const bySlug = Object.fromEntries(listed.json.subscriptions.map((s: any) => [s.slug, s]));
      expect(Object.keys(bySlug)).toEqual(["dead", "ok"]);
      expect(bySlug.ok).toMatchObject({ id: `${topic}/ok`, topic_id: topic, type: "push", endpoint: healthy.url, push_status: { status: "healthy" } });
      expect(bySlug.dead).toMatchObject({ type: "push", endpoint: refusing.url, push_status: { status: "failing", last_error: "the endpoint answered 500" } });
      expect(bySlug.dead.push_status.consecutive_failures).toBeGreaterThanOrEqual(1);
      expect(Date.parse(bySlug.dead.push_status.next_attempt_at)).toBeGreaterThan(Date.parse(bySlug.dead.push_status.failing_since));
      await eventually(() => healthy.received.length === 1, 20_000, "the healthy endpoint gets the event");
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      expect(metrics).toMatch(/^sailhouse_push_endpoints_failing [1-9]/m);
      expect(metrics).toMatch(/^sailhouse_push_deliveries_total\{outcome="failed"\} [1-9]/m);
      // Backing off: no delivery attempt before its retry time (1 s after the first failure, then 2 s, ...).
      const hits = refusing.hits;
      expect(hits).toBeLessThanOrEqual(bySlug.dead.push_status.consecutive_failures + 1);

      const rpc = client(SailhouseService, app, "connect");
      const headers = { "x-project-id": "iso" };
      expect((await rpc.listSubscriptions({ topicSlug: topic }, { headers })).subscriptions.map((s) => s.slug)).toEqual(["dead", "ok"]);
      await rpc.deleteSubscription({ topicSlug: topic, subscriptionSlug: "dead" }, { headers });
      await expect(rpc.getSubscription({ topicSlug: topic, subscriptionSlug: "dead" }, { headers })).rejects.toMatchObject({ code: 5 });
      expect((await fetch(`${app.url}/topics/${topic}/subscriptions/ok`, { method: "DELETE", headers: P })).status).toBe(204);
      const gone = await fetch(`${app.url}/topics/${topic}/subscriptions/ok`, { method: "DELETE", headers: P });
      expect([gone.status, await gone.json()]).toEqual([404, { error: expect.stringContaining("not found") }]);
      expect((await getJson(app, `/topics/${topic}/subscriptions`, P)).json).toEqual({ subscriptions: [], next_page_token: "" });
      // The deleted subscription's loop stops: the refusing endpoint is not tried again.
      await eventually(async () => /^sailhouse_push_endpoints_failing 0/m.test(await (await fetch(`${app.url}/metrics`)).text()), 20_000, "no endpoint reported failing");
      const after = refusing.hits;
      await postJson(app, `/topics/${topic}/events`, { data: { n: 2 } }, P);
      await new Promise((r) => setTimeout(r, 300));
      expect(refusing.hits).toBe(after);
    });
  });
}
