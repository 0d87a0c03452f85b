/**
 * The protection × surface matrix, generated from the route table (App.routes): for every route of
 * every surface, every protection its policy says applies is attacked with a request built from
 * the route's template, and the answer is checked in the route's dialect (JSON `error`, FastAPI
 * `detail`, Durable Streams text, Connect code). Where a protection does not apply, the table below
 * says why. A new route is covered as soon as it is in the table. Meanwhile another client must get
 * /healthz within 5 s, and the event-loop delay of the process serving is measured and printed.
 */
import net from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { ERROR_TABLE, type ErrorClass } from "../../src/api/errors.js";
import type { App } from "../../src/server/app.js";
import type { PipelineRoute } from "../../src/server/pipeline.js";
import { MongoStore } from "../../src/store/mongo/index.js";
import { startTestMongo, type TestMongo } from "../support/mongo.js";
import { TcpProxy } from "../support/proxy.js";
import { eventually, metricValue, rawHttp } from "../support/raw.js";
import { startTestServer } from "../support/server.js";
import { storeFactories } from "../support/stores.js";

const KEY = "key-matrix";
/** The key of a project of its own for the subscription-cap rows (its one slot is the holder's). */
const CAPPED = "key-capped";
const EVIL = "http://evil.example";

const ADMIN = "admin-matrix";

type Protection = "no_key" | "wrong_key" | "key_revoked_mid_stream" | "cookie_cross_site" | "foreign_origin_auth_on" | "foreign_origin_auth_off" | "host_rebinding" | "over_limit_body" | "budget_exhausted" | "subscription_cap" | "metrics_label";
export const PROTECTIONS: readonly Protection[] = ["no_key", "wrong_key", "key_revoked_mid_stream", "cookie_cross_site", "foreign_origin_auth_on", "foreign_origin_auth_off", "host_rebinding", "over_limit_body", "budget_exhausted", "subscription_cap", "metrics_label"];

/** The budget row: the instance's bytes in flight (MAX_INFLIGHT_BYTES), a hog holding most of it, and each probe's body. */
const BUDGET = { limit: 1024 * 1024, hog: 900_000, probe: 200_000 } as const;
/** What a probe's body must pass: what the hog leaves of the budget, with room. */
const BUDGET_LEFT = BUDGET.limit - BUDGET.hog + 20_000;

/**
 * A valid request for each live RPC (a server stream needs a real one to stay open). A live RPC
 * missing here fails the revocation row: add its sample.
 */
const LIVE_RPC_SAMPLES: Readonly<Record<string, (fill: Record<string, string>) => unknown>> = {
  "/events.v1.StreamService/Subscribe": () => ({ stream: { kind: "STREAM_KIND_TOPIC", key: "matrix" } }),
  "/polos.v1.EventsService/StreamEvents": () => ({ topic: "matrix" }),
  "/kubiya.v1.ExecutionEventsService/StreamExecutionEvents": () => ({ execution_id: "m1" }),
  "/sailhouse.v1.SailhouseService/StreamSubscription": () => ({ topic_slug: "matrix", subscription_slug: "matrix" }),
  "/terminaluse.v1.TaskEventsService/StreamTaskEvents": (f) => ({ task_id: f["task_id"] }),
  "/terminaluse.v1.TaskEventsService/StreamTaskParts": (f) => ({ task_id: f["task_id"] }),
};

/** Whether a protection applies to a route: true, or the reason it does not. */
export function applies(route: PipelineRoute, p: Protection): true | string {
  const { policy } = route;
  switch (p) {
    case "no_key":
    case "wrong_key":
      return policy.auth === "none" ? "no credentials by design: liveness, readiness, metrics, console files, health, reflection (own cap: test/unauthenticated-streams.test.ts)" : true;
    case "key_revoked_mid_stream":
      if (policy.stream !== "live") return "not a stream: a revoked key is refused on its next request (no_key/wrong_key rows)";
      return policy.auth === "key" ? true : "no key to revoke (health Watch)";
    case "over_limit_body":
      return policy.body === "stream" ? "a streaming request: each message is bounded by MAX_BODY_BYTES and the call by its window (test/listener-limits.test.ts)" : true;
    case "budget_exhausted":
      if (policy.body === "stream") return "a streaming request: each message counts while it is read, and the call is bounded by its window (test/listener-limits.test.ts)";
      if (route.method !== "POST" && route.method !== "PUT") return "no request body to hold: its answer is bounded by the queued-bytes budget (test/unsent-budget.test.ts)";
      return policy.body >= BUDGET_LEFT + 2_000 ? true : `a body limit (${policy.body} bytes) below what is left of the budget: the over-limit row refuses it first`;
    case "subscription_cap":
      if (policy.stream !== "live") return "not a live reader";
      return policy.caps.includes("subscriptions") ? true : "health Watch: the unauthenticated streams' own cap, MAX_UNAUTHENTICATED_STREAMS (test/unauthenticated-streams.test.ts)";
    default:
      return true;
  }
}

/** Protections proved by their own suites on every surface (not re-run here), and where. */
export const ELSEWHERE: Readonly<Record<string, string>> = {
  "budget exhausted (queued response bytes)": "test/unsent-budget.test.ts; the in-flight bytes budget is the budget_exhausted row here",
  "store outage (delivery resumes, nothing acked is lost)": "test/outage.test.ts; here: every unary route during an outage answers in bound, never 500",
  "byte-bounded response": "test/response-bytes.test.ts, test/list-streams.test.ts",
};

function connectName(code: Code): string {
  return Code[code]!.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

interface Probe {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

/** A request for `route` built from its template (RPCs in the Connect protocol, JSON codec). */
function probe(route: PipelineRoute, fill: Record<string, string>, headers: Record<string, string> = {}): Probe {
  let path = route.path.replace(/\{(\w+)\+?\}/g, (_m, n: string) => fill[n] ?? "m1");
  if (route.path.startsWith("/v1/log/")) path = "/v1/log/topic/matrix";
  if (route.policy.stream === "live" && route.surface === "durable") path += "?offset=-1&live=long-poll";
  if (route.surface === "polos") path += "?topic=matrix";
  if (route.errors !== "rpc") return { method: route.method, path, headers };
  if (route.policy.stream === "unary") return { method: "POST", path, headers: { "content-type": "application/json", ...headers }, body: "{}" };
  const env = new Uint8Array(7);
  env.set([0, 0, 0, 0, 2, 0x7b, 0x7d]);
  return { method: "POST", path, headers: { "content-type": "application/connect+json", ...headers }, body: env };
}

/** The error class an answer carries, read in the route's dialect. */
async function classOf(route: PipelineRoute, res: Response): Promise<{ status: number; code?: string; shaped: boolean }> {
  const type = res.headers.get("content-type") ?? "";
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (route.errors === "rpc") {
    let text = Buffer.from(bytes).toString("utf8");
    if (type.startsWith("application/connect+")) text = Buffer.from(bytes.subarray(5)).toString("utf8");
    const j = JSON.parse(text) as { code?: string; error?: { code?: string } };
    return { status: res.status, code: j.code ?? j.error?.code, shaped: true };
  }
  if (route.method === "HEAD") return { status: res.status, shaped: true };
  const text = Buffer.from(bytes).toString("utf8");
  if (route.errors === "text") return { status: res.status, shaped: type.startsWith("text/plain") && text.length > 0 };
  const j = JSON.parse(text) as Record<string, unknown>;
  return { status: res.status, shaped: route.errors === "fastapi" ? "detail" in j : typeof j["error"] === "string" };
}

async function expectRefused(app: App, route: PipelineRoute, p: Probe, cls: ErrorClass, why: string): Promise<void> {
  const res = await fetch(app.url + p.path, { method: p.method, headers: p.headers, ...(p.body !== undefined ? { body: p.body } : {}), signal: AbortSignal.timeout(30_000) });
  const got = await classOf(route, res);
  const label = `${why}: ${route.method} ${route.path}`;
  if (route.errors === "rpc") expect(got.code, label).toBe(connectName(ERROR_TABLE[cls].code));
  else expect(got.status, label).toBe(ERROR_TABLE[cls].status);
  expect(got.shaped, `${label}: answered in its dialect`).toBe(true);
}

/** Another client's health check, within its 5 s timeout. */
async function healthy(app: App): Promise<void> {
  const res = await fetch(`${app.url}/healthz`, { signal: AbortSignal.timeout(5000) });
  expect(res.status).toBe(200);
}

describe.each(storeFactories)("protection × surface matrix ($name store)", (factory) => {
  let on: App;
  let off: App;
  const fill: Record<string, string> = {};
  const delay = monitorEventLoopDelay({ resolution: 10 });
  const applied: Record<Protection, number> = Object.fromEntries(PROTECTIONS.map((p) => [p, 0])) as Record<Protection, number>;
  beforeAll(async () => {
    on = await startTestServer({ store: await factory.make(), env: { AUTH: "required", API_KEYS: `acme:${KEY},capped:${CAPPED}`, ADMIN_TOKEN: ADMIN, AUTH_CACHE_MS: "200", MAX_SUBSCRIPTIONS_PER_PROJECT: "1", DURABLE_LONG_POLL_MS: "200" } });
    off = await startTestServer({ store: await factory.make() });
    const task = await fetch(`${on.url}/tasks`, { method: "POST", headers: { authorization: `Bearer ${CAPPED}`, "content-type": "application/json" }, body: JSON.stringify({ agent_name: "acme/matrix", name: "matrix" }) });
    fill["task_id"] = ((await task.json()) as { id: string }).id;
    fill["task_name"] = "matrix";
    fill["name"] = "matrix-s";
    delay.enable();
  }, 120_000);
  afterAll(async () => {
    delay.disable();
    console.log(
      `[matrix ${factory.name}] ${on?.routes.length} routes × ${PROTECTIONS.length} protections: ${Object.entries(applied).map(([p, n]) => (p === "budget_exhausted" ? `${p}: its own row below` : `${p}=${n}`)).join(", ")}; event-loop delay p50 ${(delay.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`,
    );
    await on?.close();
    await off?.close();
    await factory.teardown();
  });

  it("every route declares a complete policy, and the table covers every surface", () => {
    const surfaces = new Set(on.routes.map((r) => r.surface));
    expect([...surfaces].sort()).toEqual(["console", "durable", "kubiya", "ops", "polos", "rpc", "sailhouse", "terminaluse"]);
    for (const r of on.routes) for (const p of PROTECTIONS) expect(applies(r, p) === true || typeof applies(r, p) === "string").toBe(true);
  });

  it("no key and a wrong key: unauthenticated, in the route's dialect", async () => {
    for (const route of on.routes) {
      if (applies(route, "no_key") !== true) continue;
      await expectRefused(on, route, probe(route, fill), "unauthenticated", "no key");
      await expectRefused(on, route, probe(route, fill, { authorization: "Bearer not-a-key" }), "unauthenticated", "wrong key");
      applied.no_key++;
      applied.wrong_key++;
    }
    await healthy(on);
  });

  it("cookie-only cross-site requests are refused on every route", async () => {
    for (const route of on.routes) {
      const p = probe(route, fill, { cookie: `polos_auth=${KEY}`, origin: EVIL });
      if (route.errors !== "rpc" && route.method !== "GET" && route.method !== "HEAD") Object.assign(p, { headers: { ...p.headers, "content-type": "text/plain" }, body: "x" });
      await expectRefused(on, route, p, "forbidden", "cookie-only cross-site");
      applied.cookie_cross_site++;
    }
    await healthy(on);
  });

  it("foreign origins: refused without a key; with AUTH=required a page sending a key gets CORS on the API routes only", async () => {
    for (const route of on.routes) {
      await expectRefused(on, route, probe(route, fill, { origin: EVIL }), "forbidden", "foreign origin, auth on");
      const keyed = probe(route, fill, { origin: EVIL, authorization: `Bearer ${KEY}` });
      const res = await fetch(on.url + keyed.path, { method: keyed.method, headers: keyed.headers, ...(keyed.body !== undefined ? { body: keyed.body } : {}), signal: AbortSignal.timeout(30_000) });
      // Live readers stay open: the headers are the answer.
      await res.body?.cancel().catch(() => {});
      if (route.policy.cors === "listed") expect(res.headers.get("access-control-allow-origin"), `${route.method} ${route.path}`).toBe(EVIL);
      else expect(res.status, `${route.method} ${route.path}`).toBe(403);
      applied.foreign_origin_auth_on++;
    }
    await healthy(on);
  });

  it("auth off: foreign origins and foreign Host names are refused on every route; preflights grant nothing", async () => {
    for (const route of off.routes) {
      await expectRefused(off, route, probe(route, fill, { origin: EVIL }), "forbidden", "foreign origin, auth off");
      const pre = await fetch(off.url + probe(route, fill).path, { method: "OPTIONS", headers: { origin: EVIL, "access-control-request-method": route.method } });
      expect(pre.status).toBe(204);
      expect(pre.headers.get("access-control-allow-origin")).toBeNull();
      applied.foreign_origin_auth_off++;
      const p = probe(route, fill);
      const raw = await rawHttp(off, `${p.method} ${p.path} HTTP/1.1\r\nHost: rebind.evil.example\r\n${Object.entries(p.headers).map(([k, v]) => `${k}: ${v}\r\n`).join("")}Content-Length: 0\r\nConnection: close\r\n\r\n`, 10_000);
      const expected = route.errors === "rpc" && route.policy.stream !== "unary" ? 200 : 403;
      expect(raw.status, `Host rebinding: ${route.method} ${route.path}`).toBe(expected);
      if (expected === 200) expect(raw.text).toMatch(/permission_denied/);
      applied.host_rebinding++;
    }
    await healthy(off);
  });

  it("over-limit bodies are refused before they are read", async () => {
    for (const route of on.routes) {
      if (applies(route, "over_limit_body") !== true) continue;
      const limit = route.policy.body as number;
      const p = probe(route, fill, { authorization: `Bearer ${KEY}` });
      const headers = Object.entries(p.headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      // The declared length is one byte over; no body follows: a refusal that waited for it would time out.
      const raw = await rawHttp(on, `${p.method} ${p.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}Content-Length: ${limit + 1}\r\nConnection: close\r\n\r\n`, 10_000);
      const label = `over-limit body: ${route.method} ${route.path}`;
      if (route.errors === "rpc") expect(raw.text, label).toMatch(/resource_exhausted/);
      else expect(raw.status, label).toBe(ERROR_TABLE.too_large.status);
      applied.over_limit_body++;
    }
    await healthy(on);
  });

  it("subscription caps count every live reader on every surface", async () => {
    // MAX_SUBSCRIPTIONS_PER_PROJECT=1: one reader holds the project's slot, every other live route is refused.
    const holder = new AbortController();
    const held = await fetch(`${on.url}/api/v1/events/stream?topic=matrix-hold`, { headers: { authorization: `Bearer ${CAPPED}` }, signal: holder.signal });
    expect(held.status).toBe(200);
    try {
      for (const route of on.routes) {
        if (applies(route, "subscription_cap") !== true) continue;
        await expectRefused(on, route, probe(route, fill, { authorization: `Bearer ${CAPPED}` }), "rate_limited", "subscription cap");
        applied.subscription_cap++;
      }
      await healthy(on);
    } finally {
      holder.abort();
    }
  });

  it("a key revoked mid-stream ends every live reader, in its dialect", async () => {
    const admin = async (method: string, body: unknown): Promise<Record<string, string>> =>
      (await (await fetch(`${on.url}/admin.v1.AdminService/${method}`, { method: "POST", headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" }, body: JSON.stringify(body) })).json()) as Record<string, string>;
    // Project "revoked": a task, a Durable Stream and a topic for the readers to follow.
    const setup = (await admin("CreateApiKey", { project: "revoked" }))["key"]!;
    const auth = { authorization: `Bearer ${setup}`, "content-type": "application/json" };
    const task = (await (await fetch(`${on.url}/tasks`, { method: "POST", headers: auth, body: JSON.stringify({ agent_name: "acme/matrix", name: "matrix" }) })).json()) as { id: string };
    await fetch(`${on.url}/v1/stream/matrix-s`, { method: "PUT", headers: { authorization: auth.authorization, "content-type": "text/plain" } });
    await fetch(`${on.url}/api/v1/events/publish`, { method: "POST", headers: auth, body: JSON.stringify({ topic: "matrix", events: [{ data: 1 }] }) });
    const f = { ...fill, task_id: task.id };
    for (const route of on.routes) {
      if (applies(route, "key_revoked_mid_stream") !== true) continue;
      const label = `revoked mid-stream: ${route.method} ${route.path}`;
      const made = await admin("CreateApiKey", { project: "revoked" });
      const p = probe(route, f, { authorization: `Bearer ${made["key"]}` });
      if (route.surface === "durable") p.path = p.path.replace("live=long-poll", "live=sse");
      if (route.errors === "rpc") {
        const sample = LIVE_RPC_SAMPLES[route.path];
        expect(sample, `${label}: add a sample request to LIVE_RPC_SAMPLES`).toBeDefined();
        const json = Buffer.from(JSON.stringify(sample!(f)));
        const env = Buffer.alloc(5 + json.length);
        env.writeUInt32BE(json.length, 1);
        json.copy(env, 5);
        p.body = env;
      }
      const before = await metricValue(on, "live_readers");
      const answer = fetch(on.url + p.path, { method: p.method, headers: p.headers, ...(p.body !== undefined ? { body: p.body } : {}), signal: AbortSignal.timeout(20_000) });
      // Revoked once the reader holds its slot and its key (an RPC stream sends headers only with its first message).
      while ((await metricValue(on, "live_readers")) <= before) await new Promise((r) => setTimeout(r, 20));
      await admin("RevokeApiKey", { id: made["id"] });
      const res = await answer.catch((err: unknown) => {
        throw new Error(`${label}: no answer (${String(err)})`);
      });
      expect(res.status, label).toBe(200);
      // Ends by itself (the timeout would abort the read and fail the row).
      const text = await res.text().catch((err: unknown) => {
        throw new Error(`${label}: did not end after the revocation (${String(err)})`);
      });
      if (route.errors === "rpc") expect(text, label).toMatch(/"code":"unauthenticated"/);
      else expect(text, label).toMatch(/event: error/);
      applied.key_revoked_mid_stream++;
    }
    await healthy(on);
  });

  it("/metrics labels come only from route templates (and one label for unmatched requests)", async () => {
    const text = await (await fetch(`${on.url}/metrics`)).text();
    const known = new Set([...on.routes.map((r) => r.policy.metric), "unmatched"]);
    const labels = [...text.matchAll(/^http_requests_total\{route="([^"]*)",status="([^"]*)"\}/gm)].map((m) => m[1]!);
    expect(labels.length).toBeGreaterThan(0);
    for (const l of labels) expect(known.has(l.slice(l.indexOf(" ") + 1)), l).toBe(true);
    applied.metrics_label = on.routes.length;
  });
});

describe("protection × surface matrix: store outage (mongo store; the memory store has no outage)", () => {
  let mongo: TestMongo;
  let proxy: TcpProxy;
  let app: App;
  beforeAll(async () => {
    mongo = await startTestMongo();
    proxy = TcpProxy.toMongo(mongo.uri);
    await proxy.start();
    const store = new MongoStore({ uri: proxy.mongoUri, dbName: `matrix_outage_${Date.now()}`, serverSelectionTimeoutMs: 1000, operationTimeoutMs: 2000, watch: "poll", pollIntervalMs: 50 });
    app = await startTestServer({ store });
  }, 120_000);
  afterAll(async () => {
    await app?.close();
    await proxy?.stop();
    await mongo?.stop();
  });

  it("while the database is away, no route answers 500 or hangs; those that reach the store answer unavailable", async () => {
    await proxy.cut();
    // Live readers stay connected through an outage and resume (test/outage.test.ts): not probed here.
    const routes = app.routes.filter((r) => r.policy.stream !== "live");
    const answers = await Promise.all(
      routes.map(async (route) => {
        const p = probe(route, { task_id: "m1", name: "matrix-s" }, { "x-project-id": "acme" });
        const body = p.body ?? (route.method === "POST" || route.method === "PUT" ? "{}" : undefined);
        const headers = route.errors === "rpc" ? p.headers : { ...p.headers, ...(body !== undefined ? { "content-type": "application/json" } : {}) };
        const res = await fetch(app.url + p.path, { method: p.method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(30_000) });
        const text = await res.text();
        return { route, status: res.status, text };
      }),
    );
    let unavailable = 0;
    for (const a of answers) {
      const label = `store outage: ${a.route.method} ${a.route.path}: ${a.status} ${a.text.slice(0, 200)}`;
      expect(a.status, label).not.toBe(500);
      expect(a.text, label).not.toMatch(/"code":"internal"|internal error/);
      if (a.status === 503 || /"code":"unavailable"/.test(a.text)) unavailable++;
    }
    // Most routes reach the store even with these minimal requests.
    expect(unavailable).toBeGreaterThan(10);
    await healthy(app);
    console.log(`[matrix mongo outage] ${routes.length} routes probed during the outage: ${unavailable} answered unavailable, the rest refused the request before the store (4xx), none 500`);
    await proxy.restore();
  });
});

describe.each(storeFactories)("protection × surface matrix: the instance's budget of bytes in flight ($name store)", (factory) => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ store: await factory.make(), env: { MAX_INFLIGHT_BYTES: String(BUDGET.limit), REQUEST_TIMEOUT_MS: "60000" } });
  }, 120_000);
  afterAll(async () => {
    await app?.close();
    await factory.teardown();
  });

  it("with the budget taken, every route with a request body answers capacity in its dialect, and takes bodies again once it is given back", async () => {
    // A slow upload holds most of the budget: its bytes are read and it never finishes.
    const hog = net.connect(app.port, "127.0.0.1");
    hog.on("error", () => {});
    await new Promise<void>((r) => hog.on("connect", () => r()));
    hog.write(`POST /api/v1/events/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Project-ID: acme\r\nContent-Length: ${BUDGET.hog + 1000}\r\n\r\n{"topic":"t","events":[{"data":"${"x".repeat(BUDGET.hog)}`);
    let refused = 0;
    try {
      // Held once the server has read the hog's bytes (the gauge counts them). A request sent before
      // that could take its share first and have the hog refused, so nothing else is sent until then.
      let held = 0;
      await eventually(async () => (held = await metricValue(app, "inflight_bytes")) >= BUDGET.hog, 30_000, () => `the hog's ${BUDGET.hog} bytes held (inflight_bytes ${held})`);
      const canary = await fetch(`${app.url}/api/v1/events/publish`, { method: "POST", headers: { "x-project-id": "acme", "content-type": "application/json" }, body: JSON.stringify({ topic: "canary", events: [{ data: "c".repeat(BUDGET.probe) }] }) });
      expect(canary.status, await canary.text()).toBe(503);
      for (const route of app.routes) {
        if (applies(route, "budget_exhausted") !== true) continue;
        const p = probe(route, { task_id: "m1", name: "matrix-s" }, { "x-project-id": "acme" });
        // A body past what is left of the budget (JSON-shaped where the route reads JSON; bytes for Durable Streams).
        const filler = "y".repeat(Math.min(BUDGET.probe, (route.policy.body as number) - 1_000));
        const json = JSON.stringify({ filler });
        // Server-streaming RPCs take one enveloped message (Connect streaming: flags, length, JSON).
        const envelope = (): Buffer => Buffer.concat([Buffer.from([0, ...[24, 16, 8, 0].map((b) => (Buffer.byteLength(json) >>> b) & 0xff)]), Buffer.from(json)]);
        const body = route.errors === "text" ? filler : route.errors === "rpc" && route.policy.stream !== "unary" ? envelope() : json;
        const headers = route.errors === "text" ? { ...p.headers, "content-type": "text/plain" } : route.errors === "rpc" ? p.headers : { ...p.headers, "content-type": "application/json" };
        await expectRefused(app, route, { ...p, headers, body: body! }, "capacity", "budget exhausted");
        refused++;
      }
      await healthy(app);
    } finally {
      hog.destroy();
    }
    expect(refused).toBeGreaterThan(20);
    // Given back: the same large body is taken again (a publish on the first JSON path).
    const publish = () => fetch(`${app.url}/api/v1/events/publish`, { method: "POST", headers: { "x-project-id": "acme", "content-type": "application/json" }, body: JSON.stringify({ topic: "budget", events: [{ data: "z".repeat(BUDGET.probe) }] }) }).then((r) => r.status);
    await eventually(async () => (await publish()) === 200, 30_000, "the budget given back (a large publish taken)");
    console.log(`[matrix ${factory.name} budget] ${refused} routes with a body answered capacity while MAX_INFLIGHT_BYTES=${BUDGET.limit} was taken`);
  });
});
