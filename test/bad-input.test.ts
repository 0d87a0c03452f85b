/**
 * Bad input at every documented path and RPC: each gets a clear error in its dialect, the server
 * keeps serving, and nothing is stored.
 */
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { SailhouseClient } from "@sailhouse/client";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, getJson, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

type Shape = "error" | "fastapi" | "connect";
interface Case {
  name: string;
  method?: string;
  path: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  status: number;
  shape: Shape;
}

const P = { "X-Project-ID": "acme", "content-type": "application/json" };
const J = (v: unknown) => JSON.stringify(v);
const deep = (n: number) => "[".repeat(n) + "]".repeat(n);
const polos = (body: string | Buffer, status = 400, name = ""): Case => ({ name: `polos publish ${name || String(body).slice(0, 40)}`, path: "/api/v1/events/publish", body, headers: P, status, shape: "error" });
const kubiya = (body: string | Buffer, status = 422, path = "/api/v1/executions/bad-exec/events", name = ""): Case => ({ name: `kubiya ${name || String(body).slice(0, 40)}`, path, body, headers: { "content-type": "application/json" }, status, shape: "fastapi" });
const sail = (body: string | Buffer, status = 400, path = "/topics/bad-sh/events", name = ""): Case => ({ name: `sailhouse ${name || String(body).slice(0, 40)}`, path, body, headers: { "content-type": "application/json" }, status, shape: "error" });
const get = (path: string, status: number, shape: Shape, headers: Record<string, string> = {}): Case => ({ name: `GET ${path}`, method: "GET", path, headers, status, shape });
const connect = (path: string, body: string | Buffer, contentType: string, status: number): Case => ({ name: `connect ${path} ${contentType}`, path, body, headers: { "content-type": contentType, "x-project-id": "acme" }, status, shape: "connect" });

const CASES: Case[] = [
  polos("{", 400, "truncated JSON"),
  polos("", 400, "empty body"),
  polos(J([1, 2])),
  polos(J("just a string")),
  polos("null"),
  polos(J({ topic: 5, events: [{ data: 1 }] })),
  polos(J({ topic: "", events: [{ data: 1 }] })),
  polos(J({ topic: "has space", events: [{ data: 1 }] })),
  polos(J({ topic: "x".repeat(300), events: [{ data: 1 }] }), 400, "topic of 300 characters"),
  polos(J({ topic: "line\nbreak", events: [{ data: 1 }] })),
  polos(J({ topic: "bad-target" })),
  polos(J({ topic: "bad-target", events: [] })),
  polos(J({ topic: "bad-target", events: { data: 1 } })),
  polos(J({ topic: "bad-target", events: [5] })),
  polos(J({ topic: "bad-target", events: [{ event_type: "no data" }] })),
  polos(J({ topic: "bad-target", events: [{ data: 1, event_type: 7 }] })),
  polos(J({ topic: "bad-target", events: [{ data: 1, attempt_number: "3" }] })),
  polos(J({ topic: "bad-target", events: [{ data: 1, attempt_number: 1.5 }] })),
  polos(J({ topic: "bad-target", events: [{ data: 1, attempt_number: 1e20 }] })),
  polos(J({ topic: "bad-target", events: [{ data: 1 }], execution_id: 12 })),
  polos(J({ topic: "bad-target", events: Array.from({ length: 1001 }, () => ({ data: 1 })) }), 413, "1001 events"),
  polos(J({ topic: "bad-target", events: [{ data: "x".repeat(1_100_000) }] }), 413, "body over 1 MiB"),
  polos(`{"topic":"bad-target","events":[{"data":${deep(200)}}]}`, 400, "data nested 200 deep"),
  polos(`{"topic":"bad-target","events":[{"data":${deep(100_000)}}]}`, 400, "data nested 100000 deep"),
  polos(Buffer.concat([Buffer.from('{"topic":"bad-target","events":[{"data":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}]}')]), 400, "invalid UTF-8"),
  polos("topic=bad-target&events=1", 400, "form-encoded body"),
  polos('{"topic":"bad-target","events":[{"data":1e400}]}', 400, "a number beyond float64"),
  polos(J({ unknown: true, other: [1] }), 400, "only unknown fields"),
  get("/api/v1/events?topic=bad-target&limit=abc&project_id=acme", 400, "error"),
  get("/api/v1/events?topic=bad-target&limit=5000&project_id=acme", 400, "error"),
  get("/api/v1/events?topic=bad-target&last_sequence_id=-1&project_id=acme", 400, "error"),
  get("/api/v1/events?topic=bad-target&last_sequence_id=99999999999999999999&project_id=acme", 400, "error"),
  get("/api/v1/events?topic=bad-target&last_timestamp=yesterday&project_id=acme", 400, "error"),
  get("/api/v1/events?topic=bad-target&sort=sideways&project_id=acme", 400, "error"),
  get("/api/v1/events?project_id=acme", 400, "error"),
  get("/api/v1/events/stream?topic=bad%20target&project_id=acme", 400, "error"),
  kubiya("{nope", 422, undefined, "malformed JSON"),
  kubiya(J({ data: {} })),
  kubiya(J({ event_type: "x", data: [1] })),
  kubiya(J({ event_type: "x", data: "s" })),
  kubiya(J({ event_type: { a: 1 }, data: {} })),
  kubiya(J({ event_type: "x", data: {}, timestamp: 5 })),
  kubiya(J([{ event_type: "x", data: {} }])),
  kubiya(J({ event_type: "x", data: {} }), 422, "/api/v1/executions/bad%20exec/events", "execution id with a space"),
  kubiya(`{"event_type":"x","data":{"a":${deep(100)}}}`, 422, undefined, "data nested 100 deep"),
  kubiya(Buffer.from([0x7b, 0xff, 0x7d]), 422, undefined, "invalid UTF-8"),
  kubiya("", 422, undefined, "empty body"),
  get("/api/v1/executions/bad-exec/stream?last_event_id=abc", 422, "fastapi"),
  get("/api/v1/executions/bad-exec/stream", 400, "fastapi", { "Last-Event-ID": "not-a-number" }),
  sail(J({})),
  sail(J({ data: [1] })),
  sail(J({ data: "s" })),
  sail(J({ data: {}, send_at: "next tuesday" })),
  sail(J({ data: {}, metadata: "m" })),
  sail(J({ data: {}, wait_group_instance_id: 42 })),
  sail(J({ data: {} }), 400, "/topics/bad%20sh/events", "topic slug with a space"),
  sail(J({ data: { big: "x".repeat(4 * 1024 * 1024) } }), 413, undefined, "event over 4 MB"),
  sail("{", 400, undefined, "truncated JSON"),
  { name: "sailhouse subscription type", method: "PUT", path: "/topics/bad-sh/subscriptions/x", body: J({ type: "fax" }), status: 400, shape: "error" },
  { name: "sailhouse push without endpoint", method: "PUT", path: "/topics/bad-sh/subscriptions/x", body: J({ type: "push" }), status: 400, shape: "error" },
  { name: "sailhouse filter condition", method: "PUT", path: "/topics/bad-sh/subscriptions/x", body: J({ type: "pull", filter: { filters: [{ path: "a", condition: "smells_like" }] } }), status: 400, shape: "error" },
  { name: "sailhouse rate_limit", method: "PUT", path: "/topics/bad-sh/subscriptions/x", body: J({ type: "push", endpoint: "http://127.0.0.1:1/x", rate_limit: "fast" }), status: 400, shape: "error" },
  sail(J({ topic: "t", ttl: "forever" }), 400, "/waitgroups/instances", "wait group ttl"),
  sail(J({ ttl: "1m" }), 400, "/waitgroups/instances", "wait group without topic"),
  connect("/events.v1.StreamService/Publish", J({ stream: { kind: "STREAM_KIND_TOPIC", key: "bad-target" }, events: [] }), "application/json", 400),
  connect("/events.v1.StreamService/Publish", "{nope", "application/json", 400),
  // An undecodable message is the caller's error: `invalid_argument` (connect-node says `internal`; src/server/rpc-adapter.ts corrects it).
  connect("/events.v1.StreamService/Publish", Buffer.from([0xff, 0xff, 0xff, 0x01, 0x02]), "application/proto", 400),
  connect("/events.v1.StreamService/Publish", J({ stream: { kind: "STREAM_KIND_TOPIC", key: "bad target" }, events: [{}] }), "application/json", 400),
  connect("/events.v1.StreamService/Publish", J({ stream: { kind: "NOPE", key: "bad-target" }, events: [{}] }), "application/json", 400),
  connect("/events.v1.StreamService/ListEvents", J({ stream: { kind: "STREAM_KIND_TOPIC", key: "bad-target" }, afterSequence: "-5" }), "application/json", 400),
  connect("/events.v1.StreamService/Publish", J({ stream: { kind: "STREAM_KIND_TOPIC", key: "bad-target" }, events: [{}] }), "text/html", 415),
  connect("/events.v1.StreamService/NoSuchMethod", "{}", "application/json", 404),
  connect("/polos.v1.EventsService/PublishEvents", J({ topic: "bad-target", events: [{ data: 1, attemptNumber: "x" }] }), "application/json", 400),
];

function checkShape(c: Case, status: number, text: string): void {
  expect(status, c.name).toBe(c.status);
  // Connect answers an unsupported content type with a bare 415, as its protocol specifies.
  if (status === 415) return;
  expect(text, c.name).not.toBe("");
  const body = JSON.parse(text);
  if (c.shape === "error") {
    expect(typeof body.error, c.name).toBe("string");
    expect(body.error.length, c.name).toBeGreaterThan(0);
  } else if (c.shape === "fastapi") {
    if (Array.isArray(body.detail)) {
      expect(body.detail.length, c.name).toBeGreaterThan(0);
      for (const d of body.detail) {
        expect(Array.isArray(d.loc), c.name).toBe(true);
        expect(typeof d.msg, c.name).toBe("string");
        expect(typeof d.type, c.name).toBe("string");
      }
    } else expect(typeof body.detail, c.name).toBe("string");
  } else {
    expect(typeof body.code, c.name).toBe("string");
  }
}

for (const factory of storeFactories) {
  describe(`bad input on the ${factory.name} store`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { REQUEST_TIMEOUT_MS: "1000" } });
      await new SailhouseClient("k", { api_url: app.url }).pull("bad-sh", "watch");
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it(`answers ${CASES.length} kinds of bad HTTP input in the caller's dialect`, async () => {
      expect(CASES.length).toBeGreaterThanOrEqual(50);
      for (const c of CASES) {
        const res = await fetch(app.url + c.path, { method: c.method ?? (c.body === undefined ? "GET" : "POST"), headers: c.headers ?? {}, ...(c.body !== undefined ? { body: c.body } : {}) });
        checkShape(c, res.status, await res.text());
      }
    });

    it("answers garbage gRPC frames with an error status and keeps serving", async () => {
      const session = http2.connect(app.url);
      try {
        const call = (body: Buffer, path = "/events.v1.StreamService/Publish") =>
          new Promise<{ status: string | undefined; message: string | undefined }>((resolve, reject) => {
            const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", "x-project-id": "acme" });
            let headers: http2.IncomingHttpHeaders = {};
            let trailers: http2.IncomingHttpHeaders = {};
            req.on("response", (h) => (headers = h));
            req.on("trailers", (t) => (trailers = t));
            // A trailers-only response carries the status in its headers.
            req.on("close", () => resolve({ status: (trailers["grpc-status"] ?? headers["grpc-status"]) as string | undefined, message: (trailers["grpc-message"] ?? headers["grpc-message"]) as string | undefined }));
            req.on("error", reject);
            req.resume();
            req.end(body);
          });
        const frame = (payload: Buffer, declared = payload.length, flags = 0) => Buffer.concat([Buffer.from([flags, (declared >>> 24) & 255, (declared >>> 16) & 255, (declared >>> 8) & 255, declared & 255]), payload]);
        const results = [
          await call(frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]))), // invalid protobuf
          await call(Buffer.from([1, 2, 3])), // truncated frame header
          await call(frame(Buffer.from("hello"), 100)), // frame shorter than declared
          await call(frame(Buffer.alloc(0), 64 * 1024 * 1024)), // declares 64 MiB
          await call(frame(Buffer.from([0x0a, 0x02, 0x08, 0x01]), undefined, 1)), // "compressed" without an encoding
          await call(frame(Buffer.alloc(0)), "/events.v1.StreamService/Nope"),
        ];
        for (const r of results) {
          expect(r.status).toBeDefined();
          expect(r.status).not.toBe("0");
        }
        expect(results[0]!.status).toBe(String(Code.InvalidArgument));
        expect(results[5]!.status).toBe(String(Code.Unimplemented));
      } finally {
        session.close();
      }
    });

    it("cuts off a slow (slowloris) request while serving others", async () => {
      const { port } = new URL(app.url);
      const sock = net.connect(Number(port), "127.0.0.1");
      await new Promise<void>((r) => sock.once("connect", () => r()));
      sock.write("POST /api/v1/events/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Project-ID: acme\r\nContent-Length: 100\r\n\r\n{\"topic\":");
      const closed = new Promise<string>((resolve) => {
        let got = "";
        sock.on("data", (d) => (got += d.toString()));
        sock.on("close", () => resolve(got));
      });
      const t0 = Date.now();
      // Meanwhile the server answers everyone else.
      expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
      const answer = await closed;
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(answer === "" || /^HTTP\/1\.1 408/.test(answer)).toBe(true);
    });

    it("still serves, and stored nothing of it", async () => {
      expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
      expect((await getJson(app, "/api/v1/events?topic=bad-target&project_id=acme")).json.events).toEqual([]);
      const rpc = client(StreamService, app, "grpc");
      expect((await rpc.listEvents({ stream: { kind: StreamKind.EXECUTION, key: "bad-exec" } })).events).toEqual([]);
      expect((await rpc.listEvents({ stream: { kind: StreamKind.TOPIC, key: "bad-target" } }, { headers: { "x-project-id": "acme" } })).events).toEqual([]);
      expect(await new SailhouseClient("k", { api_url: app.url }).pull("bad-sh", "watch")).toBeNull();
      const ok = await fetch(`${app.url}/api/v1/events/publish`, { method: "POST", headers: P, body: J({ topic: "bad-target", events: [{ data: "fine" }] }) });
      expect(((await ok.json()) as { sequence_ids: number[] }).sequence_ids).toEqual([1]);
    });
  });
}
