/**
 * Generated hostile input at the listener (fast-check): raw HTTP/1.1 requests with arbitrary
 * methods, percent-escapes and bytes in paths (every documented path, the RPC paths, made-up
 * ones), headers and bodies; raw HTTP/2 frames after a valid preface; HTTP/2 requests with
 * arbitrary pseudo-headers. Each is answered within a bound, never with a 5xx, and the server
 * still answers a normal request within 1 s after each. On both stores.
 *
 * The seed is fixed (FUZZ_SEED, default 1111) so CI is repeatable; FUZZ_RUNS (default 60 per
 * property and store) runs more. A failure prints fast-check's report: the seed, the path to
 * replay it and the shrunk counterexample.
 */
import net from "node:net";
import http2 from "node:http2";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { SERVICES } from "../src/server/rpc.js";
import { startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";
import { h2Request, rawHttp, stillServing } from "./support/raw.js";
import { PREFACE, h2Frame, hpack } from "./support/h2frames.js";

const SEED = Number(process.env["FUZZ_SEED"] ?? 1111);
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 60);
const REQUEST_TIMEOUT_MS = 1500;
/** Every case must be answered (or its connection closed) within this. */
const ANSWER_BOUND_MS = REQUEST_TIMEOUT_MS + 2000;

const params = { seed: SEED, numRuns: RUNS, verbose: 1 as const };

/** One path segment as a hostile client would write it. */
const segment = fc.oneof(
  fc.string({ maxLength: 16 }).map(encodeURIComponent),
  fc.stringMatching(/^[A-Za-z0-9%._~:@+=!$&'()*,;-]{0,20}$/),
  fc.uint8Array({ maxLength: 10 }).map((b) => [...b].map((x) => `%${x.toString(16).padStart(2, "0")}`).join("")),
  fc.constantFrom("%", "%Z", "%ZZ", "%E0%A4%A", "%ED%A0%80", "%C0%AF", "%F4%90%80%80", "..", "%2F", "%00", "%25", "[", "]", "%5B::1%5D", "x".repeat(300)),
);

/** A path: a documented template with hostile parameters, an RPC path, or something else. */
function pathArb(templates: string[]): fc.Arbitrary<string> {
  const filled = fc.tuple(fc.constantFrom(...templates), fc.array(segment, { minLength: 4, maxLength: 4 })).map(([t, segs]) => {
    let i = 0;
    return t.replace(/\{[^}]+\}/g, () => segs[i++ % segs.length]!);
  });
  const query = fc.array(fc.tuple(segment, segment), { maxLength: 4 }).map((kv) => (kv.length ? "?" + kv.map(([k, v]) => `${k}=${v}`).join("&") : ""));
  const odd = fc.oneof(
    fc.constantFrom("//[", "//[::1", "/%", "*", "//x:99999/", "/./../healthz", "//", "/\\healthz"),
    fc.array(segment, { maxLength: 5 }).map((s) => "/" + s.join("/")),
    // Raw bytes (a parser must reject some of them: spaces, controls, bytes > 0x7f).
    fc.uint8Array({ minLength: 1, maxLength: 24 }).map((b) => "/" + Buffer.from(b).toString("latin1")),
  );
  return fc.tuple(fc.oneof({ weight: 5, arbitrary: filled }, { weight: 1, arbitrary: odd }), query).map(([p, q]) => p + q);
}

const HEADER_NAMES = ["content-type", "host", "origin", "cookie", "authorization", "x-project-id", "project-id", "last-event-id", "x-request-id", "accept", "te", "content-encoding", "connect-protocol-version", "connect-timeout-ms", "grpc-timeout", "grpc-encoding", "x-grpc-web", "expect", "upgrade", "transfer-encoding"];
const headerValue = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom("application/json", "application/proto", "application/grpc", "application/grpc-web+proto", "application/connect+json", "text/plain", "multipart/form-data; boundary=x", "gzip", "br", "1", "0", "-1", "99999999999999999999", "Bearer x", "polos_auth=%ZZ", "https://evil.example", "null", "[", "100-continue", "h2c", "chunked") },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, " ")) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b.filter((x) => x !== 10 && x !== 13)).toString("latin1")) },
);
const headersArb = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...HEADER_NAMES), fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/)), headerValue), { maxLength: 6 });
const bodyArb = fc.oneof(
  fc.constant(""),
  fc.json({ maxDepth: 4 }),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString("latin1")),
  fc.constantFrom('{"topic":"t","events":[{"data":1}]}', '{"data":{}}', '{"event_type":"x","data":{}}', '{"content":{"type":"text","text":"hi"}}', "{", "[", '"\\ud800"'),
);

const METHODS = fc.oneof(fc.constantFrom("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"), fc.stringMatching(/^[A-Z]{1,8}$/));


/** Writes the preface, an empty SETTINGS and `frames`; resolves with the bytes the server sent within `ms`, and whether it closed. */
function sendFrames(app: App, frames: Buffer[], ms = 250): Promise<{ bytes: number; closed: boolean; firstMs: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(app.port, "127.0.0.1");
    let bytes = 0;
    let firstMs = -1;
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes, closed, firstMs });
    };
    const timer = setTimeout(() => done(false), ms);
    s.on("connect", () => s.write(Buffer.concat([PREFACE, h2Frame(4, 0, 0, Buffer.alloc(0)), ...frames])));
    s.on("data", (d: Buffer) => {
      if (firstMs < 0) firstMs = Date.now() - t0;
      bytes += d.length;
    });
    s.on("error", () => {});
    s.on("close", () => done(true));
  });
}

for (const factory of storeFactories) {
  describe(`generated hostile input at the listener, ${factory.name} store`, () => {
    let app: App;
    let templates: string[] = [];
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) } });
      const doc = (await (await fetch(`${app.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
      templates = [...Object.keys(doc.paths), ...SERVICES.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)), "/healthz", "/readyz", "/metrics", "/ui/", "/grpc.health.v1.Health/Check", "/v1/stream/{name}", "/v1/log/topic/{key}"];
      expect(templates.length).toBeGreaterThan(30);
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("answers raw HTTP/1.1 requests (any method, path bytes, escapes, headers, body) within a bound, never 5xx, and keeps serving", async () => {
      let cases = 0;
      const statuses: Record<string, number> = {};
      await fc.assert(
        fc.asyncProperty(METHODS, pathArb(templates), headersArb, bodyArb, fc.integer({ min: 0, max: 9 }).map((n) => n > 0), async (method, path, headers, body, withHost) => {
          cases++;
          const lines = [`${method} ${path} HTTP/1.1`];
          if (withHost) lines.push("Host: 127.0.0.1");
          for (const [n, v] of headers) if (n.toLowerCase() !== "content-length" && n.toLowerCase() !== "transfer-encoding") lines.push(`${n}: ${v}`);
          const payload = Buffer.from(body, "latin1");
          lines.push(`Content-Length: ${payload.length}`, "Connection: close");
          const raw = Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), payload]);
          const res = await rawHttp(app, raw, ANSWER_BOUND_MS);
          statuses[String(res.status)] = (statuses[String(res.status)] ?? 0) + 1;
          // Answered within the bound: a status line, or (HTTP/1.1 parse errors) a closed connection.
          if (res.status === 0) expect(res.closed, `no answer to ${JSON.stringify(raw.toString("latin1").slice(0, 200))}`).toBe(true);
          else expect(res.status, raw.toString("latin1").slice(0, 300)).toBeLessThan(500);
          expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
          expect(await stillServing(app)).toBeLessThan(1000);
        }),
        params,
      );
      console.log(`[fuzz ${factory.name}] HTTP/1.1: ${cases} cases, seed ${SEED}, statuses ${JSON.stringify(statuses)}`);
    });

    it("survives raw HTTP/2 frames (any type, flags, stream, payload; HPACK headers with hostile values) and keeps serving", async () => {
      let cases = 0;
      const frame = fc.oneof(
        fc.record({ type: fc.integer({ min: 0, max: 12 }), flags: fc.integer({ min: 0, max: 255 }), stream: fc.integer({ min: 0, max: 9 }), payload: fc.uint8Array({ maxLength: 48 }) }).map((f) => h2Frame(f.type, f.flags, f.stream, Buffer.from(f.payload))),
        // HEADERS with END_HEADERS (+/- END_STREAM) and hostile pseudo-headers on an odd stream.
        fc
          .record({
            method: METHODS,
            path: pathArb(templates),
            extra: headersArb,
            stream: fc.constantFrom(1, 3, 5, 2, 0),
            end: fc.boolean(),
          })
          .map((h) =>
            h2Frame(
              1,
              4 | (h.end ? 1 : 0),
              h.stream,
              hpack([[":method", h.method], [":scheme", "http"], [":authority", "127.0.0.1"], [":path", h.path], ...h.extra.map(([n, v]) => [n.toLowerCase(), v] as [string, string])]),
            ),
          ),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 6 }), async (frames) => {
          cases++;
          const r = await sendFrames(app, frames);
          // The server answered the preface (its SETTINGS) promptly, whatever followed.
          expect(r.bytes).toBeGreaterThan(0);
          expect(r.firstMs).toBeLessThan(1000);
          expect(await stillServing(app)).toBeLessThan(1000);
        }),
        params,
      );
      // And HTTP/2 itself still works.
      const session = http2.connect(app.url);
      try {
        expect((await h2Request(session, { ":method": "GET", ":path": "/healthz" })).status).toBe(200);
      } finally {
        session.close();
      }
      console.log(`[fuzz ${factory.name}] HTTP/2 frames: ${cases} cases, seed ${SEED}`);
    });

    it("answers HTTP/2 requests with hostile paths, methods and headers within a bound, never 5xx", async () => {
      let cases = 0;
      const statuses: Record<string, number> = {};
      const session = http2.connect(app.url);
      session.on("error", () => {});
      let current = session;
      try {
        await fc.assert(
          fc.asyncProperty(fc.constantFrom("GET", "POST", "PUT", "DELETE", "OPTIONS"), pathArb(templates), headersArb, bodyArb, async (method, path, headers, body) => {
            cases++;
            if (current.closed || current.destroyed) {
              current = http2.connect(app.url);
              current.on("error", () => {});
            }
            const h: http2.OutgoingHttpHeaders = { ":method": method, ":path": path };
            for (const [n, v] of headers) {
              const name = n.toLowerCase();
              // Connection-specific headers are protocol errors in HTTP/2 (the client library refuses them).
              if (["host", "te", "upgrade", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "expect"].includes(name)) continue;
              if (!/^[\x20-\x7e]*$/.test(v)) continue;
              h[name] = v;
            }
            let res;
            try {
              res = await h2Request(current, h, method === "GET" || method === "OPTIONS" ? undefined : body, ANSWER_BOUND_MS);
            } catch (err) {
              // The client library refused to send it (invalid header for HTTP/2): not a server case.
              if (/ERR_HTTP2_INVALID|ERR_INVALID_HTTP_TOKEN|ERR_INVALID_CHAR/.test(String((err as { code?: string }).code ?? err))) return;
              throw err;
            }
            statuses[String(res.status)] = (statuses[String(res.status)] ?? 0) + 1;
            if (res.status !== 0) expect(res.status, `${method} ${path}`).toBeLessThan(500);
            // gRPC answers carry their status in headers or trailers: never internal/unknown.
            const grpc = res.trailers["grpc-status"] ?? res.headers["grpc-status"];
            if (grpc !== undefined) expect(["2", "13"], `${method} ${path} grpc-status`).not.toContain(String(grpc));
            expect(await stillServing(app)).toBeLessThan(1000);
          }),
          params,
        );
      } finally {
        current.close();
        session.close();
      }
      console.log(`[fuzz ${factory.name}] HTTP/2 requests: ${cases} cases, seed ${SEED}, statuses ${JSON.stringify(statuses)}`);
    });

    it("keeps /metrics labels to route templates and fixed sets, whatever methods, paths and statuses clients send", async () => {
      const series = async (): Promise<{ route: string; status: string }[]> =>
        [...(await (await fetch(`${app.url}/metrics`)).text()).matchAll(/^http_requests_total\{route="([^"]*)",status="([^"]*)"\} \d+$/gm)].map((m) => ({ route: m[1]!, status: m[2]! }));
      const before = (await series()).length;
      const session = http2.connect(app.url, { peerMaxConcurrentStreams: 100 });
      session.on("error", () => {});
      try {
        // 1,500 made-up :method tokens on the surfaces that count requests (they once added 1,456 series).
        const paths = ["/v1/stream/x", "/v1/log/topic/x?offset=-1", "/api/v1/events?topic=x", "/topics/x/events"];
        for (let i = 0; i < 1500; i += 100) {
          await Promise.all(Array.from({ length: 100 }, (_, j) => h2Request(session, { ":method": `X${(i + j).toString(36).toUpperCase()}`, ":path": paths[(i + j) % paths.length]! }, undefined, ANSWER_BOUND_MS)));
        }
        // And generated methods and paths.
        await fc.assert(
          fc.asyncProperty(METHODS, pathArb(templates), async (method, path) => {
            await h2Request(session, { ":method": method, ":path": path }, undefined, ANSWER_BOUND_MS).catch((err: unknown) => {
              if (!/ERR_HTTP2_INVALID|ERR_INVALID_HTTP_TOKEN|ERR_INVALID_CHAR/.test(String((err as { code?: string }).code ?? err))) throw err;
            });
          }),
          params,
        );
      } finally {
        session.close();
      }
      const after = await series();
      // The route table's templates; requests no route matched share one label.
      const known = new Set([...app.routes.map((r) => r.policy.metric), "unmatched"]);
      for (const { route, status } of after) {
        const [method, template] = route.split(" ", 2);
        expect(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"], route).toContain(method);
        expect(known.has(template!), route).toBe(true);
        expect(status, route).toMatch(/^[1-5]\d\d$/);
      }
      // A handful of new series (template x fixed method x status), not one per request.
      expect(after.length - before).toBeLessThan(60);
      console.log(`[fuzz ${factory.name}] metrics labels: ${after.length} http_requests_total series after 1,500 made-up methods and ${RUNS} generated requests`);
    });
  });
}
