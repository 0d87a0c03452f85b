/**
 * The service's wire vocabulary in one place: the header names, query parameters, cookie names and
 * path prefixes that the pipeline, the policy and the route tables read. A protocol's own
 * vocabulary (Durable Streams' `Stream-*` and `Producer-*` headers) stays with that protocol
 * (src/api/durable); everything the front door decides on is named here.
 */
import type { Req } from "../sse.js";

export const HEADER = {
  /** The caller's project (Polos, the CLI, the console); `Project-ID` is Polos's alias. */
  projectId: "x-project-id",
  projectIdAlias: "project-id",
  authorization: "authorization",
  /** TerminalUse's agent key (its SDKs' `agent_api_key`). */
  agentKey: "x-agent-api-key",
  cookie: "cookie",
  origin: "origin",
  host: "host",
  /** HTTP/2's Host. */
  authority: ":authority",
  contentType: "content-type",
  requestId: "x-request-id",
  lastEventId: "last-event-id",
  wwwAuthenticate: "www-authenticate",
  acRequestMethod: "access-control-request-method",
  acRequestHeaders: "access-control-request-headers",
} as const;

/** `?project_id=` names the project on reads (GET), as Polos's clients send it. */
export const QUERY_PROJECT = "project_id";

/** Cookies that carry a key: `polos_auth` (Polos's OpenAPI) and `auth_token` (what Polos's server reads). */
export const KEY_COOKIES: readonly string[] = ["polos_auth", "auth_token"];

export const PATH = {
  stream: "/v1/stream/",
  log: "/v1/log/",
  healthz: "/healthz",
  readyz: "/readyz",
  metrics: "/metrics",
  openapi: "/openapi.json",
  console: "/ui/",
} as const;

/** Request headers a browser page may send cross-origin (CORS preflight), besides a protocol's own. */
export const CORS_REQUEST_HEADERS: readonly string[] = [HEADER.contentType, HEADER.authorization, HEADER.agentKey, HEADER.projectId, HEADER.projectIdAlias, HEADER.requestId, HEADER.lastEventId];

/** One header of a request (the first, when repeated); undefined when absent or empty. */
export function headerOf(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === "" ? undefined : s;
}

/**
 * The project a caller names: `X-Project-ID`, its alias `Project-ID`, or (on reads) `?project_id=`.
 * The one place the claim is read; the policy (src/server/policy.ts) checks it against the key.
 */
export function claimedProject(header: (name: string) => string | undefined, query?: URLSearchParams): string | undefined {
  return header(HEADER.projectId) ?? header(HEADER.projectIdAlias) ?? (query?.get(QUERY_PROJECT) || undefined);
}

/** Where the listener keeps the request target it parsed (src/server/listener.ts badTarget). */
const TARGET = Symbol("parsed target");

/** The request target parsed once: the listener's parse when it made one, else parsed here. */
export function targetOf(req: Req): URL {
  const r = req as unknown as Record<symbol, URL | undefined>;
  return (r[TARGET] ??= new URL(req.url ?? "/", "http://localhost"));
}
