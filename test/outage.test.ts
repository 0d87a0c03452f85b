/**
 * MongoDB outage: while the database is unreachable, publishes fail fast with 503 / `unavailable`
 * (never a hang, never an ack without storage); subscribers stay connected and, once it is back,
 * every acknowledged event is delivered exactly once, in order. Every other store port (tasks,
 * Sailhouse, Durable Streams, API keys) answers the same way on every dialect that uses it: all of
 * them run through the one client wrapper (src/store/mongo/client.ts).
 *
 * mongo-java-server keeps its data in memory, so stopping that process would also erase what was
 * acknowledged. The test therefore takes the database away the way an outage looks to the service:
 * a proxy between them drops every connection and refuses new ones, then comes back on the same port.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { AdminService } from "../gen/admin/v1/admin_pb.js";
import { EventsService } from "../gen/polos/v1/polos_pb.js";
import { ExecutionEventsService } from "../gen/kubiya/v1/kubiya_pb.js";
import { SailhouseService } from "../gen/sailhouse/v1/sailhouse_pb.js";
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import { MongoStore } from "../src/store/mongo/index.js";
import type { App } from "../src/server/app.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { TcpProxy } from "./support/proxy.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { outageProbes, type OutageProbe } from "./support/faults.js";

describe("MongoDB outage", () => {
  let mongo: TestMongo;
  let proxy: TcpProxy;
  let app: App;
  beforeAll(async () => {
    mongo = await startTestMongo();
    proxy = TcpProxy.toMongo(mongo.uri);
    await proxy.start();
  });
  afterAll(async () => {
    await app?.close();
    await proxy?.stop();
    await mongo?.stop();
  });

  it("fails publishes fast while the database is away and loses no acknowledged event", async () => {
    const store = new MongoStore({ uri: proxy.mongoUri, dbName: `outage_${Date.now()}`, serverSelectionTimeoutMs: 1000, watch: "poll", pollIntervalMs: 50 });
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
      const viaProxy = new MongoClient(proxy.mongoUri, { serverSelectionTimeoutMS: 2000 });
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

  describe("every store port and every dialect", () => {
    let apps: App[] = [];
    afterAll(async () => {
      for (const a of apps) await a.close();
    });

    it("answers 503 / unavailable (never 500) on every path that needs the database while it is away", async () => {
      const viaProxy = (db: string) => new MongoStore({ uri: proxy.mongoUri, dbName: db, serverSelectionTimeoutMs: 1000, operationTimeoutMs: 3000, watch: "poll", pollIntervalMs: 50 });
      const dbName = `outage_ports_${Date.now()}`;
      // Auth off (dialect paths name their project) and a second instance with API keys (the key port).
      const open = await startTestServer({ store: viaProxy(dbName), workerIntervalMs: 60_000 });
      const keyed = await startTestServer({ store: viaProxy(dbName), env: { AUTH: "required", API_KEYS: "acme:known-key", ADMIN_TOKEN: "admin-token", AUTH_CACHE_MS: "600000" } });
      apps = [open, keyed];
      const P = { "X-Project-ID": "acme" };
      // What the probes refer to exists before the cut, so each answer is the store's, not a 404.
      const task = await postJson(open, "/tasks", { agent_name: "acme/a", name: "outage-task" }, P);
      expect(task.status).toBe(201);
      expect((await fetch(`${open.url}/v1/stream/outage-ds`, { method: "PUT", headers: { ...P, "content-type": "text/plain" } })).status).toBe(201);
      expect((await fetch(`${open.url}/topics/outage-t/subscriptions/s/events/pull`, { headers: P })).status).toBe(204); // creates the pull subscription
      expect((await getJson(keyed, "/api/v1/events?topic=warm", { authorization: "Bearer known-key" })).status).toBe(200);

      const probes = outageProbes({ taskId: task.json.id as string, taskName: "outage-task", stream: "outage-ds", topic: "outage-t", subscription: "s" });
      const rpc = (s: Parameters<typeof client>[0], app = open) => client(s, app, "connect") as any;
      const h = { headers: { "x-project-id": "acme" } };
      const admin = { headers: { authorization: "Bearer admin-token" } };
      const rpcProbes: { port: OutageProbe["port"]; name: string; call: () => Promise<unknown> }[] = [
        { port: "events", name: "StreamService.Publish", call: () => rpc(StreamService).publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{ eventType: "x" }] }, h) },
        { port: "events", name: "StreamService.ListEvents", call: () => rpc(StreamService).listEvents({ stream: { kind: StreamKind.TOPIC, key: "t" } }, h) },
        { port: "events", name: "StreamService.ListStreams", call: () => rpc(StreamService).listStreams({}, h) },
        { port: "events", name: "StreamService.PurgeStream", call: () => rpc(StreamService).purgeStream({ stream: { kind: StreamKind.TOPIC, key: "t" } }, h) },
        { port: "events", name: "polos EventsService.PublishEvents", call: () => rpc(EventsService).publishEvents({ topic: "t", events: [{ data: {} }] }, h) },
        { port: "events", name: "kubiya PublishExecutionEvent", call: () => rpc(ExecutionEventsService).publishExecutionEvent({ executionId: "e1", eventType: "x", data: {} }, h) },
        { port: "tasks", name: "TaskEventsService.CreateTask", call: () => rpc(TaskEventsService).createTask({ agentName: "acme/a" }, h) },
        { port: "tasks", name: "TaskEventsService.GetTask", call: () => rpc(TaskEventsService).getTask({ taskId: task.json.id }, h) },
        { port: "tasks", name: "TaskEventsService.ListTasks", call: () => rpc(TaskEventsService).listTasks({}, h) },
        { port: "tasks", name: "TaskEventsService.ListMessages", call: () => rpc(TaskEventsService).listMessages({ taskId: task.json.id }, h) },
        { port: "sailhouse", name: "SailhouseService.PullEvent", call: () => rpc(SailhouseService).pullEvent({ topicSlug: "outage-t", subscriptionSlug: "s" }, h) },
        { port: "sailhouse", name: "SailhouseService.PutSubscription", call: () => rpc(SailhouseService).putSubscription({ topicSlug: "outage-t", subscriptionSlug: "s2", type: "pull" }, h) },
        { port: "keys", name: "AdminService.ListApiKeys", call: () => rpc(AdminService, keyed).listApiKeys({}, admin) },
        { port: "keys", name: "AdminService.CreateApiKey", call: () => rpc(AdminService, keyed).createApiKey({ project: "acme", name: "n" }, admin) },
        { port: "keys", name: "an RPC with a key not seen before", call: () => rpc(StreamService, keyed).listStreams({}, { headers: { authorization: "Bearer unseen-key" } }) },
      ];

      await proxy.cut();
      try {
        const answers = await Promise.all([
          ...probes.map(async (p) => {
            const app = p.port === "keys" ? keyed : open;
            const headers: Record<string, string> = p.port === "keys" ? { authorization: "Bearer unseen-key", ...p.headers } : { ...P, ...p.headers };
            const res = await fetch(app.url + p.path, { method: p.method, headers, ...(p.body !== undefined ? { body: p.body } : {}) });
            return { what: `${p.port}: ${p.method} ${p.path}`, status: res.status, text: await res.text() };
          }),
          ...rpcProbes.map(async (p) => {
            try {
              await p.call();
              return { what: `${p.port}: ${p.name}`, status: 200, text: "answered" };
            } catch (e) {
              const ce = ConnectError.from(e);
              return { what: `${p.port}: ${p.name}`, status: ce.code === Code.Unavailable ? 503 : ce.code, text: ce.rawMessage };
            }
          }),
        ]);
        const wrong = answers.filter((a) => a.status !== 503 || !/unavailable/i.test(a.text));
        expect(wrong, JSON.stringify(wrong, null, 1)).toEqual([]);
        // Every port is covered on more than one surface.
        for (const port of ["events", "tasks", "sailhouse", "durable", "keys"]) expect(answers.filter((a) => a.what.startsWith(`${port}:`)).length).toBeGreaterThan(1);
      } finally {
        await proxy.restore();
      }
    }, 90_000);
  });
});
