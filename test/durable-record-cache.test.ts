/**
 * A plain Durable Streams append answers from the stream's record cached on its instance (2 store
 * commands: test/costs.test.ts). The record changes when the stream is deleted and created again,
 * possibly on another instance: these tests do that behind a cache's back and check that the
 * cached instance's next append is answered as the new stream says (its content type, its offsets,
 * 404 when gone) and that nothing lands in the wrong incarnation. MongoDB: two service instances
 * on one database. Memory: two durable APIs (each with its own log and cache) on one store, which
 * is what two instances would share if the memory store could be shared.
 */
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { durableApi, DsError, type DsReply } from "../src/api/durable/index.js";
import { EventLog } from "../src/core/log/index.js";
import { MemoryStore } from "../src/store/memory/index.js";
import { MemoryDurableStore } from "../src/store/memory/durable.js";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const PROJECT = "record-cache";

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One service instance, spoken to with the protocol's requests. */
interface Instance {
  send(method: string, name: string, headers?: Record<string, string>, body?: string): Promise<Answer>;
}

function overHttp(app: App): Instance {
  return {
    async send(method, name, headers = {}, body) {
      const res = await fetch(`${app.url}/v1/stream/${name}${method === "GET" ? "?offset=-1" : ""}`, { method, headers: { "x-project-id": PROJECT, ...headers }, ...(body !== undefined ? { body } : {}) });
      return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
    },
  };
}

async function bodyOf(reply: DsReply): Promise<string> {
  if ("stream" in reply) {
    const chunks: Buffer[] = [];
    for await (const c of reply.stream) chunks.push(Buffer.from(c));
    return Buffer.concat(chunks).toString();
  }
  if ("sse" in reply || reply.body === undefined) return "";
  return typeof reply.body === "string" ? reply.body : Buffer.from(reply.body).toString();
}

/** Two durable APIs on one memory store and one record store, each with its own log and record cache. */
function inMemory(): [Instance, Instance] {
  const store = new MemoryStore();
  const records = new MemoryDurableStore(store.budget);
  const config = { longPollTimeoutMs: 1000, sseMaxMs: 0, maxAppendBytes: 1 << 20, readMaxBytes: 1 << 20, maxForkBytes: 1 << 20 };
  const make = (): Instance => {
    const api = durableApi({ log: new EventLog(store), now: () => new Date(), durable: records, config });
    return {
      async send(method, name, headers = {}, body) {
        const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
        const r = { method, project: PROJECT, name, header: (h: string) => lower[h], query: new URLSearchParams(method === "GET" ? "offset=-1" : ""), body: Buffer.from(body ?? ""), signal: new AbortController().signal, origin: "http://127.0.0.1" };
        try {
          const reply = await api.handle(r);
          return { status: reply.status, headers: reply.headers ?? {}, body: await bodyOf(reply) };
        } catch (err) {
          if (err instanceof DsError) return { status: err.status, headers: err.headers, body: err.message };
          throw err;
        }
      },
    };
  };
  return [make(), make()];
}

const JSON_CT = { "content-type": "application/json" };
const TEXT_CT = { "content-type": "text/plain" };
const offset = (a: Answer): string => a.headers["stream-next-offset"]!;
const incOf = (o: string): string => o.split("_")[0]!;

function scenarios(instances: () => Promise<[Instance, Instance]>) {
  /** Instance A appends twice (the second from its cached record), then returns both. */
  async function cachedOnA(name: string): Promise<[Instance, Instance]> {
    const [a, b] = await instances();
    expect((await a.send("PUT", name, JSON_CT)).status).toBe(201);
    for (const m of [1, 2]) expect((await a.send("POST", name, JSON_CT, JSON.stringify([{ m }]))).status).toBe(204);
    return [a, b];
  }

  it("created again elsewhere with another content type: the cached instance answers 409 and appends to the new stream at its offsets", async () => {
    const name = `ct-${randomUUID()}`;
    const [a, b] = await cachedOnA(name);
    expect((await b.send("DELETE", name)).status).toBe(204);
    const created = await b.send("PUT", name, TEXT_CT);
    expect(created.status).toBe(201);
    const inc = incOf(offset(created));
    const first = await b.send("POST", name, TEXT_CT, "x");
    expect(first.status).toBe(204);

    // A's cache still says application/json: the store refuses that incarnation, A reads the record again.
    const refused = await a.send("POST", name, JSON_CT, JSON.stringify([{ m: 3 }]));
    expect(refused.status).toBe(409);
    expect(refused.body).toContain("text/plain");
    const appended = await a.send("POST", name, TEXT_CT, "y");
    expect(appended.status).toBe(204);
    expect(incOf(offset(appended))).toBe(inc);
    expect(offset(appended) > offset(first)).toBe(true);
    // And from the record cached now, again.
    const again = await a.send("POST", name, TEXT_CT, "z");
    expect(again.status).toBe(204);
    expect(offset(again) > offset(appended)).toBe(true);

    for (const x of [a, b]) {
      const read = await x.send("GET", name);
      expect(read.status).toBe(200);
      expect(read.body).toBe("xyz");
      expect(offset(read)).toBe(offset(again));
    }
  });

  it("created again elsewhere with the same configuration: the cached instance's append lands in the new stream only", async () => {
    const name = `same-${randomUUID()}`;
    const [a, b] = await cachedOnA(name);
    expect((await b.send("DELETE", name)).status).toBe(204);
    const created = await b.send("PUT", name, JSON_CT);
    expect(created.status).toBe(201);
    const appended = await a.send("POST", name, JSON_CT, JSON.stringify([{ m: "new" }]));
    expect(appended.status).toBe(204);
    expect(incOf(offset(appended))).toBe(incOf(offset(created)));
    for (const x of [a, b]) {
      const read = await x.send("GET", name);
      expect(JSON.parse(read.body)).toEqual([{ m: "new" }]);
      expect(offset(read)).toBe(offset(appended));
    }
  });

  it("deleted elsewhere: the cached instance answers 404 and stores nothing", async () => {
    const name = `gone-${randomUUID()}`;
    const [a, b] = await cachedOnA(name);
    expect((await b.send("DELETE", name)).status).toBe(204);
    expect((await a.send("POST", name, JSON_CT, JSON.stringify([{ m: 3 }]))).status).toBe(404);
    expect((await a.send("POST", name, JSON_CT, JSON.stringify([{ m: 4 }]))).status).toBe(404);
    const created = await b.send("PUT", name, JSON_CT);
    expect(created.status).toBe(201);
    expect(JSON.parse((await a.send("GET", name)).body)).toEqual([]);
  });

  it("closed elsewhere: the cached instance's append is refused as closed", async () => {
    const name = `closed-${randomUUID()}`;
    const [a, b] = await cachedOnA(name);
    expect((await b.send("POST", name, { ...JSON_CT, "stream-closed": "true" })).status).toBe(204);
    const refused = await a.send("POST", name, JSON_CT, JSON.stringify([{ m: 3 }]));
    expect(refused.status).toBe(409);
    expect(refused.headers["stream-closed"]).toBe("true");
    expect(JSON.parse((await b.send("GET", name)).body)).toEqual([{ m: 1 }, { m: 2 }]);
  });
}

describe("a cached stream record never answers for another incarnation (memory store)", () => {
  scenarios(async () => inMemory());
});

const mongo = storeFactories.find((f) => f.name === "mongo")!;

describe("a cached stream record never answers for another incarnation (two instances on one MongoDB)", () => {
  const apps: App[] = [];
  afterAll(async () => {
    for (const app of apps) await app.close();
    await mongo.teardown();
  });
  scenarios(async () => {
    const dbName = `cache_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const pair: Instance[] = [];
    for (let i = 0; i < 2; i++) {
      const app = await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }) });
      apps.push(app);
      pair.push(overHttp(app));
    }
    return pair as [Instance, Instance];
  });
});
