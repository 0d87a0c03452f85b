/**
 * The operators' routes: liveness, readiness (the store answers), Prometheus metrics, the OpenAPI
 * document and the web console's files. No credentials (the console's page sends the key itself
 * on the API paths it calls), no cross-origin access, no body.
 */
import { readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sendJson } from "../http/reply.js";
import { PATH } from "../http/wire.js";
import type { Call, PipelineRoute, Surface } from "../pipeline.js";
import type { RoutePolicy } from "../policy.js";

export interface OpsDeps {
  /** Whether the store answers (cached: at most one ping per HEALTH_CACHE_MS). */
  storeHealthy(): Promise<boolean>;
  storeKind: string;
  openapi: unknown;
  metrics: { contentType: string; text(): Promise<string> };
}

/** The web console's files (src/server/console, copied next to the built module by `npm run build`). */
function loadConsole(): Map<string, { type: string; body: Buffer }> {
  const dir = fileURLToPath(new URL("../console/", import.meta.url));
  const types: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of readdirSync(dir).filter((n) => types[extname(n)])) files.set(name, { type: types[extname(name)]!, body: readFileSync(join(dir, name)) });
  return files;
}

const opsPolicy = (path: string): RoutePolicy => ({ auth: "none", cors: "same-origin", body: 0, stream: "unary", caps: [], metric: path });

function route(surface: Surface, path: string, serve: (call: Call) => Promise<void> | void): PipelineRoute {
  return { surface, method: "GET", path, policy: opsPolicy(path), errors: "error", serve: async (call) => serve(call) };
}

export function opsRoutes(d: OpsDeps): PipelineRoute[] {
  const files = loadConsole();
  const redirect = (call: Call): void => {
    call.res.writeHead(302, { location: PATH.console + call.url.search });
    call.res.end();
  };
  const asset = (name: string, call: Call): void => {
    const file = files.get(name);
    if (!file) return sendJson(call.res, 404, { error: `no such file: ${PATH.console}${name.slice(0, 64)}` });
    call.res.writeHead(200, { "content-type": file.type, "cache-control": "no-cache", "x-content-type-options": "nosniff" });
    call.res.end(file.body);
  };
  return [
    route("ops", PATH.healthz, (call) => sendJson(call.res, 200, { status: "ok" })),
    route("ops", PATH.readyz, async (call) => {
      const ok = await d.storeHealthy();
      sendJson(call.res, ok ? 200 : 503, { status: ok ? "ready" : "store unavailable", store: d.storeKind });
    }),
    route("ops", PATH.openapi, (call) => sendJson(call.res, 200, d.openapi)),
    route("ops", PATH.metrics, async (call) => {
      const text = await d.metrics.text();
      call.res.writeHead(200, { "content-type": d.metrics.contentType });
      call.res.end(text);
    }),
    // The index before the redirect: templates match with or without a trailing slash.
    route("console", PATH.console, (call) => asset("index.html", call)),
    route("console", "/", redirect),
    route("console", "/ui", redirect),
    route("console", `${PATH.console}{file}`, (call) => asset(call.params["file"]!, call)),
  ];
}
