/**
 * Instance limits: subscriptions per project and per instance, bytes of requests in flight, and
 * health checks that cost the store nothing per unauthenticated caller. On both stores.
 */
import net from "node:net";
import { setMaxListeners } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { App } from "../src/server/app.js";
import type { Store } from "../src/core/store.js";
import { client, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";
import { eventually, metricValue, rawHttp, stillServing } from "./support/raw.js";

const code = (e: unknown): Code => ConnectError.from(e).code;

for (const factory of storeFactories) {
  describe(`instance limits on the ${factory.name} store`, () => {
    let store: Store;
    let pings = 0;
    let app: App;
    beforeAll(async () => {
      store = await factory.make();
      const ping = store.ping.bind(store);
      store.ping = async () => {
        pings++;
        return ping();
      };
      app = await startTestServer({
        store,
        env: { AUTH: "required", API_KEYS: "a:key-a,b:key-b", MAX_SUBSCRIPTIONS_PER_PROJECT: "3", MAX_SUBSCRIPTIONS: "5", MAX_UNAUTHENTICATED_STREAMS: "128", HEALTH_CACHE_MS: "1000" },
      });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("refuses subscriptions beyond the per-project and per-instance limits with resource_exhausted / 429", async () => {
      const abortA = new AbortController();
      const abortB = new AbortController();
      try {
        const subA = (k: string) => subscribeAs(app, k, abortA.signal);
        for (let i = 0; i < 3; i++) expect(await subA("key-a")).toEqual({ ok: true });
        const fourth = await subA("key-a");
        expect(fourth).toMatchObject({ ok: false, code: Code.ResourceExhausted });
        expect((fourth as { message: string }).message).toMatch(/project "a" has 3 subscriptions open/);
        // SSE counts too, answered in the dialect: Polos 429 {"error"}.
        const sse = await fetch(`${app.url}/api/v1/events/stream?topic=caps`, { headers: { authorization: "Bearer key-a" } });
        expect(sse.status).toBe(429);
        expect(((await sse.json()) as { error: string }).error).toMatch(/subscriptions open/);
        // Project b fills the instance (5 in all); the next is refused for the instance.
        expect(await subscribeAs(app, "key-b", abortB.signal)).toEqual({ ok: true });
        expect(await subscribeAs(app, "key-b", abortB.signal)).toEqual({ ok: true });
        const sixth = await subscribeAs(app, "key-b", abortB.signal);
        expect(sixth).toMatchObject({ ok: false, code: Code.ResourceExhausted });
        expect((sixth as { message: string }).message).toMatch(/this instance has 5 subscriptions open/);
        expect(await stillServing(app)).toBeLessThan(1000);
        // Ending a's three frees their slots.
        abortA.abort();
        await eventually(async () => (await subscribeAs(app, "key-b", abortB.signal)).ok, 5000, "a slot freed");
      } finally {
        abortA.abort();
        abortB.abort();
      }
    });

    it("counts every live reader on every surface: Durable Streams SSE and long-polls on /v1/stream and /v1/log take slots too", async () => {
      const A = { authorization: "Bearer key-a" };
      expect((await fetch(`${app.url}/v1/stream/caps-ds`, { method: "PUT", headers: { ...A, "content-type": "application/json" } })).status).toBe(201);
      const abort = new AbortController();
      try {
        // Three live readers of project a, one per kind of Durable Streams read (its cap is 3).
        const sse = await fetch(`${app.url}/v1/stream/caps-ds?offset=-1&live=sse`, { headers: A, signal: abort.signal });
        expect(sse.status).toBe(200);
        const polls = [`/v1/stream/caps-ds?offset=now&live=long-poll`, `/v1/log/topic/caps-log?offset=now&live=long-poll`].map((p) => fetch(app.url + p, { headers: A, signal: abort.signal }).catch(() => undefined));
        await eventually(async () => (await metricValue(app, "live_readers")) === 3, 5000, "three live readers");
        // The fourth of project a is refused, on every surface, each in its own form.
        const ds = await fetch(`${app.url}/v1/log/topic/caps-log?offset=now&live=long-poll`, { headers: A });
        expect(ds.status).toBe(429);
        expect(await ds.text()).toMatch(/project "a" has 3 subscriptions open/);
        const polos = await fetch(`${app.url}/api/v1/events/stream?topic=caps`, { headers: A });
        expect(polos.status).toBe(429);
        expect(((await polos.json()) as { error: string }).error).toMatch(/project "a" has 3 subscriptions open/);
        const rpc = await subscribeAs(app, "key-a", abort.signal);
        expect(rpc).toMatchObject({ ok: false, code: Code.ResourceExhausted });
        // A catch-up read (not live) takes no slot.
        expect((await fetch(`${app.url}/v1/stream/caps-ds?offset=-1`, { headers: A })).status).toBe(200);
        abort.abort();
        await Promise.all(polls);
      } finally {
        abort.abort();
      }
      await eventually(async () => (await metricValue(app, "live_readers")) === 0, 5000, "slots given back");
    });

    it("answers 1,500 unauthenticated health watches (128 held, 1,372 refused with resource_exhausted), checks without a store ping per caller, and keeps serving when one client cancels them all", async () => {
      const before = pings;
      const t0 = Date.now();
      const abort = new AbortController();
      setMaxListeners(2000, abort.signal);
      const clients = Array.from({ length: 8 }, () => createClient(Health, createGrpcTransport({ baseUrl: app.url })));
      // Each watch stays open after its first response.
      const open = Array.from({ length: 1500 }, (_, i) =>
        (async () => {
          const it = clients[i % 8]!.watch({}, { signal: abort.signal })[Symbol.asyncIterator]();
          try {
            const first = await it.next();
            return first.value?.status === HealthCheckResponse_ServingStatus.SERVING ? "serving" : "other";
          } catch (e) {
            return code(e) === Code.ResourceExhausted ? "refused" : `error ${code(e)}`;
          }
        })(),
      );
      const results = await Promise.all(open);
      const counts = results.reduce<Record<string, number>>((m, r) => ((m[r] = (m[r] ?? 0) + 1), m), {});
      expect(counts).toEqual({ serving: 128, refused: 1372 });
      const checks = await Promise.all(Array.from({ length: 300 }, (_, i) => clients[i % 8]!.check({})));
      expect(checks.every((c) => c.status === HealthCheckResponse_ServingStatus.SERVING)).toBe(true);
      expect(pings - before).toBeLessThanOrEqual(Math.ceil((Date.now() - t0) / 1000) + 2);
      expect(await stillServing(app)).toBeLessThan(1000);
      // One client cancels everything at once (1,500 cancelled watches once stalled /healthz for
      // 3-5 s): others are still served, and every place comes back.
      abort.abort();
      expect(await stillServing(app)).toBeLessThan(1000);
      await eventually(async () => {
        const again = new AbortController();
        setMaxListeners(200, again.signal);
        const firsts = await Promise.all(Array.from({ length: 128 }, (_, i) => clients[i % 8]!.watch({}, { signal: again.signal })[Symbol.asyncIterator]().next().then((r) => r.value?.status, () => "refused")));
        again.abort();
        return firsts.every((s) => s === HealthCheckResponse_ServingStatus.SERVING);
      }, 10_000, "128 places free again");
    });
  });
}

async function subscribeAs(app: App, key: string, signal: AbortSignal) {
  const it = client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: "caps" } }, { signal, headers: { authorization: `Bearer ${key}` } })[Symbol.asyncIterator]();
  try {
    await it.next();
    void (async () => {
      for (;;) if ((await it.next()).done) break;
    })().catch(() => {});
    return { ok: true as const };
  } catch (e) {
    return { ok: false as const, code: code(e), message: ConnectError.from(e).rawMessage };
  }
}

describe("bytes of requests in flight", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { MAX_INFLIGHT_BYTES: String(1024 * 1024), REQUEST_TIMEOUT_MS: "20000" } });
  });
  afterAll(() => app?.close());

  it("answers 503 / resource_exhausted once the instance's in-flight budget is taken, and recovers when it is given back", async () => {
    // A slow upload holds 700 kB of the 1 MiB budget.
    const hog = net.connect(app.port, "127.0.0.1");
    hog.on("error", () => {});
    await new Promise<void>((r) => hog.on("connect", () => r()));
    hog.write(`POST /api/v1/events/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Project-ID: acme\r\nContent-Length: 1000000\r\n\r\n{"topic":"t","events":[{"data":"${"x".repeat(700_000)}`);
    // The server has read what was sent (a request sent before could take its share first).
    await eventually(async () => (await metricValue(app, "inflight_bytes")) >= 700_000, 10_000, "the hog's bytes held");
    // JSON path: 503 in the dialect's shape.
    const body = JSON.stringify({ topic: "t", events: [{ data: "y".repeat(500_000) }] });
    const res = await rawHttp(app, `POST /api/v1/events/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Project-ID: acme\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 5000);
    expect(res.status).toBe(503);
    expect(JSON.parse(res.text.slice(res.text.indexOf("\r\n\r\n") + 4)).error).toMatch(/in flight/);
    // Durable Streams: 503 as well (its routes share the gateway's error table), nothing appended.
    const ds = await rawHttp(app, `POST /v1/stream/busy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 500000\r\n\r\n${"d".repeat(500_000)}`, 5000);
    expect(ds.status).toBe(503);
    expect(ds.text.slice(ds.text.indexOf("\r\n\r\n") + 4)).toMatch(/in flight/);
    // RPC: resource_exhausted.
    const rpc = client(StreamService, app, "grpc");
    const err = await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{ eventType: "big", data: { kind: { case: "stringValue", value: "z".repeat(500_000) } } }] }, { headers: { "x-project-id": "acme" } }).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    // Small requests still pass, and everything passes once the hog goes away.
    expect(await stillServing(app)).toBeLessThan(1000);
    hog.destroy();
    await eventually(async () => (await metricValue(app, "inflight_bytes")) === 0, 5000, "the hog's bytes given back");
    await eventually(async () => (await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{ eventType: "big", data: { kind: { case: "stringValue", value: "z".repeat(500_000) } } }] }, { headers: { "x-project-id": "acme" } }).then(() => true, () => false)), 5000, "budget given back");
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/limited_total\{limit="inflight_bytes"\} [1-9]/);
  });
});
