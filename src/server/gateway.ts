/**
 * The documented JSON paths. Each dialect's table (src/server/routes/) maps that platform's paths
 * onto the same src/api functions the RPCs call; this module matches requests against the tables,
 * reads bodies, writes JSON or SSE, and shapes errors as the route's dialect does.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { CallContext } from "../api/common.js";
import { DEFAULT_PROJECT, invalidEventField, parseRequest, unavailableMessage } from "../api/common.js";
import { boundedErrors, DEFAULT_QUOTE_BYTES, messageToJson, queryToJson, ValidationError, type FieldError } from "../api/json.js";
import { truncateUtf8 } from "../api/free-json.js";
import { MAX_JSON_DEPTH, MAX_JSON_VALUES, scanJsonText } from "../core/json.js";

/** A body may nest free JSON MAX_JSON_DEPTH deep inside its own few levels (events, content, …). */
const MAX_BODY_DEPTH = MAX_JSON_DEPTH + 10;
import { CapacityError, DuplicateEventError, InvalidEventError, LimitError, StoreUnavailableError, StreamClosedError } from "../core/types.js";
import { streamSse, type Req, type Res, type SseMessage } from "./sse.js";
import { credentialOf, crossSiteRefusal, type Auth } from "./auth.js";
import type { RouteDoc } from "./openapi.js";
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { decodeParam, type ErrorSink } from "./boundary.js";
import { isBusy, type LiveReaders } from "./limits.js";
import { untilRevoked } from "./revocation.js";

/**
 * How a route reports errors: `{"error": message}` with 400/404/... (Polos, Sailhouse), or
 * FastAPI's `{"detail": ...}` with 422 for bad input (Kubiya, TerminalUse).
 */
export type Dialect = "error" | "fastapi";

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fieldErrors?: FieldError[],
  ) {
    super(message);
  }
}

export interface RouteRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  headers: Req["headers"];
  ctx: CallContext;
  abort: AbortController;
  /** The parsed JSON body (read and size-checked before the handler runs, for POST/PUT). */
  body: unknown;
}

/** A JSON reply (no body when `json` is undefined, e.g. 204), or an SSE stream. */
export type RouteResult = { status: number; json?: unknown; headers?: Record<string, string> } | { sse: AsyncIterable<SseMessage[]>; hello?: SseMessage; keepalive: string };

export interface Route {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  dialect: Dialect;
  /** Overrides the gateway's body size limit for this route. */
  maxBodyBytes?: number;
  /** For the OpenAPI document (src/server/openapi.ts). */
  doc?: RouteDoc;
  handle(r: RouteRequest): Promise<RouteResult>;
}

export interface GatewayOptions {
  auth: Auth;
  maxBodyBytes: number;
  /** A body must arrive whole within this time (408 otherwise). */
  bodyTimeoutMs: number;
  sseKeepaliveMs: number;
  /** Most bytes of a caller's input an error reply quotes (ERROR_QUOTE_BYTES). */
  errorQuoteBytes?: number;
  /** Most JSON values in a body (MAX_JSON_VALUES), counted before it is parsed. */
  maxJsonValues?: number;
  log: Logger;
  /** Counts requests by route and status (Prometheus). */
  requests?: { inc(labels: { route: string; status: string }): void };
  /** Where unexpected errors are logged and counted (src/server/boundary.ts). */
  errors?: ErrorSink;
  /** Live readers (src/server/limits.ts): each SSE stream holds one of its project's slots, and ends when its key is revoked. */
  liveReaders?: LiveReaders;
}

export function json<Desc extends DescMessage>(schema: Desc, msg: MessageShape<Desc>, status = 200): RouteResult {
  return { status, json: messageToJson(schema, msg) };
}

/**
 * A JSON body with the path parameters added (they name the resource the body is for). A body
 * that is not an object is passed on as it is, for validation to reject.
 */
export function withParams(r: RouteRequest, body: unknown = r.body): unknown {
  return typeof body === "object" && body !== null && !Array.isArray(body) ? { ...body, ...r.params } : body;
}

/** Builds a GET route's request from its query parameters plus path parameters; errors are located in "query". */
export function fromQuery<Desc extends DescMessage>(schema: Desc, r: RouteRequest, extra: Record<string, unknown> = {}): MessageShape<Desc> {
  return parseRequest(schema, { ...queryToJson(schema, r.query), ...extra }, ["query"]);
}

export function lastEventId(r: RouteRequest): number | undefined {
  const h = r.headers["last-event-id"];
  const v = Array.isArray(h) ? h[0] : h;
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v)) throw new HttpError(400, "Last-Event-ID must be a sequence number");
  return Number(v);
}

interface CompiledRoute extends Route {
  regex: RegExp;
  names: string[];
}

function compile(route: Route): CompiledRoute {
  const names: string[] = [];
  const pattern = route.path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\{(\w+)\}/g, (_m, name: string) => {
    names.push(name);
    return "([^/]+)";
  });
  return { ...route, regex: new RegExp(`^${pattern}/?$`), names };
}

function statusOf(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
      return 409;
    case Code.ResourceExhausted:
      return 413;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    case Code.Unimplemented:
      return 501;
    default:
      return 500;
  }
}

/**
 * The error body and status for a route's dialect. It quotes at most `quoteBytes` of any input
 * (ERROR_QUOTE_BYTES) and lists a bounded number of problems, so it is small whatever was sent.
 */
export function errorReply(dialect: Dialect, err: unknown, quoteBytes = DEFAULT_QUOTE_BYTES): { status: number; json: unknown } {
  let status: number;
  let message: string;
  let fields: FieldError[] | undefined;
  if (err instanceof HttpError) {
    status = err.status;
    message = err.message;
    fields = err.fieldErrors;
  } else if (err instanceof ValidationError) {
    status = 400;
    message = err.message;
    fields = err.errors;
  } else if (err instanceof InvalidEventError) {
    status = 400;
    fields = [invalidEventField(err)];
    fields[0]!.loc.unshift("body");
    message = err.message;
  } else if (err instanceof DuplicateEventError || err instanceof StreamClosedError) {
    status = 409;
    message = err.message;
  } else if (err instanceof CapacityError) {
    // A memory bound of the service, not the request's fault: retry later (503, like `unavailable`).
    status = 503;
    message = err.message;
  } else if (err instanceof LimitError) {
    status = 413;
    message = err.message;
  } else if (err instanceof StoreUnavailableError) {
    status = 503;
    message = unavailableMessage(err);
  } else if (isBusy(err)) {
    status = 503;
    message = err.rawMessage;
  } else {
    const ce = ConnectError.from(err);
    status = statusOf(ce.code);
    message = ce.code === Code.Internal || ce.code === Code.Unknown ? "internal error" : ce.rawMessage;
    if (ce.cause instanceof ValidationError) fields = ce.cause.errors;
  }
  message = truncateUtf8(message, 1024 + quoteBytes);
  if (fields) fields = boundedErrors(fields, quoteBytes);
  if (dialect === "fastapi") {
    // FastAPI: request validation errors are 422 with pydantic's detail list.
    if (fields && (status === 400 || status === 422)) return { status: 422, json: { detail: fields } };
    return { status, json: { detail: message } };
  }
  return { status, json: fields ? { error: message, details: fields } : { error: message } };
}

/** True when `pathname` is one of the routes' paths (any method). */
export function isRoutePath(routes: readonly Route[]): (pathname: string) => boolean {
  const table = routes.map(compile);
  return (pathname) => table.some((r) => r.regex.test(pathname));
}

/** Returns the request handler for the documented paths, or undefined for other paths. */
export function createGateway(routes: readonly Route[], d: GatewayOptions): (req: Req, res: Res) => boolean {
  const table = routes.map(compile);
  return (req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      // The listener answers unparsable request targets before routing; nothing here to match.
      return false;
    }
    let pathMatched: CompiledRoute | undefined;
    for (const route of table) {
      const m = route.regex.exec(url.pathname);
      if (!m) continue;
      pathMatched = route;
      if (route.method !== req.method) continue;
      const params: Record<string, string> = {};
      for (const [i, n] of route.names.entries()) {
        const v = decodeParam(m[i + 1]!);
        if (v === undefined) {
          // A malformed percent-escape (`%ZZ`) or escapes that are not UTF-8 (`%ED%A0%80`): the
          // dialect's bad-input reply (FastAPI: 422 located at the path parameter), before auth.
          const reply = errorReply(route.dialect, new HttpError(400, `path parameter ${n} is not valid percent-encoded UTF-8`, [{ loc: ["path", n], msg: "Invalid percent-encoding or UTF-8 in path parameter", type: "value_error" }]));
          sendJson(res, reply.status, reply.json);
          return true;
        }
        params[n] = v;
      }
      serve(route, params, url, req, res, d).catch((err: unknown) => d.errors?.caught("request", err, { path: url.pathname }));
      return true;
    }
    if (pathMatched) {
      const allowed = table.filter((r) => r.regex.test(url.pathname)).map((r) => r.method);
      sendJson(res, 405, errorReply(pathMatched.dialect, new HttpError(405, `method ${req.method} not allowed`)).json, { allow: allowed.join(", ") });
      return true;
    }
    return false;
  };
}

async function serve(route: CompiledRoute, params: Record<string, string>, url: URL, req: Req, res: Res, d: GatewayOptions): Promise<void> {
  const abort = new AbortController();
  // A request id for the logs, taken from the caller when it sends one, and echoed back.
  const requestId = (headerValue(req, "x-request-id") ?? randomUUID()).slice(0, 128);
  res.setHeader("x-request-id", requestId);
  const started = performance.now();
  const log = d.log.child({ requestId, method: req.method, route: route.path });
  res.once("finish", () => {
    d.requests?.inc({ route: `${route.method} ${route.path}`, status: String(res.statusCode) });
    log.debug({ status: res.statusCode, ms: Math.round(performance.now() - started) }, "request");
  });
  let release: (() => void) | undefined;
  try {
    const claimed = headerValue(req, "x-project-id") ?? headerValue(req, "project-id") ?? (route.method === "GET" ? url.searchParams.get("project_id") || undefined : undefined);
    const crossSite = crossSiteRefusal(req.method ?? "GET", (n) => headerValue(req, n));
    if (crossSite) throw new HttpError(403, crossSite);
    // Authenticate before reading the body: an unauthenticated caller gets nothing parsed.
    const credential = credentialOf((n) => headerValue(req, n));
    const project = await d.auth.project(credential, claimed);
    const takeTurn = async (): Promise<void> => {
      release = await largeBodies.acquire();
    };
    const body = route.method === "GET" || route.method === "DELETE" ? undefined : await readJson(req, route.maxBodyBytes ?? d.maxBodyBytes, d.bodyTimeoutMs, route.dialect, d.maxJsonValues ?? MAX_JSON_VALUES, takeTurn);
    const ctx: CallContext = { signal: abort.signal, ...(project ? { project } : {}) };
    const result = await route.handle({ params, query: url.searchParams, headers: req.headers, ctx, abort, body });
    if ("sse" in result) {
      // Nothing is read from the log before the stream is iterated, so a refused one costs nothing.
      const reader = d.liveReaders?.open(project ?? DEFAULT_PROJECT, credential);
      if (reader && "refused" in reader) throw new HttpError(429, reader.refused);
      try {
        await streamSse(req, res, abort, reader ? untilRevoked(result.sse, reader) : result.sse, {
          keepalive: result.keepalive,
          keepaliveMs: d.sseKeepaliveMs,
          ...(result.hello ? { hello: result.hello } : {}),
          // A revoked key (or a failed read) ends the stream with the dialect's error as a last event.
          finalEvent: (err) => ({ event: "error", data: JSON.stringify(errorReply(route.dialect, err, d.errorQuoteBytes).json) }),
        });
      } finally {
        reader?.release();
      }
    } else {
      sendJson(res, result.status, result.json, result.headers);
    }
  } catch (err) {
    abort.abort();
    const reply = errorReply(route.dialect, err, d.errorQuoteBytes);
    if (reply.status >= 500 && reply.status !== 503) {
      if (d.errors) d.errors.caught("request", err, { requestId, method: req.method, route: route.path, path: url.pathname, status: reply.status });
      else log.error({ err, path: url.pathname, status: reply.status }, "request failed");
    } else log.debug({ status: reply.status, error: reply.json }, "request rejected");
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
    sendJson(res, reply.status, reply.json, reply.status === 401 ? { "www-authenticate": "Bearer" } : {});
  } finally {
    release?.();
  }
}

function headerValue(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === "" ? undefined : s;
}

export function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/**
 * Large bodies take turns: parsing, checking and storing one costs up to ~100 ms of CPU, and a
 * dozen at once would hold the event loop for seconds (health checks, streams, everything else
 * waits). One at a time, with a turn of the event loop between them, the wait for others stays
 * at about one body's work.
 */
class Turns {
  #tail: Promise<void> = Promise.resolve();

  /** Resolves (on a later turn of the event loop) when it is this caller's turn; call the result to pass it on. */
  acquire(): Promise<() => void> {
    let pass!: () => void;
    const mine = new Promise<void>((r) => (pass = r));
    const ready = this.#tail.then(() => new Promise<void>((r) => setImmediate(r)));
    this.#tail = ready.then(() => mine);
    return ready.then(() => pass);
  }
}

/** Bodies at least this large take turns (see Turns). */
const LARGE_BODY = 256 * 1024;
const largeBodies = new Turns();

/** Reads the whole body (at most maxBytes, within timeoutMs): 413 / 408 HttpErrors otherwise. */
export async function readBody(req: Req, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) throw new HttpError(413, `request body exceeds ${maxBytes} bytes`);
  // One buffer of at most maxBytes and one string of it: no growing strings. The bytes also count
  // against the instance's in-flight budget (the listener wraps the request's iterator).
  const chunks: Buffer[] = [];
  let size = 0;
  const it = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), timeoutMs)));
  try {
    for (;;) {
      const r = await Promise.race([it.next(), late]);
      if (r === "late") {
        // Stop reading; the reply closes the connection (HTTP/1.1) or the stream (HTTP/2).
        void it.return?.()?.catch(() => {});
        throw new HttpError(408, `the request body did not arrive within ${timeoutMs} ms`);
      }
      if (r.done) break;
      size += r.value.length;
      if (size > maxBytes) throw new HttpError(413, `request body exceeds ${maxBytes} bytes`);
      chunks.push(r.value);
    }
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks, size);
}

/** Reads the whole body (at most maxBytes) and parses it as JSON; dialect-shaped errors otherwise. */
async function readJson(req: Req, maxBytes: number, timeoutMs: number, dialect: Dialect, maxValues: number, takeTurn: () => Promise<void>): Promise<unknown> {
  const raw = await readBody(req, maxBytes, timeoutMs);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    if (dialect === "fastapi") throw new HttpError(422, "body is not valid UTF-8", [{ loc: ["body"], msg: "Input is not valid UTF-8", type: "json_invalid" }]);
    throw new HttpError(400, "request body is not valid UTF-8");
  }
  // No body at all (e.g. Sailhouse's ack is a bare POST): the route decides whether it needs one.
  if (text.trim() === "") return undefined;
  // Parsing costs per value, not per byte: a body of a million tiny values is refused unparsed.
  const { values, depth } = scanJsonText(text);
  if (depth > MAX_BODY_DEPTH) {
    const msg = `request body nests deeper than ${MAX_BODY_DEPTH} levels (free JSON may nest ${MAX_JSON_DEPTH})`;
    throw new HttpError(dialect === "fastapi" ? 422 : 400, msg, [{ loc: ["body"], msg, type: "value_error" }]);
  }
  if (values > maxValues) throw new HttpError(413, `request body holds about ${values} JSON values; the limit is ${maxValues} (MAX_JSON_VALUES)`);
  if (text.length >= LARGE_BODY) await takeTurn();
  try {
    return JSON.parse(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const pos = /position (\d+)/.exec(msg);
    if (dialect === "fastapi") {
      throw new HttpError(422, "JSON decode error", [{ loc: ["body", pos ? Number(pos[1]) : 0], msg: "JSON decode error", type: "json_invalid", input: {} }]);
    }
    throw new HttpError(400, `request body is not valid JSON: ${msg}`);
  }
}
