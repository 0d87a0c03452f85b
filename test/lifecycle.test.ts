/**
 * Process lifecycle, with the built service as its own process: graceful shutdown on SIGTERM (also
 * under `npm start`), start-up failures as one line, and holes left by a crashed publisher. Waits
 * are on events (log lines, metrics, acks), never on fixed sleeps: the suite runs on busy machines.
 */
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { storeFactories } from "./support/stores.js";
import { eventually } from "./support/raw.js";
import { alive, built, freePort, run, startService } from "./support/process.js";
import { createLogger } from "../src/server/app.js";

describe("graceful shutdown", () => {
  let mongo: TestMongo;
  afterAll(async () => mongo?.stop());

  it("on SIGTERM stops accepting, finishes in-flight publishes, ends streams cleanly, logs it and exits 0", async () => {
    mongo = await startTestMongo();
    const dbName = `shutdown_${Date.now()}`;
    const svc = await startService({ MONGODB_URI: mongo.uri, MONGODB_DB: dbName, SHUTDOWN_TIMEOUT_MS: "5000" });
    // MongoDB on loopback: open, like the in-memory store (keys are for what the network can reach).
    expect(svc.logs.find((l) => /^authentication is OFF/.test(l.msg ?? ""))).toBeDefined();
    const url = svc.url;
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
    // Both subscriptions are open on the server before anything is published.
    await eventually(async () => /^subscribers 2$/m.test(await (await fetch(`${url}/metrics`)).text()), 60_000, "two subscribers");

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
    // Publishes are flowing (however slowly the machine runs) when the signal comes.
    await eventually(() => acked.length >= 20, 60_000, "20 acked publishes");
    svc.child.kill("SIGTERM");
    const { code } = await svc.exited;
    stop = true;
    await Promise.all(publishers);
    // Exit 0 means the drain finished: past SHUTDOWN_TIMEOUT_MS the process exits 1 (src/main.ts).
    expect(code).toBe(0);
    const msgs = svc.logs.map((l) => l.msg);
    expect(msgs.indexOf("SIGTERM: shutting down (draining for up to SHUTDOWN_TIMEOUT_MS=5000 ms)")).toBeGreaterThan(msgs.findIndex((m) => m?.startsWith("listening")));
    expect(msgs.at(-1)).toBe("stopped");
    await sse.finished();
    await rpcSub;
    expect(sse.endedByServer).toBe(true);
    expect(rpcEnded).toBe("clean");

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
  }, 120_000);

  it("npm start runs node itself: SIGTERM to npm stops the service, nothing is left listening", async () => {
    const npm = await run("npm", ["--version"]);
    expect(npm.code, npm.stderr).toBe(0);
    const svc = await startService({}, ["npm", "start"]);
    expect(svc.pid).not.toBe(svc.child.pid); // the log line comes from node, npm's child
    svc.child.kill("SIGTERM");
    expect((await svc.exited).code).toBe(0);
    expect(alive(svc.pid)).toBe(false);
    expect(svc.logs.at(-1)?.msg).toBe("stopped");
    await expect(fetch(`${svc.url}/healthz`)).rejects.toThrow();
  });
});

describe("start-up failures: one actionable line on stderr, exit 1", () => {
  const main = () => built("src/main.js");
  async function failsWith(env: Record<string, string>, line: RegExp): Promise<void> {
    const r = await run(process.execPath, [main()], { env: { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "warn", ...env } });
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^agent-events: /);
    expect(lines[0]).toMatch(line);
  }

  it("a busy port names the port", async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      await failsWith({ PORT: String(port) }, new RegExp(`port ${port} is already in use .*set PORT`));
    } finally {
      busy.close();
    }
  });

  it("an unreachable MongoDB is one line (no stack), naming the address without its password", async () => {
    const port = await freePort();
    await failsWith({ MONGODB_URI: `mongodb://ops:s3cret@127.0.0.1:${port}/x`, MONGODB_TIMEOUT_MS: "300" }, new RegExp(`cannot reach MongoDB at mongodb://ops:\\*\\*\\*@127\\.0\\.0\\.1:${port}/x within MONGODB_TIMEOUT_MS=300 .*ECONNREFUSED`));
  });

  // Every setting that is checked, with a value it refuses: the line names the variable.
  const badSettings: Record<string, string> = {
    PORT: "http",
    SHUTDOWN_TIMEOUT_MS: "-1",
    WATCH_MODE: "sometimes",
    MONGODB_WRITE_CONCERN: "all",
    AUTH: "maybe",
    API_KEYS: "no-colon",
    LOG_LEVEL: "loud",
  };
  it(`bad settings (${Object.keys(badSettings).join(", ")}) each name the variable`, async () => {
    await Promise.all(Object.entries(badSettings).map(([name, value]) => failsWith({ [name]: value }, new RegExp(`^agent-events: ${name} must`))));
  });

  it("a non-loopback HOST with no way to get a key refuses to start and says how to fix it", async () => {
    await failsWith({ HOST: "0.0.0.0" }, /refusing to start: API keys are required \(HOST=0\.0\.0\.0 is not loopback\).*API_KEYS=project:key.*ADMIN_TOKEN.*MONGODB_URI/);
    await failsWith({ HOST: "0.0.0.0", AUTH: "off" }, /HOST=0\.0\.0\.0 with AUTH=off: remove AUTH=off/);
  });
});

describe("start-up says how to get a key when keys are required", () => {
  let mongo: TestMongo;
  afterAll(async () => mongo?.stop());

  it("with MongoDB: create one with the CLI straight in the database; with ADMIN_TOKEN: through the service", async () => {
    mongo = await startTestMongo();
    const lines: { msg: string }[] = [];
    const sink = { write: (s: string) => void lines.push(JSON.parse(s)) };
    const app = await startTestServer({ store: new MongoStore({ uri: mongo.uri, dbName: `keys_${Date.now()}` }), env: { AUTH: "required" }, logger: createLogger("info", sink) });
    await app.close();
    expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(/^authentication: API keys required; create one with MONGODB_URI=… agent-events keys create --project <project>/));
    lines.length = 0;
    const viaRpc = await startTestServer({ env: { AUTH: "required", ADMIN_TOKEN: "t" }, logger: createLogger("info", sink) });
    await viaRpc.close();
    expect(lines.map((l) => l.msg)).toContainEqual(expect.stringMatching(/create one with ADMIN_TOKEN=… agent-events keys create/));
  });
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
        // Sequence 2 comes only once the reader gave up on the hole; then the next publish.
        await eventually(() => got.length >= 1, 60_000, "the event after the hole");
        await postJson(app, "/api/v1/events/publish", { topic: key, events: [{ data: "next" }] }, { "X-Project-ID": "acme" });
        await sub;
        expect(got.map((g) => g[0])).toEqual([2n, 3n]);
        // It waited for the hole (at least HOLE_TIMEOUT_MS; an upper bound would be a timing
        // assertion: that it came at all, while the test waits, is what bounds it).
        expect(got[0]![1]).toBeGreaterThanOrEqual(350);
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
