/**
 * Store commands per publish on every dialect, counted on the wire: a proxy between the service and
 * the MongoDB test server reads each command (OP_MSG) and counts the application commands a real
 * replica set pays for too. The budget (docs/operations.md, "Store commands per publish"): a single
 * publish without a duplicate key is one counter update and one insert, whatever the dialect, once
 * what never changes is cached (an execution's binding, a task) — so each row publishes once to
 * warm up, then counts PUBLISHES more.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { TcpProxy } from "./support/proxy.js";
import { postJson, startTestServer } from "./support/server.js";

/** What a replica set pays for (driver monitoring — hello, ping — and cursor kills are not counted). */
const COUNTED = new Set(["find", "getMore", "aggregate", "insert", "update", "findAndModify", "delete", "count", "distinct"]);
const PUBLISHES = 5;
const P = { "X-Project-ID": "acme" };

interface Row {
  dialect: string;
  /** Run once before counting (creates what the publish needs: a task, a stream, a subscription). */
  setup(app: App): Promise<unknown>;
  publish(app: App, state: unknown, i: number): Promise<void>;
  /** Commands per publish, steady state. */
  budget: number;
}

async function ok(res: Promise<{ status: number; json: unknown }> | Promise<Response>, want: number): Promise<void> {
  const r = await res;
  expect(r.status, JSON.stringify(r instanceof Response ? await r.text() : r.json)).toBe(want);
}

const rows: Row[] = [
  {
    dialect: "Polos",
    setup: async () => `costs-polos-${Date.now()}`,
    publish: (app, topic) => ok(postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: "t", data: { n: 1 } }] }, P), 200),
    budget: 2,
  },
  {
    dialect: "Kubiya",
    setup: async () => `costs-exec-${Date.now()}`,
    publish: (app, exec) => ok(postJson(app, `/api/v1/executions/${exec}/events`, { event_type: "t", data: { n: 1 } }, P), 202),
    budget: 2,
  },
  {
    dialect: "Sailhouse",
    setup: async () => `costs-topic-${Date.now()}`,
    publish: (app, topic) => ok(postJson(app, `/topics/${topic}/events`, { data: { n: 1 } }, P), 201),
    // The server-made idempotency key is still looked up before the insert (insert-first needs src/core/log/).
    budget: 3,
  },
  {
    dialect: "TerminalUse",
    async setup(app) {
      const t = await postJson(app, "/tasks", { agent_name: "acme/costs" }, P);
      expect(t.status).toBe(201);
      return t.json.id as string;
    },
    publish: (app, task, i) => ok(postJson(app, `/tasks/${task}/events`, { content: { type: "text", text: `m${i}` } }, P), 201),
    budget: 2,
  },
  {
    dialect: "Durable Streams",
    async setup(app) {
      const name = `costs-ds-${Date.now()}`;
      await ok(fetch(`${app.url}/v1/stream/${name}`, { method: "PUT", headers: { "content-type": "application/json" } }), 201);
      return name;
    },
    publish: (app, name, i) => ok(fetch(`${app.url}/v1/stream/${name}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ i }) }), 204),
    // Two metadata reads and two stream-record reads before the append (one metadata read needs src/api/durable/).
    budget: 6,
  },
];

describe("store commands per publish, every dialect (MongoDB, counted on the wire)", () => {
  let mongo: TestMongo;
  let proxy: TcpProxy;
  let app: App;
  const seen: string[] = [];
  let counting = false;

  beforeAll(async () => {
    mongo = await startTestMongo();
    const target = new URL(mongo.uri.replace("mongodb://", "http://"));
    proxy = new TcpProxy(target.hostname, Number(target.port));
    proxy.faults = (cmd) => {
      if (counting && COUNTED.has(cmd.name)) seen.push(`${cmd.name} ${cmd.collection ?? ""}`);
      return undefined;
    };
    await proxy.start();
    const store = new MongoStore({ uri: `mongodb://127.0.0.1:${proxy.port}/?directConnection=true`, dbName: `costs_${Date.now()}`, serverSelectionTimeoutMs: 3000, sweepIntervalMs: 0 });
    app = await startTestServer({ store });
  });
  afterAll(async () => {
    await app?.close();
    await proxy?.stop();
    await mongo?.stop();
  });

  const figures: string[] = [];
  for (const row of rows) {
    it(`${row.dialect}: a single publish costs ${row.budget} commands`, async () => {
      const state = await row.setup(app);
      await row.publish(app, state, 0);
      seen.length = 0;
      counting = true;
      for (let i = 1; i <= PUBLISHES; i++) await row.publish(app, state, i);
      counting = false;
      // Only commands of the publishes: background work (the Sailhouse worker, the watcher) has
      // nothing due here, so anything else counted is the publish's.
      figures.push(`${row.dialect}: ${seen.length / PUBLISHES} per publish (${[...new Set(seen)].join(", ")})`);
      expect(seen.length / PUBLISHES, seen.join("; ")).toBe(row.budget);
    });
  }
  afterAll(() => console.log(figures.join("\n")));
});
