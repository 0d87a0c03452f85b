/** Logs (JSON, request ids, no secrets), Prometheus metrics, liveness and readiness. */
import { Writable } from "node:stream";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createLogger, startApp, type App } from "../src/server/app.js";
import { SseReader, postJson } from "./support/server.js";

const lines: string[] = [];
let app: App;
beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  app = await startApp(loadConfig({ PORT: "0", HOST: "127.0.0.1", AUTH: "required", API_KEYS: "acme:super-secret-key" }), { logger: createLogger("debug", sink) });
});
afterAll(async () => app?.close());

it("logs JSON lines with request ids and never the credentials", async () => {
  const r = await fetch(`${app.url}/api/v1/events/publish`, {
    method: "POST",
    headers: { authorization: "Bearer super-secret-key", cookie: "polos_auth=super-secret-key", "content-type": "application/json", "x-request-id": "req-123" },
    body: JSON.stringify({ topic: "logs", events: [{ data: 1 }] }),
  });
  expect(r.status).toBe(200);
  expect(r.headers.get("x-request-id")).toBe("req-123");
  const bad = await postJson(app, "/api/v1/events/publish", { topic: "logs" }, { authorization: "Bearer super-secret-key" });
  expect(bad.status).toBe(400);
  await new Promise((res) => setTimeout(res, 50));
  const records = lines.map((l) => JSON.parse(l) as { requestId?: string; msg: string; status?: number });
  expect(records.some((x) => x.requestId === "req-123" && x.msg === "request" && x.status === 200)).toBe(true);
  expect(records.some((x) => x.msg === "request rejected" && x.status === 400)).toBe(true);
  expect(lines.join("\n")).not.toContain("super-secret-key");
});

it("serves Prometheus metrics, liveness and readiness", async () => {
  const sse = new SseReader(`${app.url}/api/v1/events/stream?topic=metrics`, { authorization: "Bearer super-secret-key" });
  await sse.until((s) => s.status === 200);
  await postJson(app, "/api/v1/events/publish", { topic: "metrics", events: [{ data: 1 }, { data: 2 }] }, { authorization: "Bearer super-secret-key" });
  await sse.until((s) => s.messages.length >= 2);
  const res = await fetch(`${app.url}/metrics`);
  expect(res.headers.get("content-type")).toMatch(/text\/plain/);
  const text = await res.text();
  expect(text).toMatch(/^events_published_total\{api="polos"\} 3$/m);
  expect(text).toMatch(/^publish_duration_seconds_count\{api="polos"\} 2$/m);
  expect(text).toMatch(/^subscribers 1$/m);
  expect(text).toMatch(/^events_delivered_total 2$/m);
  expect(text).toMatch(/^delivery_lag_seconds_count \d+$/m);
  expect(text).toMatch(/^http_requests_total\{route="POST \/api\/v1\/events\/publish",status="200"\} 2$/m);
  expect(text).toMatch(/^store_errors_total 0$/m);
  expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
  await sse.close();
  expect(await (await fetch(`${app.url}/healthz`)).json()).toEqual({ status: "ok" });
  expect(await (await fetch(`${app.url}/readyz`)).json()).toEqual({ status: "ready", store: "memory" });
});
