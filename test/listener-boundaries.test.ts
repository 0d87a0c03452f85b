/**
 * Error boundaries at the listener, the gateway and the RPCs: the requests a black-box probe used
 * to crash the process are answered with a clear error in the caller's dialect, the error is
 * counted, and the server keeps serving.
 */
import http2 from "node:http2";
import { EventEmitter } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { StreamService } from "../gen/events/v1/events_pb.js";
import { boundaryInterceptor, guardProcess, type ErrorSink, type Where } from "../src/server/boundary.js";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { h2Request, rawHttp, stillServing } from "./support/raw.js";

async function metric(app: App, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

describe("malformed requests that used to crash the process", () => {
  for (const auth of ["off", "required"] as const) {
    describe(`AUTH=${auth}`, () => {
      let app: App;
      beforeAll(async () => {
        app = await startTestServer({ env: { AUTH: auth, API_KEYS: "acme:k-acme" } });
      });
      afterAll(() => app?.close());

      it("answers malformed percent-escapes in path parameters in the route's dialect, before auth", async () => {
        const cases = [
          { method: "POST", path: "/topics/%ZZ/events", status: 400, param: "topic_slug" },
          { method: "POST", path: "/tasks/%E0%A4%A/events", status: 422, param: "task_id" },
          { method: "GET", path: "/api/v1/executions/%ED%A0%80/stream", status: 422, param: "execution_id" },
          { method: "POST", path: "/api/v1/executions/%/events", status: 422, param: "execution_id" },
          { method: "GET", path: "/topics/ok/subscriptions/%C0%AF/events/pull", status: 400, param: "subscription_slug" },
          { method: "PUT", path: "/waitgroups/instances/%FF/events", status: 400, param: "wait_group_instance_id" },
        ];
        for (const c of cases) {
          const res = await rawHttp(app, `${c.method} ${c.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`);
          expect(res.status, c.path).toBe(c.status);
          const body = JSON.parse(res.text.slice(res.text.indexOf("\r\n\r\n") + 4));
          if (c.status === 422) expect(body.detail[0].loc, c.path).toEqual(["path", c.param]);
          else {
            expect(body.error, c.path).toMatch(/percent-encoded/);
            expect(body.details[0].loc, c.path).toEqual(["path", c.param]);
          }
          expect(await stillServing(app)).toBeLessThan(1000);
        }
      });

      it("answers a request target the URL parser rejects with 400, over HTTP/1.1", async () => {
        for (const target of ["//[", "//[::1", "//x:99999/healthz", "/a?b=%ZZ#[", "//[/topics/x/events"]) {
          const res = await rawHttp(app, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
          expect([400, 404], target).toContain(res.status);
          expect(res.text, target).toMatch(/"error":/);
          expect(await stillServing(app)).toBeLessThan(1000);
        }
        // A Host header the URL parser rejects, on an RPC path (connect-node builds a URL from it).
        const badHost = await rawHttp(app, "POST /events.v1.StreamService/ListStreams HTTP/1.1\r\nHost: [\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        expect(badHost.status).toBe(400);
        // HTTP/1.0 without Host.
        const noHost = await rawHttp(app, "POST /events.v1.StreamService/ListStreams HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
        expect(noHost.status).toBe(400);
        expect(await metric(app, "limited_total", 'limit="bad_target"')).toBeGreaterThanOrEqual(6);
      });

      it("answers the same over h2c, in gRPC terms for gRPC callers", async () => {
        const session = http2.connect(app.url);
        try {
          const plain = await h2Request(session, { ":method": "GET", ":path": "//[" });
          expect(plain.status).toBe(400);
          expect(JSON.parse(plain.body).error).toMatch(/malformed/);
          const grpc = await h2Request(session, { ":method": "POST", ":path": "//[", "content-type": "application/grpc", te: "trailers" }, Buffer.alloc(5));
          expect(grpc.headers["grpc-status"]).toBe(String(Code.InvalidArgument));
          const authority = await h2Request(session, { ":method": "POST", ":path": "/events.v1.StreamService/ListStreams", ":authority": "[", "content-type": "application/json" }, "{}");
          expect(authority.status).toBe(400);
          const escape = await h2Request(session, { ":method": "POST", ":path": "/topics/%ZZ/events", "content-type": "application/json" }, "{}");
          expect(escape.status).toBe(400);
          // The session itself is fine: a normal call on it works.
          expect((await h2Request(session, { ":method": "GET", ":path": "/healthz" })).status).toBe(200);
        } finally {
          session.close();
        }
        expect(await stillServing(app)).toBeLessThan(1000);
      });
    });
  }
});

describe("undecodable protobuf requests", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer();
  });
  afterAll(() => app?.close());
  const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
  const frame = (payload: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0, payload.length]), payload]);

  it("are invalid_argument in every protocol, unary and streaming", async () => {
    // Connect unary: 400 {"code":"invalid_argument"}.
    const unary = await fetch(`${app.url}/events.v1.StreamService/Publish`, { method: "POST", headers: { "content-type": "application/proto" }, body: garbage });
    expect(unary.status).toBe(400);
    const body = (await unary.json()) as { code: string; message: string };
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toMatch(/^parse binary: /);
    // Connect server-streaming: the end-stream message carries invalid_argument.
    const stream = await fetch(`${app.url}/events.v1.StreamService/Subscribe`, { method: "POST", headers: { "content-type": "application/connect+proto" }, body: frame(garbage) });
    const bytes = Buffer.from(await stream.arrayBuffer());
    expect(bytes[0]! & 0x02).toBe(2);
    expect(JSON.parse(bytes.subarray(5).toString()).error.code).toBe("invalid_argument");
    // gRPC-Web: the trailer frame.
    const web = await fetch(`${app.url}/events.v1.StreamService/Publish`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" }, body: frame(garbage) });
    const wb = Buffer.from(await web.arrayBuffer());
    const trailer = (web.headers.get("grpc-status") ?? "") + wb.toString("latin1");
    expect(trailer).toMatch(/grpc-status: ?3/);
    // gRPC (HTTP/2): trailers.
    const session = http2.connect(app.url);
    try {
      for (const path of ["/events.v1.StreamService/Publish", "/events.v1.StreamService/Subscribe"]) {
        const g = await h2Request(session, { ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" }, frame(garbage));
        expect(g.trailers["grpc-status"] ?? g.headers["grpc-status"], path).toBe(String(Code.InvalidArgument));
      }
    } finally {
      session.close();
    }
    // A real internal error keeps its code: an unknown method is still unimplemented, valid calls still work.
    expect(await stillServing(app)).toBeLessThan(1000);
  });
});

describe("the RPC boundary", () => {
  function sink(): ErrorSink & { seen: { where: Where; fields: Record<string, unknown> | undefined }[] } {
    const seen: { where: Where; fields: Record<string, unknown> | undefined }[] = [];
    return { seen, caught: (where, _err, fields) => seen.push({ where, fields }) };
  }

  it("answers internal without echoing a handler's own error, logs it once with the request id", async () => {
    const s = sink();
    const transport = createRouterTransport(
      ({ service }) =>
        service(StreamService, {
          listStreams() {
            throw new TypeError("secret internals: cannot read x of undefined");
          },
          async *subscribe() {
            yield { events: [] };
            throw new RangeError("boom in a stream");
          },
          listEvents() {
            throw new ConnectError("bad cursor", Code.InvalidArgument);
          },
        }),
      { router: { interceptors: [boundaryInterceptor(s)] } },
    );
    const c = createClient(StreamService, transport);
    const err = await c.listStreams({}, { headers: { "x-request-id": "req-42" } }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toBe("internal error");
    expect(s.seen).toEqual([{ where: "rpc", fields: { requestId: "req-42", rpc: "events.v1.StreamService/ListStreams" } }]);

    // A deliberate error passes unchanged and is not an incident.
    const bad = await c.listEvents({}).catch((e: unknown) => ConnectError.from(e));
    expect((bad as ConnectError).code).toBe(Code.InvalidArgument);
    expect((bad as ConnectError).rawMessage).toBe("bad cursor");
    expect(s.seen.length).toBe(1);

    // A stream that throws mid-way ends with internal, counted once.
    const got: unknown[] = [];
    const streamErr = await (async () => {
      for await (const r of c.subscribe({})) got.push(r);
    })().catch((e: unknown) => ConnectError.from(e));
    expect(got.length).toBe(1);
    expect((streamErr as ConnectError).code).toBe(Code.Internal);
    expect(s.seen.length).toBe(2);
    expect(s.seen[1]!.fields?.["rpc"]).toBe("events.v1.StreamService/Subscribe");
  });
});

describe("the process guard", () => {
  it("logs and counts uncaught exceptions and unhandled rejections, and is removed on close", () => {
    const proc = new EventEmitter();
    const seen: { where: Where; kind: unknown }[] = [];
    const remove = guardProcess(proc as never, { caught: (where, _err, fields) => seen.push({ where, kind: fields?.["kind"] }) });
    proc.emit("uncaughtException", new Error("x"));
    proc.emit("unhandledRejection", new Error("y"));
    expect(seen).toEqual([
      { where: "process", kind: "uncaughtException" },
      { where: "process", kind: "unhandledRejection" },
    ]);
    remove();
    expect(proc.listenerCount("uncaughtException")).toBe(0);
    expect(proc.listenerCount("unhandledRejection")).toBe(0);
  });

  it("is installed while a service runs and removed when it closes", async () => {
    const before = process.listenerCount("uncaughtException");
    const app = await startTestServer();
    expect(process.listenerCount("uncaughtException")).toBe(before + 1);
    expect(process.listenerCount("unhandledRejection")).toBeGreaterThanOrEqual(1);
    await app.close();
    expect(process.listenerCount("uncaughtException")).toBe(before);
  });
});
