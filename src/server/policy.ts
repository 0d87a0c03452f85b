/**
 * The protections every route declares (its policy), and the one rule for Host, Origin, CORS and
 * cross-site requests. The pipeline (src/server/pipeline.ts) applies them in order before any
 * handler runs; a route without a complete policy is a start-up error.
 *
 * The cross-origin rule (the same on every surface):
 * - With AUTH=off, a request whose Host is neither loopback nor the host of a CORS_ORIGINS entry is
 *   refused (DNS rebinding: a page on a name that resolves to 127.0.0.1 sends same-origin requests
 *   with no Origin, only its own Host).
 * - A request with an Origin that is not this host's is served only when that origin is listed in
 *   CORS_ORIGINS (default: loopback origins, any port), or, with AUTH=required, when it presents a
 *   key in a header (a page can only do that with a key it was given). Every other origin is refused
 *   403, and its preflights get 204 without Access-Control-Allow-Origin (the page learns nothing).
 * - A request authenticated by a cookie alone (no key in a header) must come from this very origin,
 *   and if it writes, with a content type a browser cannot send cross-site without a preflight
 *   (not a form, multipart or text/plain, and not none): cookie-only cross-site writes are refused.
 */
import { HttpError } from "../api/errors.js";
import { isLoopback } from "./auth.js";
import { CORS_REQUEST_HEADERS, HEADER } from "./http/wire.js";

/**
 * How a route authenticates: `key` an API key when AUTH=required (its project is the call's; with
 * AUTH=off the project the caller names), `admin` the ADMIN_TOKEN (checked by the admin API),
 * `none` no credentials (liveness, readiness, metrics, the console's files, health and reflection).
 */
export type AuthRule = "key" | "admin" | "none";

/** unary: one request, one reply; live: a reader held open (SSE, long-poll, server stream); producer: a request that is a stream. */
export type StreamClass = "unary" | "live" | "producer";

/** Caps and budgets a route counts against: MAX_INFLIGHT_BYTES, MAX_SUBSCRIPTIONS(_PER_PROJECT), MAX_UNAUTHENTICATED_STREAMS. */
export type Cap = "inflight_bytes" | "subscriptions" | "unauthenticated_streams";

export interface RoutePolicy {
  auth: AuthRule;
  /**
   * `listed`: cross-origin pages get CORS for CORS_ORIGINS (and, with AUTH=required, with a key in a
   * header); `same-origin`: no CORS at all (operators' pages: the console, ops endpoints).
   */
  cors: "listed" | "same-origin";
  /** Largest request body in bytes; `stream` for a streaming request (bounded per message and by its window); 0: no body. */
  body: number | "stream";
  stream: StreamClass;
  caps: readonly Cap[];
  /** The template in the `route` label of http_requests_total ("<method> <template>"): never the request's path. */
  metric: string;
  /** Request headers a cross-origin page may send besides the common ones, and response headers it may read. */
  corsHeaders?: { request?: readonly string[]; expose?: readonly string[] };
}

const POLICY_KEYS: readonly (keyof RoutePolicy)[] = ["auth", "cors", "body", "stream", "caps", "metric"];

/** Throws (a start-up error) unless `policy` declares every protection. */
export function checkPolicy(where: string, policy: Partial<RoutePolicy> | undefined): asserts policy is RoutePolicy {
  if (!policy) throw new Error(`route ${where} has no policy: every route declares auth, cors, body, stream, caps and metric (src/server/policy.ts)`);
  const missing = POLICY_KEYS.filter((k) => policy[k] === undefined);
  if (missing.length > 0) throw new Error(`route ${where}: its policy does not declare ${missing.join(", ")}`);
  if (policy.stream === "live" && !policy.caps!.includes("subscriptions") && !policy.caps!.includes("unauthenticated_streams")) {
    throw new Error(`route ${where}: a live reader must count against a cap (subscriptions or unauthenticated_streams)`);
  }
}

/** One CORS_ORIGINS entry: scheme and host exact, port exact or any (`*`). */
interface OriginPattern {
  scheme: string;
  host: string;
  port: string | "*";
}

const LOOPBACK_ORIGINS = ["http://localhost:*", "https://localhost:*", "http://127.0.0.1:*", "https://127.0.0.1:*", "http://[::1]:*", "https://[::1]:*"];

/**
 * Parses CORS_ORIGINS: comma-separated origins (`https://app.example.com`, `http://host:3000`, a
 * port of `*` for any), and `loopback` for the loopback origins on any port (the default). A
 * malformed entry is a start-up error.
 */
export function parseOrigins(entries: readonly string[]): OriginPattern[] {
  const out: OriginPattern[] = [];
  for (const raw of entries.flatMap((e) => (e.trim() === "loopback" ? LOOPBACK_ORIGINS : [e.trim()])).filter(Boolean)) {
    const m = /^(https?):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}|\*))?$/.exec(raw);
    if (!m) throw new Error(`CORS_ORIGINS: ${JSON.stringify(raw)} is not an origin (scheme://host[:port], port may be *), or "loopback"`);
    out.push({ scheme: m[1]!, host: m[2]!.toLowerCase(), port: m[3] ?? (m[1] === "https" ? "443" : "80") });
  }
  return out;
}

/** Content types a page on another site can send without a preflight (and "none"). */
function simpleContentType(ct: string | undefined): boolean {
  const t = (ct ?? "").split(";")[0]!.trim().toLowerCase();
  return t === "" || t === "text/plain" || t === "application/x-www-form-urlencoded" || t === "multipart/form-data";
}

function splitHost(host: string): { host: string; port: string | undefined } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(host.trim().toLowerCase());
  return m ? { host: m[1]!, port: m[2] || undefined } : { host: host.toLowerCase(), port: undefined };
}

/** What the pipeline needs to know of a request to apply the rule. */
export interface Presented {
  method: string;
  header(name: string): string | undefined;
  /** A key in a header (Authorization, X-Agent-API-Key). */
  headerKey: string | undefined;
  /** A key in a cookie only. */
  cookieKey: string | undefined;
}

export class OriginRule {
  readonly #origins: OriginPattern[];
  readonly #hosts: Set<string>;

  constructor(
    readonly authMode: "required" | "off",
    corsOrigins: readonly string[],
  ) {
    this.#origins = parseOrigins(corsOrigins);
    this.#hosts = new Set(this.#origins.map((o) => o.host));
  }

  #listed(origin: string): boolean {
    let u: URL;
    try {
      u = new URL(origin);
    } catch {
      return false;
    }
    const scheme = u.protocol.replace(/:$/, "");
    const port = u.port || (scheme === "https" ? "443" : "80");
    const host = u.hostname.toLowerCase();
    return this.#origins.some((o) => o.scheme === scheme && o.host === host && (o.port === "*" || o.port === port));
  }

  /** With AUTH=off, the Host must be loopback or listed (DNS rebinding); undefined when it may be served. */
  hostRefusal(host: string | undefined): HttpError | undefined {
    if (this.authMode === "required") return undefined;
    const h = splitHost(host ?? "").host;
    if (isLoopback(h) || this.#hosts.has(h)) return undefined;
    return new HttpError(403, `Host ${JSON.stringify((host ?? "").slice(0, 128))} refused: with AUTH=off this service answers only loopback names and the hosts of CORS_ORIGINS (DNS rebinding)`);
  }

  static #sameOrigin(origin: string, host: string | undefined): boolean {
    if (origin === "null" || host === undefined) return false;
    try {
      return new URL(origin).host.toLowerCase() === host.toLowerCase();
    } catch {
      return false;
    }
  }

  /**
   * Admits a request (not a preflight) to a route: returns the Access-Control-Allow-Origin value
   * the reply carries (undefined: none), or throws a 403 HttpError.
   */
  admit(p: Presented, policy: RoutePolicy): string | undefined {
    const origin = p.header(HEADER.origin);
    const host = p.header(HEADER.authority) ?? p.header(HEADER.host);
    const same = origin === undefined || OriginRule.#sameOrigin(origin, host);
    const writes = p.method !== "GET" && p.method !== "HEAD" && p.method !== "OPTIONS";
    if (p.headerKey === undefined && p.cookieKey !== undefined) {
      if (!same) throw new HttpError(403, "cross-site request refused: a request authenticated by a cookie must come from this site (Origin)");
      if (writes && simpleContentType(p.header(HEADER.contentType))) {
        throw new HttpError(403, "cross-site request refused: a write authenticated by a cookie must send a content type a browser preflights (application/json, application/octet-stream, …), or a key in a header");
      }
      return undefined;
    }
    if (same) return undefined;
    if (policy.cors === "listed" && (this.#listed(origin) || (this.authMode === "required" && p.headerKey !== undefined))) return origin;
    throw new HttpError(403, `cross-origin request from ${JSON.stringify(origin.slice(0, 128))} refused: list the origin in CORS_ORIGINS${this.authMode === "required" ? ", or send an API key in a header" : ""}`);
  }

  /**
   * A CORS preflight's reply headers (the status is always 204): the methods and headers the route
   * allows, and Access-Control-Allow-Origin only for an origin that would be served — listed, or
   * (AUTH=required) asking to send a key in a header.
   */
  preflight(header: (name: string) => string | undefined, policy: RoutePolicy, methods: readonly string[]): Record<string, string> {
    const requestHeaders = [...CORS_REQUEST_HEADERS, ...(policy.corsHeaders?.request ?? [])];
    const out: Record<string, string> = {
      "access-control-allow-methods": [...methods, "OPTIONS"].join(", "),
      "access-control-allow-headers": requestHeaders.join(", "),
      "access-control-max-age": "86400",
      vary: "Origin",
    };
    const origin = header(HEADER.origin);
    if (origin === undefined || policy.cors !== "listed") return out;
    const asked = (header(HEADER.acRequestHeaders) ?? "").toLowerCase().split(",").map((s) => s.trim());
    const withKey = this.authMode === "required" && (asked.includes(HEADER.authorization) || asked.includes(HEADER.agentKey));
    if (this.#listed(origin) || withKey) out["access-control-allow-origin"] = origin;
    return out;
  }

  /** Headers of an admitted cross-origin reply. */
  static corsReply(origin: string, policy: RoutePolicy): Record<string, string> {
    const out: Record<string, string> = { "access-control-allow-origin": origin, vary: "Origin" };
    if (policy.corsHeaders?.expose?.length) out["access-control-expose-headers"] = policy.corsHeaders.expose.join(", ");
    return out;
  }
}
