/**
 * Auth for the whole life of a stream: a key revoked (or expiring) while its streams are open ends every one of
 * them, on every surface, in its dialect (SSE: a last `error` event; Durable Streams long-polls:
 * 401; RPC server streams: `unauthenticated`), while another key's streams go on; and the check
 * costs one key-store query per period for all the keys in use, not one per stream. Both stores.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { AdminService } from "../gen/admin/v1/admin_pb.js";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { EventsService } from "../gen/polos/v1/polos_pb.js";
import type { App } from "../src/server/app.js";
import { MemoryKeyStore } from "../src/store/memory/keys.js";
import { MongoKeyStore } from "../src/store/mongo/keys.js";
import { client, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";
import { eventually, metricValue } from "./support/raw.js";

const AUTH_CACHE_MS = 400;
const ADMIN = { authorization: "Bearer admin-secret" };
const KEEP = { authorization: "Bearer key-keep" };

/** An RPC server stream read in the background: what it delivered and how it ended. */
function drain(stream: AsyncIterable<unknown>): { got: number; ended: Promise<ConnectError | "ok"> } {
  const out = { got: 0, ended: undefined as unknown as Promise<ConnectError | "ok"> };
  out.ended = (async () => {
    try {
      for await (const _ of stream) out.got++;
      return "ok" as const;
    } catch (e) {
      return ConnectError.from(e);
    }
  })();
  return out;
}

for (const factory of storeFactories) {
  describe(`auth for a stream's whole life on the ${factory.name} store`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({
        store: await factory.make(),
        env: { AUTH: "required", API_KEYS: "acme:key-keep", ADMIN_TOKEN: "admin-secret", AUTH_CACHE_MS: String(AUTH_CACHE_MS), DURABLE_LONG_POLL_MS: "60000" },
      });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });
    afterEach(() => vi.restoreAllMocks());

    it("ends every stream of a revoked key in its dialect, keeps other keys' streams, and checks keys once per period", async () => {
      const admin = client(AdminService, app, "connect");
      const created = await admin.createApiKey({ project: "acme", name: "doomed" }, { headers: ADMIN });
      const K = { authorization: `Bearer ${created.key}` };
      // Something to read everywhere.
      expect((await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: 1 }] }, K)).status).toBe(200);
      expect((await postJson(app, "/api/v1/executions/e1/events", { event_type: "step", data: {} }, K)).status).toBe(202);
      const task = await postJson(app, "/tasks", { agent_name: "acme/helper", name: "t" }, K);
      expect(task.status).toBe(201);
      const ds = await fetch(`${app.url}/v1/stream/s1`, { method: "PUT", headers: { ...K, "content-type": "application/json" }, body: "[1]" });
      expect(ds.status).toBe(201);

      const checks = [MemoryKeyStore.prototype, MongoKeyStore.prototype].map((p) => vi.spyOn(p, "liveHashes"));
      const before = await metricValue(app, "live_readers");
      const sse = {
        polos: new SseReader(`${app.url}/api/v1/events/stream?topic=t`, K),
        kubiya: new SseReader(`${app.url}/api/v1/executions/e1/stream`, K),
        terminaluse: new SseReader(`${app.url}/tasks/${task.json.id}/stream?format=events`, K),
        durable: new SseReader(`${app.url}/v1/stream/s1?offset=-1&live=sse`, K),
      };
      const polls = {
        durable: fetch(`${app.url}/v1/stream/s1?offset=now&live=long-poll`, { headers: K }),
        log: fetch(`${app.url}/v1/log/topic/t?offset=now&live=long-poll`, { headers: K }),
      };
      const rpc = {
        grpc: drain(client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: "t" } }, { headers: K })),
        connect: drain(client(EventsService, app, "connect").streamEvents({ topic: "t" }, { headers: K })),
      };
      // Another key of the same project: its streams must not end.
      const keptSse = new SseReader(`${app.url}/api/v1/events/stream?topic=t`, KEEP);
      const keptRpc = drain(client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: "t" } }, { headers: KEEP }));
      // Open once the greeting (an event or a comment) is in.
      for (const r of [...Object.values(sse), keptSse]) await r.until((x) => x.status === 200 && x.messages.length + x.comments.length > 0);
      await eventually(async () => (await metricValue(app, "live_readers")) === before + 10, 10_000, "all ten live readers open");
      const checksBefore = checks.reduce((n, c) => n + c.mock.calls.length, 0);
      const t0 = Date.now();

      expect((await admin.revokeApiKey({ id: created.id }, { headers: ADMIN })).revoked).toBe(true);

      // SSE: a last `error` event in the dialect's error shape, then the server ends the stream.
      for (const r of Object.values(sse)) await r.finished();
      const last = (r: SseReader): { event?: string | undefined; data: string } => r.messages.at(-1)!;
      expect(Object.values(sse).every((r) => r.endedByServer)).toBe(true);
      expect(last(sse.polos).event).toBe("error");
      expect(JSON.parse(last(sse.polos).data)).toEqual({ error: expect.stringMatching(/API key was revoked/) });
      expect(last(sse.kubiya).event).toBe("error");
      expect(JSON.parse(last(sse.kubiya).data)).toEqual({ detail: expect.stringMatching(/API key was revoked/) });
      expect(last(sse.terminaluse).event).toBe("error");
      expect(JSON.parse(last(sse.terminaluse).data)).toEqual({ detail: expect.stringMatching(/API key was revoked/) });
      expect(last(sse.durable).event).toBe("error");
      expect(last(sse.durable).data).toMatch(/API key was revoked/);
      // Long-polls waiting for data are answered 401 at once (their own timeout is a minute away).
      for (const p of Object.values(polls)) {
        const res = await p;
        expect(res.status).toBe(401);
        expect(res.headers.get("www-authenticate")).toBe("Bearer");
        expect(await res.text()).toMatch(/API key was revoked/);
      }
      // RPC server streams: unauthenticated.
      for (const r of Object.values(rpc)) {
        const end = await r.ended;
        expect(end).toBeInstanceOf(ConnectError);
        expect((end as ConnectError).code).toBe(Code.Unauthenticated);
        expect((end as ConnectError).rawMessage).toMatch(/API key was revoked/);
      }
      const elapsed = Date.now() - t0;
      console.log(`[stream-auth ${factory.name}] 8 streams of the revoked key ended ${elapsed} ms after RevokeApiKey (AUTH_CACHE_MS ${AUTH_CACHE_MS})`);
      // Every slot the revoked key held is given back; the other key's two remain.
      await eventually(async () => (await metricValue(app, "live_readers")) === before + 2, 10_000, "the revoked key's slots given back");

      // One key-store query per period for all the keys in use (two keys, ten streams).
      const calls = checks.flatMap((c) => c.mock.calls);
      const during = calls.slice(checksBefore);
      expect(during.length).toBeGreaterThan(0);
      expect(during.length).toBeLessThanOrEqual(Math.ceil(elapsed / AUTH_CACHE_MS) + 2);
      expect(during.every(([hashes]) => hashes.length <= 2)).toBe(true);

      // The other key's streams go on delivering.
      const seen = keptSse.messages.length;
      expect((await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: 2 }] }, KEEP)).status).toBe(200);
      await keptSse.until((r) => r.messages.length > seen);
      expect(JSON.parse(keptSse.messages.at(-1)!.data)).toMatchObject({ data: 2 });
      await eventually(async () => keptRpc.got >= 2, 10_000, "the kept RPC stream delivers");
      // New requests with the revoked key are refused as well.
      expect((await postJson(app, "/api/v1/events/publish", { topic: "t", events: [{ data: 3 }] }, K)).status).toBe(401);
      await keptSse.close();
    });

    it("ends every stream of a key when it expires, as if revoked, and refuses it from then on", async () => {
      const admin = client(AdminService, app, "connect");
      // Far enough ahead for the streams to open on a busy machine; the test waits for the expiry.
      const expiresAt = new Date(Date.now() + 4000);
      const created = await admin.createApiKey({ project: "acme", name: "short", expiresAt: expiresAt.toISOString() }, { headers: ADMIN });
      expect(created.expiresAt).toBe(expiresAt.toISOString());
      const listed = await admin.listApiKeys({ project: "acme" }, { headers: ADMIN });
      expect(listed.keys.find((k) => k.id === created.id)).toMatchObject({ name: "short", expiresAt: expiresAt.toISOString() });
      const K = { authorization: `Bearer ${created.key}` };
      const sse = [new SseReader(`${app.url}/api/v1/events/stream?topic=x`, K), new SseReader(`${app.url}/api/v1/executions/x1/stream`, K)];
      const rpc = [
        drain(client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: "x" } }, { headers: K })),
        drain(client(EventsService, app, "connect").streamEvents({ topic: "x" }, { headers: K })),
      ];
      const poll = fetch(`${app.url}/v1/log/topic/x?offset=now&live=long-poll`, { headers: K });
      const kept = new SseReader(`${app.url}/api/v1/events/stream?topic=x`, KEEP);
      for (const r of [...sse, kept]) await r.until((x) => x.status === 200 && x.messages.length + x.comments.length > 0);

      // Nobody revokes it: the periodic check finds it expired.
      for (const r of sse) await r.finished();
      expect(sse.every((r) => r.endedByServer)).toBe(true);
      expect(sse[0]!.messages.at(-1)).toMatchObject({ event: "error" });
      expect(JSON.parse(sse[0]!.messages.at(-1)!.data)).toEqual({ error: expect.stringMatching(/revoked or has expired/) });
      expect(JSON.parse(sse[1]!.messages.at(-1)!.data)).toEqual({ detail: expect.stringMatching(/revoked or has expired/) });
      for (const r of rpc) expect(await r.ended).toMatchObject({ code: Code.Unauthenticated, rawMessage: expect.stringMatching(/revoked or has expired/) });
      expect((await poll).status).toBe(401);
      const late = Date.now() - expiresAt.getTime();
      console.log(`[stream-auth ${factory.name}] 5 streams of the expired key ended ${late} ms after its expiry (AUTH_CACHE_MS ${AUTH_CACHE_MS})`);
      expect(late).toBeGreaterThanOrEqual(0);

      // New requests with it are refused on every surface; the other key goes on.
      const pub = await postJson(app, "/api/v1/events/publish", { topic: "x", events: [{ data: 1 }] }, K);
      expect(pub.status).toBe(401);
      expect(pub.json.error).toMatch(/expired/);
      const sub = drain(client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: "x" } }, { headers: K }));
      expect(await sub.ended).toMatchObject({ code: Code.Unauthenticated });
      expect((await postJson(app, "/api/v1/events/publish", { topic: "x", events: [{ data: 2 }] }, KEEP)).status).toBe(200);
      await kept.until((r) => r.messages.some((m) => m.data.includes('"data":2')));
      await kept.close();
      // Operators still see it, with its expiry.
      const after = await admin.listApiKeys({ project: "acme" }, { headers: ADMIN });
      expect(after.keys.find((k) => k.id === created.id)).toMatchObject({ expiresAt: expiresAt.toISOString() });
    });

    it("refuses an expiry that is not a future RFC 3339 time or a positive TTL", async () => {
      const admin = client(AdminService, app, "connect");
      const bad = [
        { expiresAt: new Date(Date.now() - 1000).toISOString() },
        { expiresAt: "2030-01-31" },
        { expiresAt: "tomorrow" },
        { ttlSeconds: 0n },
        { ttlSeconds: -5n },
        { ttlSeconds: 60n, expiresAt: "2099-01-01T00:00:00Z" },
      ];
      for (const b of bad) {
        const err = await admin.createApiKey({ project: "acme", ...b }, { headers: ADMIN }).catch((e: unknown) => ConnectError.from(e));
        expect(err, JSON.stringify(b, (_, v: unknown) => (typeof v === "bigint" ? String(v) : v))).toMatchObject({ code: Code.InvalidArgument, rawMessage: expect.stringMatching(/expires_at|ttl_seconds/) });
      }
      const ttl = await admin.createApiKey({ project: "acme", ttlSeconds: 3600n }, { headers: ADMIN });
      expect(new Date(ttl.expiresAt!).getTime() - Date.now()).toBeGreaterThan(3500_000);
      const ok = await postJson(app, "/api/v1/events/publish", { topic: "y", events: [{ data: 1 }] }, { authorization: `Bearer ${ttl.key}` });
      expect(ok.status).toBe(200);
    });
  });
}
