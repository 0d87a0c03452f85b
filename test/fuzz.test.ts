/**
 * Generated hostile input (fast-check) at every documented JSON route (read from the served
 * OpenAPI document) and every RPC, on both stores. Each case must be answered within a bound, never
 * with a 5xx (RPCs: never `internal` / `unknown`), with an error in the route's dialect (FastAPI
 * `detail` on Kubiya and TerminalUse paths, `{"error"}` elsewhere), storing nothing when refused,
 * and the server must still answer /healthz afterwards. Valid input that happens to be generated
 * succeeds, and event data published through every surface reads back exactly as sent.
 *
 * Fixed seed (FUZZ_SEED, default 20261130); FUZZ_RUNS scales the number of cases (default: a CI
 * run of a few minutes). A failure prints fast-check's shrunk counterexample and its seed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import type { DescService } from "@bufbuild/protobuf";
import { StreamService, EventView, StreamKind } from "../gen/events/v1/events_pb.js";
import { SERVICES } from "../src/server/rpc.js";
import type { App } from "../src/server/app.js";
import { client, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const SEED = Number(process.env["FUZZ_SEED"] ?? 20261130);
/** Cases per route (and per RPC, and per round-trip surface). */
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 25);
/** Every answer (headers, for streams) must come within this. */
const ANSWER_MS = 10_000;

// ---------------------------------------------------------------- generators

const edgeNumber = fc.constantFrom(0, -0, 1, -1, 0.5, 1e308, -1e308, 5e-324, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 1e21, 123456789.125);
const nastyString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: "grapheme", maxLength: 10 }),
  fc.constantFrom("", "__proto__", "constructor", "$set", "$where", "a.b", "\u0000", "\ud800", "\udfff", "x\ud83d", "😀", "é", "\u2028", "%ZZ", "../..", "<script>", "null", "1e400"),
);
const nastyKey = fc.oneof({ weight: 3, arbitrary: fc.string({ maxLength: 8 }) }, fc.constantFrom("__proto__", "constructor", "prototype", "$set", "$gt", "a.b", "", "\u0000", "\ud800", "toString", "type", "data"));

/** Any JSON value, `__proto__` and `$` keys, unicode (lone surrogates included) and edge numbers. */
const anyJson: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    edgeNumber,
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    nastyString,
    fc.array(tie("v"), { maxLength: 5 }),
    fc.array(fc.tuple(nastyKey, tie("v")), { maxLength: 5 }).map((entries) => {
      const o: Record<string, unknown> = {};
      for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
      return o;
    }),
  ),
})).v;

/** JSON objects only (data of the surfaces whose data is an object). */
const anyObject = fc.array(fc.tuple(nastyKey, anyJson), { maxLength: 6 }).map((entries) => {
  const o: Record<string, unknown> = {};
  for (const [k, v] of entries) Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  return o;
});

/** Text that is not (quite) JSON, or JSON that is deep, wide or huge. */
const rawBody = fc.oneof(
  fc.constantFrom("", "{", "}", "[", "null", "\ufeff{}", '{"a":1}garbage', "1e400", '{"x":1e400}', "NaN", '"\\ud800"', "[".repeat(6000) + "]".repeat(6000), '{"a":'.repeat(3000) + "1" + "}".repeat(3000), "{}".repeat(10)),
  fc.string({ maxLength: 40 }),
  fc.integer({ min: 1, max: 60_000 }).map((n) => `[${"0,".repeat(n)}0]`),
  fc.integer({ min: 1, max: 300_000 }).map((n) => JSON.stringify({ s: "x".repeat(n) })),
);

/** A path parameter: valid names, any text, percent-escapes valid and not, raw bytes. */
const pathParam = fc.oneof(
  { weight: 3, arbitrary: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,15}$/) },
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  fc.constantFrom("%ZZ", "%", "%%", "%E0%A4%A", "%ED%A0%80", "%00", "%2F", "..", ".", "%2e%2e", "a%20b", "x".repeat(300), "%C0%AF", "%FF%FE"),
  fc.uint8Array({ minLength: 1, maxLength: 12 }).map((b) => [...b].map((x) => `%${x.toString(16).padStart(2, "0")}`).join("")),
);

const queryString = fc.array(fc.tuple(fc.oneof(fc.constantFrom("limit", "topic", "last_sequence_id", "last_timestamp", "sort", "task_id", "offset", "time_window", "last_event_id", "agent_id", "project_id", "last_processed_event_id", "queryable_path"), fc.string({ maxLength: 6 })), fc.oneof(fc.string({ maxLength: 12 }), edgeNumber.map(String), fc.constantFrom("-1", "0", "1001", "abc", "9".repeat(30), "%ZZ", "2026-01-01T00:00:00Z", "asc", "desc"))), { maxLength: 4 });

const extraHeaders = fc.array(
  fc.oneof(
    fc.constantFrom<[string, string]>(["content-type", "text/plain"], ["content-type", "application/json; charset=latin1"], ["content-type", "application/x-www-form-urlencoded"], ["last-event-id", "abc"], ["last-event-id", "99999999999999999999"], ["x-request-id", "x".repeat(500)], ["accept", "text/event-stream"], ["content-encoding", "gzip"]),
    fc.tuple(fc.stringMatching(/^x-[a-z]{1,10}$/), fc.string({ maxLength: 20 }).map((s) => s.replace(/[^\x20-\x7e]/g, ""))),
  ),
  { maxLength: 3 },
);

// ---------------------------------------------------------------- the OpenAPI routes

interface DocRoute {
  method: string;
  path: string;
  body?: Record<string, unknown>;
  sse: boolean;
}

function routesOf(doc: { paths: Record<string, Record<string, any>>; components?: { schemas?: Record<string, any> } }): DocRoute[] {
  const out: DocRoute[] = [];
  const resolve = (s: any): any => (s?.$ref ? doc.components?.schemas?.[String(s.$ref).split("/").pop()!] : s);
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (!["get", "post", "put", "delete"].includes(method)) continue;
      const body = resolve(op.requestBody?.content?.["application/json"]?.schema);
      const sse = Object.values(op.responses ?? {}).some((r: any) => r?.content?.["text/event-stream"]);
      out.push({ method: method.toUpperCase(), path, ...(body ? { body } : {}), sse });
    }
  }
  return out;
}

/** A body shaped like the route's schema: known fields with values of the right type or not. */
function shapedBody(schema: Record<string, any> | undefined): fc.Arbitrary<unknown> {
  const props = Object.entries((schema?.["properties"] as Record<string, any>) ?? {});
  if (props.length === 0) return anyJson;
  const valueFor = (s: any): fc.Arbitrary<unknown> => {
    switch (s?.type) {
      case "string":
        return fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/) }, nastyString, anyJson);
      case "integer":
        return fc.oneof(fc.integer({ min: 0, max: 5 }), edgeNumber, anyJson);
      case "boolean":
        return fc.oneof(fc.boolean(), anyJson);
      case "object":
        return fc.oneof({ weight: 3, arbitrary: anyObject }, anyJson);
      case "array":
        return fc.oneof(fc.array(fc.oneof(anyObject.map((d) => ({ data: d, event_type: "t" })), anyJson), { minLength: 1, maxLength: 3 }), anyJson);
      default:
        return anyJson;
    }
  };
  return fc.record(Object.fromEntries(props.map(([k, s]) => [k, valueFor(s)])), { requiredKeys: [] });
}

/** Which error shape a path answers with. */
function dialectOf(path: string): "fastapi" | "error" | undefined {
  if (path.startsWith("/api/v1/executions") || path.startsWith("/tasks") || path.startsWith("/events")) return "fastapi";
  if (path.startsWith("/api/v1/events") || path.startsWith("/topics") || path.startsWith("/waitgroups")) return "error";
  return undefined; // other surfaces (Durable Streams) have their own protocol and conformance suite
}

async function timed(url: string, init: RequestInit, sse: boolean): Promise<{ status: number; text: string; ms: number }> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ANSWER_MS);
  const t = performance.now();
  try {
    const res = await fetch(url, { ...init, signal: abort.signal });
    // An event stream that opened is left at its headers.
    const isStream = (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
    const text = isStream || sse ? (res.status < 300 ? "" : await res.text()) : await res.text();
    if (isStream) abort.abort();
    return { status: res.status, text, ms: performance.now() - t };
  } finally {
    clearTimeout(timer);
  }
}

async function projectHasEvents(app: App, project: string): Promise<boolean> {
  const streams = await client(StreamService, app, "grpc").listStreams({}, { headers: { "x-project-id": project } });
  return streams.streams.some((s) => s.eventCount > 0n);
}

/** The events of a stream as JSON text, exactly as stored (Subscribe's compact view). */
async function readBack(app: App, project: string, kind: StreamKind, key: string, count: number): Promise<string[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ANSWER_MS);
  const out: string[] = [];
  try {
    for await (const r of client(StreamService, app, "grpc").subscribe({ stream: { kind, key }, view: EventView.COMPACT }, { headers: { "x-project-id": project }, signal: abort.signal })) {
      for (const e of r.compactEvents) out.push(e.dataJson);
      if (out.length >= count) break;
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return out;
}

let caseNo = 0;

for (const factory of storeFactories) {
  describe(`generated hostile input (${factory.name} store, seed ${SEED}, ${RUNS} runs per target)`, () => {
    let app: App;
    let routes: DocRoute[];
    const counts = new Map<string, number>();
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make() });
      const doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as Parameters<typeof routesOf>[0];
      routes = routesOf(doc);
    });
    afterAll(async () => {
      console.log(`fuzz ${factory.name} (seed ${SEED}): ${[...counts].map(([k, n]) => `${k}: ${n}`).join("; ")}`);
      await app?.close();
      await factory.teardown();
    });

    it("every documented route: bounded answers in the route's dialect, never 5xx, nothing stored when refused", async () => {
      expect(routes.length).toBeGreaterThan(10);
      for (const route of routes) {
        const dialect = dialectOf(route.path);
        if (!dialect) continue;
        const names = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
        const body = route.method === "GET" || route.method === "DELETE" ? fc.constant(undefined) : fc.oneof({ weight: 3, arbitrary: shapedBody(route.body).map((b) => JSON.stringify(b)) }, anyJson.map((b) => JSON.stringify(b)), rawBody);
        await fc.assert(
          fc.asyncProperty(fc.array(pathParam, { minLength: names.length, maxLength: names.length }), queryString, extraHeaders, body, async (params, query, headers, text) => {
            const project = `fz${++caseNo}`;
            let path = route.path;
            names.forEach((n, i) => (path = path.replace(`{${n}}`, params[i]!)));
            const qs = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
            const url = `${app.url}${path}${qs ? `?${qs}` : ""}`;
            const init: RequestInit = { method: route.method, headers: { "content-type": "application/json", "x-project-id": project, ...Object.fromEntries(headers) } };
            if (text !== undefined) init.body = text;
            const r = await timed(url, init, route.sse);
            counts.set(`${route.method} ${route.path}`, (counts.get(`${route.method} ${route.path}`) ?? 0) + 1);
            expect(r.ms, "answered within the bound").toBeLessThan(ANSWER_MS);
            expect(r.status, `no 5xx: ${r.text.slice(0, 300)}`).toBeLessThan(500);
            if (r.status >= 400) {
              // The dialect of the path as sent: a client resolves dot segments ("%2e%2e" too), so
              // a request may land on another route, or on none (the service's 404 `error`).
              const sent = new URL(url).pathname;
              const routed = routes.some((x) => new RegExp(`^${x.path.replace(/\{\w+\}/g, "[^/]+")}/?$`).test(sent));
              const shape = routed ? dialectOf(sent) : undefined;
              const parsed = JSON.parse(r.text) as Record<string, unknown>;
              if (shape === "fastapi" && r.status !== 405) expect(parsed, r.text.slice(0, 200)).toHaveProperty("detail");
              else if (shape === "error") expect(parsed, r.text.slice(0, 200)).toHaveProperty("error");
              // Unrouted: the service's 404, `{"error"}` (or Connect's `{"code"}` for an RPC-like path).
              else if (!routed) expect("error" in parsed || "code" in parsed, r.text.slice(0, 200)).toBe(true);
              if (route.method !== "GET") expect(await projectHasEvents(app, project), "a refused request stores nothing").toBe(false);
            }
            expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
          }),
          { seed: SEED, numRuns: RUNS, endOnFailure: true },
        );
      }
    }, 900_000);

    it("every RPC: random bytes and random JSON get a Connect error code, never internal, and the server keeps serving", async () => {
      const methods = SERVICES.flatMap((s: DescService) => s.methods.map((m) => ({ path: `/${s.typeName}/${m.name}`, kind: m.methodKind })));
      expect(methods.length).toBeGreaterThan(20);
      for (const m of methods) {
        if (m.kind === "bidi_streaming" || m.kind === "client_streaming") continue; // need HTTP/2 streams; PublishStream is fuzzed below
        const streaming = m.kind === "server_streaming";
        const payload = fc.oneof(
          fc.uint8Array({ maxLength: 200 }).map((b) => ({ type: "proto", body: b })),
          anyJson.map((j) => ({ type: "json", body: new TextEncoder().encode(JSON.stringify(j)) })),
          shapedBody({ properties: { stream: { type: "object" }, topic: { type: "string" }, task_id: { type: "string" }, execution_id: { type: "string" }, events: { type: "array" }, limit: { type: "integer" } } }).map((j) => ({ type: "json", body: new TextEncoder().encode(JSON.stringify(j)) })),
        );
        await fc.assert(
          fc.asyncProperty(payload, async (p) => {
            counts.set(m.path, (counts.get(m.path) ?? 0) + 1);
            const project = `fz${++caseNo}`;
            let body = p.body;
            let contentType = `application/${p.type}`;
            if (streaming) {
              // Connect streaming: one enveloped message (flags 0, big-endian length).
              const env = new Uint8Array(5 + body.length);
              new DataView(env.buffer).setUint32(1, body.length);
              env.set(body, 5);
              body = env;
              contentType = `application/connect+${p.type}`;
            }
            const abort = new AbortController();
            const timer = setTimeout(() => abort.abort(), 3000);
            let status = 0;
            let text = "";
            try {
              const res = await fetch(app.url + m.path, { method: "POST", headers: { "content-type": contentType, "x-project-id": project, "connect-protocol-version": "1" }, body, signal: abort.signal });
              status = res.status;
              text = Buffer.from(await res.arrayBuffer()).toString("latin1");
            } catch (err) {
              // A stream that stays open (a valid subscription) is cut by the timer: fine.
              if (!abort.signal.aborted) throw err;
            } finally {
              clearTimeout(timer);
            }
            // Undecodable protobuf included: the listener's RPC adapter answers it invalid_argument.
            if (status !== 0) {
              expect(status, text.slice(0, 200)).toBeLessThan(500);
              expect(text, "no internal/unknown error code").not.toMatch(/"code":"(internal|unknown)"/);
            }
            expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
          }),
          { seed: SEED, numRuns: RUNS, endOnFailure: true },
        );
      }
    }, 900_000);

    it("valid data published through every surface reads back exactly as sent", async () => {
      const rpc = client(StreamService, app, "grpc");
      const post = (project: string, path: string, body: unknown) => fetch(app.url + path, { method: "POST", headers: { "content-type": "application/json", "x-project-id": project }, body: JSON.stringify(body) });
      // Storable JSON: no lone surrogates, depth within the limit (anyJson's depth is small).
      // (JSON.stringify escapes exactly the lone surrogates.)
      const storable = (v: unknown) => !/\\ud[89a-f][0-9a-f]{2}/i.test(JSON.stringify(v));
      await fc.assert(
        fc.asyncProperty(anyJson.filter(storable), anyObject.filter(storable), async (data, obj) => {
          const project = `rt${++caseNo}`;
          counts.set("round trip", (counts.get("round trip") ?? 0) + 1);
          const exact = [JSON.stringify(data), JSON.stringify(obj)];
          expect((await post(project, "/api/v1/events/publish", { topic: "t", events: [{ data }, { data: obj }] })).status).toBe(200);
          expect((await post(project, "/topics/t/events", { data: obj })).status).toBe(201);
          expect(await readBack(app, project, StreamKind.TOPIC, "t", 3)).toEqual([...exact, exact[1]]);
          const polos = (await (await fetch(`${app.url}/api/v1/events?topic=t&project_id=${project}`)).json()) as { events: { data: unknown }[] };
          expect(polos.events.map((e) => JSON.stringify(e.data))).toEqual([...exact, exact[1]]);
          expect((await post(project, "/api/v1/executions/x/events", { event_type: "t", data: obj })).status).toBe(202);
          expect(await readBack(app, project, StreamKind.EXECUTION, "x", 1)).toEqual([exact[1]]);
          const task = (await (await post(project, "/tasks", { agent_name: "a/b" })).json()) as { id: string };
          const sent = await post(project, `/tasks/${task.id}/events`, { content: { type: "data", data: obj } });
          expect(sent.status).toBe(201);
          expect(JSON.stringify(((await sent.json()) as { content: { data: unknown } }).content.data)).toBe(exact[1]);
          // RPC publish (Connect JSON decoding in protobuf-es drops "__proto__" keys: binary here).
          const viaRpc = await rpc.publish({ stream: { kind: StreamKind.TOPIC, key: "r" }, events: [{ eventType: "t", data: { kind: { case: "stringValue", value: JSON.stringify(data) } } }] }, { headers: { "x-project-id": project } });
          expect(viaRpc.sequences).toEqual([1n]);
          expect(await readBack(app, project, StreamKind.TOPIC, "r", 1)).toEqual([JSON.stringify(JSON.stringify(data))]);
        }),
        { seed: SEED, numRuns: RUNS * 2, endOnFailure: true },
      );
    }, 900_000);
  });
}
