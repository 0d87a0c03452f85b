/** API keys, project binding and isolation between projects, on every store adapter. */
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { SailhouseClient } from "@sailhouse/client";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { AdminService } from "../gen/admin/v1/admin_pb.js";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { loadConfig } from "../src/config.js";
import { startApp, type App } from "../src/server/app.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const A = { authorization: "Bearer key-a" };
const B = { authorization: "Bearer key-b" };

for (const factory of storeFactories) {
  describe(`authentication and isolation on the ${factory.name} store`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { AUTH: "required", API_KEYS: "acme:key-a,beta:key-b", ADMIN_TOKEN: "admin-secret", AUTH_CACHE_MS: "0" } });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("answers a missing or unknown key with 401 in each dialect and stores nothing", async () => {
      const polos = await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: 1 }] }, { "X-Project-ID": "acme" });
      expect(polos.status).toBe(401);
      expect(polos.json.error).toMatch(/API key/);
      const kubiya = await postJson(app, "/api/v1/executions/e1/events", { event_type: "x", data: {} }, { authorization: "Bearer nope" });
      expect(kubiya.status).toBe(401);
      expect(kubiya.json.detail).toMatch(/API key/);
      const sailhouse = await postJson(app, "/topics/t/events", { data: {} }, { authorization: "nope" });
      expect(sailhouse.status).toBe(401);
      const rpc = client(StreamService, app, "grpc");
      await expect(rpc.publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{}] })).rejects.toMatchObject({ code: Code.Unauthenticated });
      await expect(rpc.publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{}] }, { headers: { authorization: "Bearer wrong" } })).rejects.toMatchObject({ code: Code.Unauthenticated });
      expect((await getJson(app, "/api/v1/events?topic=t", A)).json.events).toEqual([]);
      // Health and reflection need no key.
      expect((await client(Health, app, "grpc").check({})).status).toBe(1);
      expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
    });

    it("accepts the key as Bearer, UserKey, raw Authorization, polos_auth/auth_token cookies and gRPC metadata", async () => {
      const topic = `forms-${factory.name}`;
      expect((await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 1 }] }, A)).json.sequence_ids).toEqual([1]);
      expect((await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 2 }] }, { cookie: "other=x; polos_auth=key-a" })).json.sequence_ids).toEqual([2]);
      expect((await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 3 }] }, { cookie: "auth_token=key-a" })).json.sequence_ids).toEqual([3]);
      expect((await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 4 }] }, { authorization: "key-a", "X-Project-ID": "acme" })).json.sequence_ids).toEqual([4]);
      // Kubiya's Python SDK and its workers send `UserKey <key>`.
      const kubiya = await postJson(app, `/api/v1/executions/${topic}/events`, { event_type: "x", data: {} }, { authorization: "UserKey key-a" });
      expect([kubiya.status, kubiya.json.execution_id]).toEqual([202, topic]);
      expect((await postJson(app, `/api/v1/executions/${topic}/events`, { event_type: "x", data: {} }, { authorization: "UserKey nope" })).status).toBe(401);
      const rpc = client(StreamService, app, "grpc");
      const r = await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: topic }, events: [{ eventType: "rpc" }] }, { headers: A });
      expect(r.sequences).toEqual([5n]);
      const sh = new SailhouseClient("key-a", { api_url: app.url });
      expect((await sh.publish(topic, { five: 6 })).id).toBeTruthy();
      const listed = await getJson(app, `/api/v1/events?topic=${topic}`, A);
      expect(listed.json.events.map((e: any) => e.sequence_id)).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it("accepts TerminalUse's agent key header (x-agent-api-key), on JSON paths and RPCs; Bearer wins when both come", async () => {
      const t = await postJson(app, "/tasks", { agent_name: "acme/a" }, { "x-agent-api-key": "key-a" });
      expect(t.status).toBe(201);
      expect((await getJson(app, `/tasks/${t.json.id}`, { "x-agent-api-key": "key-a" })).json.id).toBe(t.json.id);
      const wrong = await getJson(app, `/tasks/${t.json.id}`, { "x-agent-api-key": "nope" });
      expect([wrong.status, typeof wrong.json.detail]).toEqual([401, "string"]);
      // The SDK sends both when given both: the Bearer token decides (here: a wrong one).
      expect((await getJson(app, `/tasks/${t.json.id}`, { "x-agent-api-key": "key-a", authorization: "Bearer nope" })).status).toBe(401);
      expect((await getJson(app, `/tasks/${t.json.id}`, { "x-agent-api-key": "nope", authorization: "Bearer key-a" })).status).toBe(200);
      const rpc = client(TaskEventsService, app, "grpc");
      expect((await rpc.getTask({ taskId: t.json.id }, { headers: { "x-agent-api-key": "key-a" } })).id).toBe(t.json.id);
      await expect(rpc.getTask({ taskId: t.json.id }, { headers: { "x-agent-api-key": "nope" } })).rejects.toMatchObject({ code: Code.Unauthenticated });
    });

    it("refuses a key used for another project with 403 / permission_denied", async () => {
      const r = await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: 1 }] }, { ...A, "X-Project-ID": "beta" });
      expect(r.status).toBe(403);
      expect((await getJson(app, "/api/v1/events?topic=t&project_id=beta", A)).status).toBe(403);
      const k = await postJson(app, "/api/v1/executions/e/events", { event_type: "x", data: {} }, { ...A, "Project-ID": "beta" });
      expect(k.status).toBe(403);
      expect(typeof k.json.detail).toBe("string");
      await expect(client(StreamService, app, "connect").listEvents({ stream: { kind: StreamKind.TOPIC, key: "t" } }, { headers: { ...A, "x-project-id": "beta" } })).rejects.toMatchObject({ code: Code.PermissionDenied });
    });

    it("keeps project B out of project A's streams, subscriptions and wait groups, whatever names it guesses", async () => {
      const topic = `secret-${factory.name}`;
      const shA = new SailhouseClient("key-a", { api_url: app.url });
      const shB = new SailhouseClient("key-b", { api_url: app.url });
      await shA.pull(topic, "jobs");
      const sent = await shA.publish(topic, { secret: true });
      await postJson(app, "/api/v1/executions/exec-secret/events", { event_type: "private", data: { s: 1 } }, A);
      // Reads: nothing of A's.
      expect((await getJson(app, `/api/v1/events?topic=${topic}`, B)).json.events).toEqual([]);
      const sse = new SseReader(`${app.url}/api/v1/executions/exec-secret/stream`, B);
      await sse.until((s) => s.messages.length >= 1);
      await new Promise((r) => setTimeout(r, 150));
      await sse.close();
      expect(sse.messages.map((m) => m.event)).toEqual(["connected"]);
      const rpcB = client(StreamService, app, "grpc");
      expect((await rpcB.listEvents({ stream: { kind: StreamKind.TOPIC, key: topic } }, { headers: B })).events).toEqual([]);
      expect((await rpcB.listEvents({ stream: { kind: StreamKind.EXECUTION, key: "exec-secret" } }, { headers: B })).events).toEqual([]);
      // Subscriptions: B cannot pull or ack A's; its own same-named subscription is separate.
      const ack = await fetch(`${app.url}/topics/${topic}/subscriptions/jobs/events/${sent.id}`, { method: "POST", headers: B });
      expect(ack.status).toBe(404);
      expect(await shB.pull(topic, "jobs")).toBeNull();
      // Publishing: B's events land in B's own namesake stream, never in A's.
      await shB.publish(topic, { from: "b" });
      await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: "b" }] }, B);
      const mine = await shA.pull<{ secret: boolean }>(topic, "jobs");
      expect(mine?.id).toBe(sent.id);
      await mine!.ack();
      expect(await shA.pull(topic, "jobs")).toBeNull();
      expect((await shA.getEvents(topic, "jobs")).events.map((e) => e.id)).toEqual([sent.id]);
      // Wait groups are per project too.
      const wg = await postJson(app, "/waitgroups/instances", { topic: "done" }, A);
      expect((await postJson(app, `/topics/${topic}/events`, { data: {}, wait_group_instance_id: wg.json.wait_group_instance_id }, B)).status).toBe(404);
    });

    it("creates and revokes keys through the admin RPC (operator token required)", async () => {
      const admin = client(AdminService, app, "connect");
      await expect(admin.createApiKey({ project: "gamma" })).rejects.toMatchObject({ code: Code.Unauthenticated });
      const created = await admin.createApiKey({ project: "gamma", name: "ci" }, { headers: { authorization: "Bearer admin-secret" } });
      expect(created.key).toMatch(/^ae_/);
      const G = { authorization: `Bearer ${created.key}` };
      expect((await postJson(app, "/api/v1/events/publish", { topic: "g", events: [{ data: 1 }] }, G)).status).toBe(200);
      const listed = await admin.listApiKeys({ project: "gamma" }, { headers: { authorization: "Bearer admin-secret" } });
      expect(listed.keys.map((k) => [k.id, k.name])).toEqual([[created.id, "ci"]]);
      expect(JSON.stringify(listed)).not.toContain(created.key);
      expect((await admin.revokeApiKey({ id: created.id }, { headers: { authorization: "Bearer admin-secret" } })).revoked).toBe(true);
      expect((await postJson(app, "/api/v1/events/publish", { topic: "g", events: [{ data: 2 }] }, G)).status).toBe(401);
    });
  });
}

describe("start-up rules", () => {
  it("refuses to listen beyond loopback without API keys, and starts open on loopback", async () => {
    await expect(startApp(loadConfig({ PORT: "0", HOST: "0.0.0.0", AUTH: "off" }))).rejects.toThrow(/refusing to listen/);
    const app = await startTestServer({ env: { AUTH: "" } });
    try {
      expect((await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: 1 }] }, { "X-Project-ID": "p" })).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
