/** Process lifecycle: graceful shutdown on SIGTERM, and holes left by a crashed publisher. */
import { spawn } from "node:child_process";
import readline from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { storeFactories } from "./support/stores.js";

describe("graceful shutdown", () => {
  let mongo: TestMongo;
  afterAll(async () => mongo?.stop());

  it("on SIGTERM stops accepting, finishes in-flight publishes, ends streams cleanly and exits 0", async () => {
    mongo = await startTestMongo();
    const dbName = `shutdown_${Date.now()}`;
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { ...process.env, PORT: "0", HOST: "127.0.0.1", MONGODB_URI: mongo.uri, MONGODB_DB: dbName, AUTH: "off", SHUTDOWN_TIMEOUT_MS: "5000", LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("service did not start")), 30_000);
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        const rec = JSON.parse(line) as { msg?: string; url?: string };
        if (rec.msg?.startsWith("listening") && rec.url) {
          clearTimeout(t);
          resolve(rec.url);
        }
      });
    });
    const app = { url } as Parameters<typeof postJson>[0];
    const topic = `shutdown-${Date.now()}`;
    const sse = new SseReader(`${url}/api/v1/events/stream?topic=${topic}&project_id=acme`);
    const rpc = createClient(StreamService, createGrpcTransport({ baseUrl: url }));
    let rpcEnded: "clean" | string = "running";
    const rpcSub = (async () => {
      try {
        for await (const _ of rpc.subscribe({ stream: { kind: StreamKind.TOPIC, key: topic } }, { headers: { "x-project-id": "acme" } })) void _;
        rpcEnded = "clean";
      } catch (e) {
        rpcEnded = e instanceof ConnectError ? Code[e.code] : String(e);
      }
    })();
    await new Promise((r) => setTimeout(r, 300));

    const acked: number[] = [];
    let stop = false;
    const publishers = Array.from({ length: 16 }, async () => {
      while (!stop) {
        try {
          const r = await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 1 }] }, { "X-Project-ID": "acme" });
          if (r.status === 200) acked.push(r.json.sequence_ids[0]);
        } catch {
          return; // connection refused / reset: the server is gone
        }
      }
    });
    await new Promise((r) => setTimeout(r, 400));
    const t0 = Date.now();
    child.kill("SIGTERM");
    const code = await exited;
    stop = true;
    await Promise.all(publishers);
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    await sse.finished();
    await rpcSub;
    expect(sse.endedByServer).toBe(true);
    expect(rpcEnded).toBe("clean");
    expect(acked.length).toBeGreaterThan(10);

    // Every acked publish was stored: a new instance on the same database lists them all.
    const app2 = await startTestServer({ store: new MongoStore({ uri: mongo.uri, dbName }) });
    try {
      const listed: number[] = (await getJson(app2, `/api/v1/events?topic=${topic}&limit=1000&project_id=acme`)).json.events.map((e: { sequence_id: number }) => e.sequence_id);
      for (const a of acked) expect(listed).toContain(a);
      // Everything SSE delivered before the end was stored, in order.
      const seen = sse.messages.map((m) => Number(m.id));
      expect(seen).toEqual(listed.slice(0, seen.length));
    } finally {
      await app2.close();
    }
  }, 60_000);
});

for (const factory of storeFactories) {
  describe(`a hole left by a crashed publisher on the ${factory.name} store`, () => {
    it("is skipped after the hole timeout and counted in holes_skipped_total", async () => {
      const app = await startTestServer({ store: await factory.make(), env: { HOLE_TIMEOUT_MS: "400" } });
      try {
        const key = `hole-${Date.now()}`;
        const stream = { kind: StreamKind.TOPIC, key };
        // A publisher took sequence 1 and died before storing it.
        expect(await app.store.reserve({ project: "acme", kind: "topic", key }, 1)).toBe(1);
        const rpc = client(StreamService, app, "grpc");
        const got: [bigint, number][] = [];
        const t0 = Date.now();
        const sub = (async () => {
          for await (const res of rpc.subscribe({ stream }, { headers: { "x-project-id": "acme" } })) {
            got.push(...res.events.map((e): [bigint, number] => [e.sequence, Date.now() - t0]));
            if (got.length >= 2) break;
          }
        })();
        const r = await postJson(app, "/api/v1/events/publish", { topic: key, events: [{ data: "after the hole" }] }, { "X-Project-ID": "acme" });
        expect(r.json.sequence_ids).toEqual([2]);
        await new Promise((res) => setTimeout(res, 600));
        await postJson(app, "/api/v1/events/publish", { topic: key, events: [{ data: "next" }] }, { "X-Project-ID": "acme" });
        await sub;
        expect(got.map((g) => g[0])).toEqual([2n, 3n]);
        expect(got[0]![1]).toBeGreaterThanOrEqual(350); // waited for the hole, bounded
        expect(got[0]![1]).toBeLessThan(3000);
        const metrics = await (await fetch(`${app.url}/metrics`)).text();
        expect(metrics).toMatch(/^holes_skipped_total 1$/m);
        expect(metrics).toMatch(/^events_published_total\{api="polos"\} 2$/m);
        expect(metrics).toMatch(/^subscribers \d+$/m);
      } finally {
        await app.close();
        await factory.teardown();
      }
    });
  });
}
