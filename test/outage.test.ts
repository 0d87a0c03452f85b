/**
 * MongoDB outage: while the database is unreachable, publishes fail fast with 503 / `unavailable`
 * (never a hang, never an ack without storage); subscribers stay connected and, once it is back,
 * every acknowledged event is delivered exactly once, in order.
 *
 * mongo-java-server keeps its data in memory, so stopping that process would also erase what was
 * acknowledged. The test therefore takes the database away the way an outage looks to the service:
 * a proxy between them drops every connection and refuses new ones, then comes back on the same port.
 */
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { MongoStore } from "../src/store/mongo/index.js";
import type { App } from "../src/server/app.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { TcpProxy } from "./support/proxy.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";

describe("MongoDB outage", () => {
  let mongo: TestMongo;
  let proxy: TcpProxy;
  let app: App;
  afterAll(async () => {
    await app?.close();
    await proxy?.stop();
    await mongo?.stop();
  });

  it("fails publishes fast while the database is away and loses no acknowledged event", async () => {
    mongo = await startTestMongo();
    const target = new URL(mongo.uri.replace("mongodb://", "http://"));
    proxy = new TcpProxy(target.hostname, Number(target.port));
    await proxy.start();
    const store = new MongoStore({ uri: `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`, dbName: `outage_${Date.now()}`, serverSelectionTimeoutMs: 1000, watch: "poll", pollIntervalMs: 50 });
    app = await startTestServer({ store, env: { HOLE_TIMEOUT_MS: "500" } });
    const topic = `outage-${Date.now()}`;
    const stream = { kind: StreamKind.TOPIC, key: topic };
    const headers = { "x-project-id": "acme" };
    const rpc = client(StreamService, app, "grpc");

    const abort = new AbortController();
    const delivered: number[] = [];
    const subscriber = (async () => {
      try {
        for await (const res of rpc.subscribe({ stream }, { signal: abort.signal, headers })) delivered.push(...res.events.map((e) => Number(e.sequence)));
      } catch (e) {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      }
    })();
    const sse = new SseReader(`${app.url}/api/v1/events/stream?topic=${topic}&project_id=acme`);

    const acked: number[] = [];
    let failures = 0;
    let lastFailure = "";
    let slowest = 0;
    const publish = async (i: number): Promise<void> => {
      const t0 = Date.now();
      const viaJson = i % 2 === 0;
      try {
        if (viaJson) {
          const r = await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: i }] }, { "X-Project-ID": "acme" });
          if (r.status === 200) acked.push(r.json.sequence_ids[0]);
          else {
            expect(r.status).toBe(503);
            expect(r.json.error).toMatch(/unavailable/);
            lastFailure = `HTTP ${r.status} ${r.json.error}`;
            failures++;
          }
        } else {
          acked.push(Number((await rpc.publish({ stream, events: [{ eventType: String(i) }] }, { headers })).sequences[0]));
        }
      } catch (e) {
        expect(e).toBeInstanceOf(ConnectError);
        expect((e as ConnectError).code).toBe(Code.Unavailable);
        lastFailure = String(e);
        failures++;
      }
      slowest = Math.max(slowest, Date.now() - t0);
    };

    let i = 0;
    for (; i < 20; i++) await publish(i);
    await proxy.cut();
    const outageStart = Date.now();
    expect((await fetch(`${app.url}/readyz`)).status).toBe(503);
    while (Date.now() - outageStart < 3000) await publish(i++);
    expect(failures).toBeGreaterThan(0);
    expect(slowest).toBeLessThan(3000); // fail fast: bounded by the 1 s server-selection timeout
    await proxy.restore();
    // Back: publishes succeed again (allow the driver a moment to reconnect).
    const backBy = Date.now() + 30_000;
    let ok = false;
    while (!ok && Date.now() < backBy) {
      const before = acked.length;
      await publish(i++);
      ok = acked.length > before;
    }
    if (!ok) {
      const { MongoClient } = await import("mongodb");
      const direct = new MongoClient(mongo.uri, { serverSelectionTimeoutMS: 2000 });
      const viaProxy = new MongoClient(`mongodb://127.0.0.1:${proxy.port}/?directConnection=true`, { serverSelectionTimeoutMS: 2000 });
      const probe = async (c: InstanceType<typeof MongoClient>) => c.db("x").command({ ping: 1 }).then(() => "ok", (e: unknown) => String(e));
      lastFailure += ` | direct: ${await probe(direct)} | fresh client via proxy: ${await probe(viaProxy)}`;
      await direct.close();
      await viaProxy.close();
    }
    expect(ok, `still failing after the database came back: ${lastFailure}`).toBe(true);
    for (let k = 0; k < 20; k++) await publish(i++);
    expect((await fetch(`${app.url}/readyz`)).status).toBe(200);

    const last = Math.max(...acked);
    const deadline = Date.now() + 20_000;
    while ((delivered[delivered.length - 1] ?? 0) < last && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await sse.until((s) => Number(s.messages[s.messages.length - 1]?.id ?? 0) >= last, 20_000);
    abort.abort();
    await subscriber;
    await sse.close();

    // Every acknowledged event delivered, exactly once, in order (over gRPC and SSE alike).
    for (const seqs of [delivered, sse.messages.map((m) => Number(m.id))]) {
      expect(new Set(seqs).size).toBe(seqs.length);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      for (const a of acked) expect(seqs).toContain(a);
    }
    const listed = (await getJson(app, `/api/v1/events?topic=${topic}&limit=1000&project_id=acme`)).json.events.map((e: { sequence_id: number }) => e.sequence_id);
    for (const a of acked) expect(listed).toContain(a);
  }, 90_000);
});
