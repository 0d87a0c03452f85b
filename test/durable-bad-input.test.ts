/**
 * Hostile input on the Durable Streams paths: every bad request gets a 4xx, nothing of it is
 * stored, and the service keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer } from "./support/server.js";
import type { App } from "../src/server/app.js";

describe("Durable Streams: bad input", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { DURABLE_MAX_APPEND_BYTES: "65536", DURABLE_MAX_FORK_BYTES: "4096", MAX_BATCH_EVENTS: "100" } });
  });
  afterAll(() => app.close());
  const req = (method: string, path: string, headers: Record<string, string> = {}, body?: string | Uint8Array) => fetch(app.url + path, { method, headers, ...(body === undefined ? {} : { body }) });

  it("answers 4xx, stores nothing and keeps serving", async () => {
    expect((await req("PUT", "/v1/stream/bad", { "content-type": "application/json" })).status).toBe(201);
    const json = { "content-type": "application/json" };
    const cases: [string, Promise<Response>, number][] = [
      ["deep JSON", req("POST", "/v1/stream/bad", json, "[".repeat(5000) + "]".repeat(5000)), 400],
      ["JSON 31 levels", req("POST", "/v1/stream/bad", json, "[".repeat(32) + "]".repeat(32)), 400],
      ["not UTF-8", req("POST", "/v1/stream/bad", json, Uint8Array.of(0x22, 0xff, 0xfe, 0x22)), 400],
      // An append is bounded by its bytes (DURABLE_MAX_APPEND_BYTES), not by MAX_BATCH_EVENTS (see durable-ai-apps.test.ts).
      ["messages past the append bytes", req("POST", "/v1/stream/bad", json, JSON.stringify(Array.from({ length: 20_000 }, (_, i) => i))), 413],
      ["body too large", req("POST", "/v1/stream/bad", json, JSON.stringify("x".repeat(70_000))), 413],
      ["NaN-ish number", req("POST", "/v1/stream/bad", json, "1e999"), 400],
      ["lone surrogate", req("POST", "/v1/stream/bad", json, '"\\ud800"'), 400],
      ["reserved namespace", req("GET", "/v1/stream/__ds/subscriptions/x"), 404],
      ["control character in name", req("GET", "/v1/stream/a%01b"), 404],
      ["name too long", req("GET", `/v1/stream/${"n".repeat(1100)}`), 404],
      ["bad escape", req("GET", "/v1/stream/%E0%A4%A"), 400],
      ["garbage offset", req("GET", "/v1/stream/bad?offset=../../etc"), 400],
      ["offset out of range", req("GET", "/v1/stream/bad?offset=0000000000000001_9999999999999999"), 400],
      ["producer id too long", req("POST", "/v1/stream/bad", { ...json, "producer-id": "p".repeat(300), "producer-epoch": "0", "producer-seq": "0" }, "{}"), 400],
      ["producer epoch too big", req("POST", "/v1/stream/bad", { ...json, "producer-id": "p", "producer-epoch": "9007199254740993", "producer-seq": "0" }, "{}"), 400],
      ["unknown method", req("PATCH", "/v1/stream/bad", json, "{}"), 405],
      ["bad TTL", req("PUT", "/v1/stream/ttl", { "stream-ttl": "1e3" }), 400],
      ["bad view kind", req("GET", "/v1/log/queue/x"), 404],
    ];
    for (const [what, res, status] of cases) expect([what, (await res).status]).toEqual([what, status]);
    // A fork that would copy more than DURABLE_MAX_FORK_BYTES.
    expect((await req("PUT", "/v1/stream/big", { "content-type": "text/plain" }, "y".repeat(8000))).status).toBe(201);
    expect((await req("PUT", "/v1/stream/big-fork", { "stream-forked-from": "/v1/stream/big" })).status).toBe(413);
    expect((await req("GET", "/v1/stream/big-fork")).status).toBe(404);
    // Nothing was stored; the service still answers.
    const read = await req("GET", "/v1/stream/bad?offset=-1");
    expect(read.status).toBe(200);
    expect(await read.json()).toEqual([]);
    expect((await req("GET", "/healthz")).status).toBe(200);
  });
});
