/**
 * The one front door. Every request (the JSON dialects, Durable Streams and /v1/log, RPCs in all
 * three protocols, SSE, the console, the ops endpoints) passes the same ordered chain:
 *
 *   parse the target once → match a route in one table → the route's policy (Host, Origin and
 *   cross-site rule, CORS, body limit, authentication, caps) → the route's handler → one error
 *   table (src/api/errors.ts), rendered in the caller's dialect.
 *
 * The route tables (src/server/routes/) only declare; the protections live in src/server/policy.ts.
 * A route without a complete policy, or two routes for the same method and path, are start-up
 * errors. A refused RPC is answered in its protocol (gRPC, gRPC-Web or Connect) before its body is
 * read; errors inside a call are connect-node's to encode, with codes from the same table.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { DEFAULT_PROJECT } from "../api/common.js";
import { classify, errorReply, HttpError, isBusy, textReply, type Dialect } from "../api/errors.js";
import type { Auth } from "./auth.js";
import { credentialOf } from "./auth.js";
import { decodeParam, type ErrorSink } from "./boundary.js";
import { ABORTED } from "./http/abort.js";
import { claimedProject, HEADER, headerOf, targetOf } from "./http/wire.js";
import { sendJson, sendText } from "./http/reply.js";
import type { LiveReader, LiveReaders } from "./limits.js";
import { checkPolicy, OriginRule, type RoutePolicy } from "./policy.js";
import type { Req, Res } from "./sse.js";
import { refuseRpc } from "./unauthenticated.js";

/** Which surface a route belongs to (the matrix test and docs/security.md group routes by it). */
export type Surface = "polos" | "kubiya" | "sailhouse" | "terminaluse" | "durable" | "rpc" | "ops" | "console";

/** How a route's errors are written: a JSON dialect, Durable Streams' text/plain, or an RPC status. */
export type ErrorDialect = Dialect | "text" | "rpc";

export interface PipelineRoute {
  surface: Surface;
  method: "GET" | "HEAD" | "POST" | "PUT" | "DELETE";
  /** A template: `{name}` matches one path segment, `{name+}` the rest of the path. */
  path: string;
  policy: RoutePolicy;
  errors: ErrorDialect;
  serve(call: Call): Promise<void>;
}

/** A request that passed the route's policy (for an RPC: or the refusal it gets). */
export interface Call {
  req: Req;
  res: Res;
  url: URL;
  params: Record<string, string>;
  route: PipelineRoute;
  /** The caller's project: the key's (AUTH=required) or the one it named (AUTH=off); undefined on `none`/`admin` routes or when none was named. */
  project: string | undefined;
  requestId: string;
  log: Logger;
  /** Aborted when the reply closes (however it ends). */
  signal: AbortSignal;
  /**
   * Opens the caller's live reader (src/server/limits.ts): a subscription slot of its project and a
   * hold on its key (`revoked` resolves when the key is revoked), released when the reply closes;
   * 429 when no slot is free.
   */
  openReader(): LiveReader;
}

export interface PipelineOptions {
  auth: Auth;
  origins: OriginRule;
  /** Live readers: subscription caps and key holds (src/server/limits.ts, src/server/revocation.ts). */
  liveReaders: LiveReaders;
  requests: { inc(labels: { route: string; status: string }): void };
  errors: ErrorSink;
  log: Logger;
  /** Most bytes of a caller's input an error reply quotes (ERROR_QUOTE_BYTES). */
  errorQuoteBytes: number;
}

interface Compiled {
  route: PipelineRoute;
  regex: RegExp;
  names: string[];
}

function compile(route: PipelineRoute): Compiled {
  const names: string[] = [];
  const pattern = route.path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{(\w+)(\\\+)?\}/g, (_m, name: string, rest?: string) => {
    names.push(name);
    return rest ? "(.+)" : "([^/]+)";
  });
  return { route, regex: new RegExp(`^${pattern}/?$`), names };
}

/** The route table: every route checked at start-up, matched in table order. */
export class RouteTable {
  readonly #compiled: Compiled[];

  constructor(readonly routes: readonly PipelineRoute[]) {
    const seen = new Set<string>();
    for (const r of routes) {
      const where = `${r.method} ${r.path}`;
      checkPolicy(where, r.policy);
      if (seen.has(where)) throw new Error(`route ${where} is declared twice`);
      seen.add(where);
    }
    this.#compiled = routes.map(compile);
  }

  /** The first route for a path and method, else the routes the path has (405), else nothing. */
  match(pathname: string, method: string): { route: PipelineRoute; raw: string[]; names: string[] } | { methods: PipelineRoute[] } | undefined {
    const atPath: PipelineRoute[] = [];
    for (const c of this.#compiled) {
      const m = c.regex.exec(pathname);
      if (!m) continue;
      if (c.route.method === method) return { route: c.route, raw: m.slice(1), names: c.names };
      atPath.push(c.route);
    }
    return atPath.length > 0 ? { methods: atPath } : undefined;
  }

  /** True when some route serves `pathname` (any method). */
  serves(pathname: string): boolean {
    return this.#compiled.some((c) => c.regex.test(pathname));
  }
}

/** Unmatched requests count under one label, whatever their path or method. */
const UNMATCHED = "unmatched";

export function createPipeline(table: RouteTable, o: PipelineOptions): (req: Req, res: Res) => void {
  return (req, res) => {
    // The listener has already refused targets the URL parser rejects (400), and kept its parse.
    const url = targetOf(req);
    const method = req.method ?? "GET";
    const requestId = (headerOf(req, HEADER.requestId) ?? randomUUID()).slice(0, 128);
    res.setHeader(HEADER.requestId, requestId);
    const found = table.match(url.pathname, method);
    if (!found) {
      res.once("finish", () => o.requests.inc({ route: `${method} ${UNMATCHED}`, status: String(res.statusCode) }));
      unmatched(req, res, url, o);
      return;
    }
    const route = "route" in found ? found.route : found.methods[0]!;
    // The request's logger (with redaction, made per child) only once something is logged: most
    // requests log nothing at the default level.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= o.log.child({ requestId, method, route: route.path }));
    const started = performance.now();
    res.once("finish", () => {
      // The metric bounds the method to a fixed set (requestLabels); the template is the route's.
      o.requests.inc({ route: `${method} ${route.policy.metric}`, status: String(res.statusCode) });
      debug(o, log, { status: res.statusCode, ms: Math.round(performance.now() - started) }, "request");
    });
    void run(req, res, url, found, route, requestId, log, o).catch((err: unknown) => o.errors.caught("request", err, { requestId, path: url.pathname }));
  };
}

async function run(req: Req, res: Res, url: URL, found: NonNullable<ReturnType<RouteTable["match"]>>, route: PipelineRoute, requestId: string, log: () => Logger, o: PipelineOptions): Promise<void> {
  const abort = new AbortController();
  res.once("close", () => abort.abort(ABORTED));
  const header = (n: string): string | undefined => headerOf(req, n);
  const method = req.method ?? "GET";
  let project: string | undefined;
  let credential: string | undefined;
  const params: Record<string, string> = {};
  const openReader = (): LiveReader => {
    const reader = o.liveReaders.open(project ?? DEFAULT_PROJECT, credential);
    if ("refused" in reader) throw new HttpError(429, reader.refused);
    res.once("close", () => reader.release());
    return reader;
  };
  const call = (): Call => ({
    req,
    res,
    url,
    params,
    route,
    project,
    requestId,
    get log() {
      return log();
    },
    signal: abort.signal,
    openReader,
  });
  try {
    const hostRefused = o.origins.hostRefusal(header(HEADER.authority) ?? header(HEADER.host));
    if (hostRefused) throw hostRefused;
    if ("methods" in found) {
      const methods = [...new Set(found.methods.map((r) => r.method))];
      if (method === "OPTIONS") {
        // A CORS preflight (or a bare OPTIONS): 204; Access-Control-Allow-Origin only where the rule grants it.
        res.writeHead(204, o.origins.preflight(header, route.policy, methods));
        res.end();
        return;
      }
      throw new HttpError(405, `method ${method} not allowed`, undefined, { allow: methods.join(", ") });
    }
    for (const [i, n] of found.names.entries()) {
      const v = decodeParam(found.raw[i]!);
      // A malformed percent-escape (`%ZZ`) or escapes that are not UTF-8 (`%ED%A0%80`): bad input,
      // located at the path parameter (FastAPI: 422), before anything else.
      if (v === undefined) throw new HttpError(400, `path parameter ${n} is not valid percent-encoded UTF-8`, [{ loc: ["path", n], msg: "Invalid percent-encoding or UTF-8 in path parameter", type: "value_error" }]);
      params[n] = v;
    }
    const headerKey = credentialOf((n) => (n === HEADER.cookie ? undefined : header(n)));
    const cookieKey = headerKey === undefined ? credentialOf(header) : undefined;
    const allowOrigin = o.origins.admit({ method, header, headerKey, cookieKey }, route.policy);
    if (allowOrigin !== undefined) for (const [k, v] of Object.entries(OriginRule.corsReply(allowOrigin, route.policy))) res.setHeader(k, v);
    const declared = Number(header("content-length"));
    const limit = route.policy.body;
    if (limit !== "stream" && Number.isFinite(declared) && declared > limit) throw new HttpError(413, limit === 0 ? "this route takes no request body" : `request body exceeds ${limit} bytes`);
    // Authenticate before the body is read: an unauthenticated caller gets nothing parsed.
    if (route.policy.auth === "key") {
      credential = headerKey ?? cookieKey;
      project = await o.auth.project(credential, claimedProject(header, method === "GET" ? url.searchParams : undefined));
    }
  } catch (err) {
    abort.abort(ABORTED);
    // A method the RPC path does not serve is an HTTP answer (405 with Allow), as connect's own
    // router gives it: no RPC protocol was spoken, so there is no Connect code to map (501 would
    // read as a server fault).
    if (route.errors === "rpc" && !(err instanceof HttpError && err.status === 405)) {
      // Refused before the call: answered in the call's protocol without reading its body.
      const c = classify(err, o.errorQuoteBytes);
      debug(o, log, { code: c.connect.code }, "call refused");
      return refuseRpc(req, res, c.connect.code, c.connect.rawMessage);
    }
    return fail(req, res, route.errors === "rpc" ? "error" : route.errors, err, log, o, url);
  }
  try {
    await route.serve(call());
  } catch (err) {
    abort.abort(ABORTED);
    if (route.errors === "rpc") throw err;
    fail(req, res, route.errors, err, log, o, url);
  }
}

/** A debug line on the request's logger, which is made only if the line is written. */
function debug(o: PipelineOptions, log: () => Logger, fields: object, msg: string): void {
  if (o.log.isLevelEnabled("debug")) log().debug(fields, msg);
}

/** Renders an error through the one table, in the route's dialect; a reply already started just ends. */
function fail(req: Req, res: Res, dialect: Exclude<ErrorDialect, "rpc">, err: unknown, log: () => Logger, o: PipelineOptions, url: URL): void {
  const reply = dialect === "text" ? textReply(err) : errorReply(dialect, err, o.errorQuoteBytes);
  if (reply.status >= 500 && reply.status !== 503) o.errors.caught("request", err, { method: req.method, path: url.pathname, status: reply.status });
  else debug(o, log, { status: reply.status, error: "json" in reply ? reply.json : reply.text }, "request rejected");
  if (res.headersSent || res.destroyed) {
    // A stream that already started ends here (SSE: the client sees the end and may resume).
    if (!res.writableEnded && !res.destroyed) res.end();
    return;
  }
  // A body left unread (too slow, too big, over the budget): HTTP/1.1 closes the connection after
  // the reply; HTTP/2 closes the stream once the reply is out.
  const unread = reply.status === 408 || reply.status === 413 || isBusy(err);
  if (unread && req.httpVersionMajor === 1) res.setHeader("connection", "close");
  if (unread && req.httpVersionMajor === 2) res.once("finish", () => (req as { stream?: { close(code?: number): void } }).stream?.close());
  if ("text" in reply) sendText(res, reply.status, reply.text, reply.headers);
  else sendJson(res, reply.status, reply.json, reply.headers);
}

/** No route: refused by the Host rule, or `unimplemented` for an RPC-shaped request, else 404. */
function unmatched(req: Req, res: Res, url: URL, o: PipelineOptions): void {
  const hostRefused = o.origins.hostRefusal(headerOf(req, HEADER.authority) ?? headerOf(req, HEADER.host));
  const contentType = headerOf(req, HEADER.contentType) ?? "";
  if (contentType.startsWith("application/grpc")) {
    // An unknown RPC, asked over gRPC: a trailers-only response.
    const status = hostRefused ? "7" : "12";
    const message = hostRefused ? hostRefused.message : `unknown method ${url.pathname}`;
    res.writeHead(200, { "content-type": contentType.split(";")[0]!, "grpc-status": status, "grpc-message": encodeURIComponent(message) });
    res.end();
    return;
  }
  if (hostRefused) return sendJson(res, 403, { error: hostRefused.message });
  if (/^\/[\w.]+\/\w+$/.test(url.pathname) && /^application\/(json|proto)/.test(contentType)) return sendJson(res, 404, { code: "unimplemented", message: `unknown method ${url.pathname}` });
  sendJson(res, 404, { error: `no route for ${req.method} ${url.pathname}` });
}
