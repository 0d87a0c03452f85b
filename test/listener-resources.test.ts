/**
 * Connections and streams that cost the server without bringing anything: silent sockets,
 * trickled headers, stalled bodies (HTTP/1.1 and h2c), unfinished HTTP/2 prefaces, idle sessions,
 * stream floods and too many connections. Each is cut or refused within its bound, and a normal
 * request is still answered within 1 s meanwhile.
 */
import net from "node:net";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, startTestServer } from "./support/server.js";
import { eventually, h2Request, rawHttp, stillServing } from "./support/raw.js";

const REQUEST_TIMEOUT_MS = 600;
const IDLE_TIMEOUT_MS = 800;

/** Opens a socket and resolves when the server closes it (with what it sent and when). */
function socketClosed(app: App, onOpen: (s: net.Socket) => void): Promise<{ text: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(app.port, "127.0.0.1", () => onOpen(s));
    let text = "";
    s.on("data", (d) => (text += d.toString("latin1")));
    s.on("error", () => {});
    s.on("close", () => resolve({ text, ms: Date.now() - t0 }));
  });
}

describe("connection and request timeouts", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS) } });
  });
  afterAll(() => app?.close());

  it("closes a TCP connection that never sends a byte", async () => {
    const closed = socketClosed(app, () => {});
    expect(await stillServing(app)).toBeLessThan(1000);
    const { ms, text } = await closed;
    expect(text).toBe("");
    expect(ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
  });

  it("cuts off headers trickled a line at a time (408)", async () => {
    let timer: NodeJS.Timeout | undefined;
    const closed = socketClosed(app, (s) => {
      s.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      let n = 0;
      timer = setInterval(() => !s.destroyed && s.write(`X-Slow-${n++}: a\r\n`), 100);
    });
    expect(await stillServing(app)).toBeLessThan(1000);
    const { ms, text } = await closed;
    clearInterval(timer);
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
  });

  it("cuts off a stalled body over HTTP/1.1, on a JSON path and on an RPC", async () => {
    for (const [path, type] of [
      ["/api/v1/events/publish", "application/json"],
      ["/events.v1.StreamService/Publish", "application/proto"],
    ] as const) {
      const closed = socketClosed(app, (s) => s.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nX-Project-ID: acme\r\nContent-Length: 100\r\n\r\n{"to`));
      expect(await stillServing(app)).toBeLessThan(1000);
      const { ms, text } = await closed;
      expect(text, path).toMatch(/^HTTP\/1\.1 408/);
      expect(ms, path).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
    }
  });

  it("cuts off a stalled body over h2c (unary gRPC and a JSON path) without touching the session's other streams", async () => {
    const session = http2.connect(app.url);
    try {
      const t0 = Date.now();
      // A gRPC frame header announcing 100 bytes, then nothing more (the stream stays open).
      const grpc = new Promise<{ status: number; rst: number; grpcStatus: unknown }>((resolve) => {
        const req = session.request({ ":method": "POST", ":path": "/events.v1.StreamService/Publish", "content-type": "application/grpc", te: "trailers", "x-project-id": "acme" });
        req.write(Buffer.from([0, 0, 0, 0, 100, 1, 2]));
        let status = 0;
        let grpcStatus: unknown;
        req.on("response", (h) => ((status = Number(h[":status"])), (grpcStatus = h["grpc-status"])));
        req.on("trailers", (t) => (grpcStatus = t["grpc-status"]));
        req.resume();
        req.on("error", () => {});
        req.on("close", () => resolve({ status, rst: req.rstCode ?? 0, grpcStatus }));
      });
      const json = new Promise<{ status: number; body: string }>((resolve) => {
        const req = session.request({ ":method": "POST", ":path": "/api/v1/events/publish", "content-type": "application/json", "x-project-id": "acme" });
        req.write('{"topic":');
        let status = 0;
        let body = "";
        req.on("response", (h) => (status = Number(h[":status"])));
        req.setEncoding("utf8");
        req.on("data", (d: string) => (body += d));
        req.on("error", () => {});
        req.on("close", () => resolve({ status, body }));
      });
      // The session still carries other requests meanwhile.
      expect((await h2Request(session, { ":method": "GET", ":path": "/healthz" })).status).toBe(200);
      expect(await stillServing(app)).toBeLessThan(1000);
      const g = await grpc;
      expect(g.status === 408 || g.rst === http2.constants.NGHTTP2_CANCEL, JSON.stringify(g)).toBe(true);
      const j = await json;
      expect(j.status).toBe(408);
      expect(JSON.parse(j.body).error).toMatch(/did not arrive/);
      expect(Date.now() - t0).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
      expect((await h2Request(session, { ":method": "GET", ":path": "/healthz" })).status).toBe(200);
    } finally {
      session.close();
    }
  });

  it("closes a connection whose HTTP/2 preface never finishes", async () => {
    const closed = socketClosed(app, (s) => s.write("PRI * HTTP/2.0\r\n"));
    expect(await stillServing(app)).toBeLessThan(1000);
    const { ms } = await closed;
    expect(ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
    const afterPreface = socketClosed(app, (s) => s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    expect((await afterPreface).ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1500);
  });

  it("closes an idle HTTP/2 session, but not one with an open subscription", async () => {
    // Idle: one call, then nothing.
    const idle = http2.connect(app.url);
    idle.on("error", () => {});
    const idleClosed = new Promise<number>((resolve) => idle.on("close", () => resolve(Date.now())));
    const goaway = new Promise<number>((resolve) => idle.on("goaway", (code) => resolve(code)));
    expect((await h2Request(idle, { ":method": "GET", ":path": "/healthz" })).status).toBe(200);
    const t0 = Date.now();

    // Subscribed: a gRPC Subscribe stays open on its own connection, with no traffic.
    const rpc = client(StreamService, app, "grpc");
    const abort = new AbortController();
    const got: bigint[] = [];
    const sub = (async () => {
      for await (const r of rpc.subscribe({ stream: { kind: StreamKind.TOPIC, key: "idle-test" } }, { signal: abort.signal, headers: { "x-project-id": "acme" } })) got.push(...r.events.map((e) => e.sequence));
    })().catch((e: unknown) => e);

    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    const closedAt = await idleClosed;
    expect(closedAt - t0).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 100);
    expect(closedAt - t0).toBeLessThan(IDLE_TIMEOUT_MS + 1500);

    // Well past the idle timeout, the subscription still delivers.
    await new Promise((r) => setTimeout(r, IDLE_TIMEOUT_MS * 2));
    await client(StreamService, app, "connect").publish({ stream: { kind: StreamKind.TOPIC, key: "idle-test" }, events: [{ eventType: "x" }] }, { headers: { "x-project-id": "acme" } });
    await eventually(() => got.length === 1, 3000, "the subscriber got the event");
    expect(got).toEqual([1n]);
    abort.abort();
    await sub;
    expect(await stillServing(app)).toBeLessThan(1000);
  });
});

describe("stream and connection caps", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { MAX_CONCURRENT_STREAMS: "8", MAX_CONNECTIONS: "6", IDLE_TIMEOUT_MS: "30000" } });
  });
  afterAll(() => app?.close());

  it("refuses streams beyond MAX_CONCURRENT_STREAMS on one connection (REFUSED_STREAM) and keeps the connection serving", async () => {
    // Send all the streams at once, before the server's SETTINGS arrive (as a client ignoring them would).
    const session = http2.connect(app.url, { peerMaxConcurrentStreams: 1000 });
    session.on("error", () => {});
    try {
      const opened: Promise<{ status: number; rst: number }>[] = [];
      const reqs: http2.ClientHttp2Stream[] = [];
      for (let i = 0; i < 40; i++) {
        const req = session.request({ ":method": "GET", ":path": `/api/v1/events/stream?topic=flood&project_id=acme` });
        reqs.push(req);
        opened.push(
          new Promise((resolve) => {
            req.on("response", (h) => resolve({ status: Number(h[":status"]), rst: 0 }));
            req.on("error", () => {});
            req.on("close", () => resolve({ status: 0, rst: req.rstCode ?? 0 }));
          }),
        );
      }
      const results = await Promise.all(opened);
      const served = results.filter((r) => r.status === 200).length;
      const refused = results.filter((r) => r.rst === http2.constants.NGHTTP2_REFUSED_STREAM).length;
      expect(served).toBe(8);
      expect(refused).toBe(32);
      for (const r of reqs) r.close();
      // The connection goes on: once streams close, new ones are served.
      await eventually(async () => (await h2Request(session, { ":method": "GET", ":path": "/healthz" })).status === 200, 3000, "the session serves again");
    } finally {
      session.close();
    }
    expect(await stillServing(app)).toBeLessThan(1000);
  });

  it("answers connections beyond MAX_CONNECTIONS with 503 (HTTP/1.1) or GOAWAY (HTTP/2), and serves again once one closes", async () => {
    // Keep-alive connections, each having made one request, until the server is full (the
    // test's own fetch pool may hold one or two of the six).
    const held: net.Socket[] = [];
    let refused: string | undefined;
    for (let i = 0; i < 10 && refused === undefined; i++) {
      const s = net.connect(app.port, "127.0.0.1");
      s.on("error", () => {});
      const text = await new Promise<string>((resolve) => {
        let got = "";
        s.on("data", (d) => (got += d.toString()).includes("\r\n\r\n") && got.includes("}") && resolve(got));
        s.on("connect", () => s.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
      });
      if (/^HTTP\/1\.1 503/.test(text)) refused = text;
      else held.push(s);
    }
    expect(held.length).toBeGreaterThanOrEqual(4);
    expect(held.length).toBeLessThanOrEqual(6);
    expect(JSON.parse(refused!.slice(refused!.indexOf("\r\n\r\n") + 4))).toEqual({ error: "too many connections; retry later" });
    expect(refused).toMatch(/retry-after: 1/);
    const session = http2.connect(app.url);
    session.on("error", () => {});
    const code = await new Promise<number>((resolve) => session.on("goaway", (c) => resolve(c)));
    expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
    for (const s of held) s.destroy();
    await eventually(async () => (await fetch(`${app.url}/healthz`).then((r) => r.status, () => 0)) === 200, 3000, "served again");
    expect(await stillServing(app)).toBeLessThan(1000);
    const metrics = await (await fetch(`${app.url}/metrics`)).text();
    expect(metrics).toMatch(/limited_total\{limit="connections"\} [1-9]/);
  });
});
