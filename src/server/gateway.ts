/**
 * The JSON dialects' routes. Each dialect's table (src/server/routes/) maps that platform's paths
 * onto the same src/api functions the RPCs call; this module turns them into pipeline routes
 * (src/server/pipeline.ts: matching, policy and errors happen there) that read JSON bodies and
 * write JSON or SSE.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import type { CallContext } from "../api/common.js";
import { parseRequest } from "../api/common.js";
import { errorReply, HttpError, type Dialect } from "../api/errors.js";
import { messageToJson, queryToJson } from "../api/json.js";
import { MAX_JSON_DEPTH, MAX_JSON_VALUES, scanJsonText } from "../core/json.js";
import { readBody } from "./http/body.js";
import { ABORTED, following } from "./http/abort.js";
import { sendJson } from "./http/reply.js";
import { HEADER } from "./http/wire.js";
import type { RouteDoc } from "./openapi.js";
import type { Call, PipelineRoute, Surface } from "./pipeline.js";
import type { RoutePolicy } from "./policy.js";
import { untilRevoked } from "./revocation.js";
import { streamSse, type Req, type SseMessage } from "./sse.js";

/** A body may nest free JSON MAX_JSON_DEPTH deep inside its own few levels (events, content, …). */
const MAX_BODY_DEPTH = MAX_JSON_DEPTH + 10;

export interface RouteRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  headers: Req["headers"];
  ctx: CallContext;
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
  maxBodyBytes: number;
  /** A body must arrive whole within this time (408 otherwise). */
  bodyTimeoutMs: number;
  sseKeepaliveMs: number;
  /** Most bytes of a caller's input an error reply (and an SSE stream's last error event) quotes (ERROR_QUOTE_BYTES). */
  errorQuoteBytes?: number;
  /** Most JSON values in a body (MAX_JSON_VALUES), counted before it is parsed. */
  maxJsonValues?: number;
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
  const h = r.headers[HEADER.lastEventId];
  const v = Array.isArray(h) ? h[0] : h;
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v)) throw new HttpError(400, "Last-Event-ID must be a sequence number");
  return Number(v);
}

/**
 * The pipeline routes of one dialect's table. Each JSON route's policy: an API key, CORS for listed
 * origins, the body limit (MAX_BODY_BYTES unless the route says otherwise, none on GET/DELETE), and,
 * for an SSE route (its doc says `sse`), a live reader: a subscription slot, ended when its key is revoked.
 */
export function jsonRoutes(surface: Surface, routes: readonly Route[], d: GatewayOptions): PipelineRoute[] {
  return routes.map((route) => {
    const live = route.doc?.responses.some((r) => r.sse) ?? false;
    const policy: RoutePolicy = {
      auth: "key",
      cors: "listed",
      body: route.method === "GET" || route.method === "DELETE" ? 0 : (route.maxBodyBytes ?? d.maxBodyBytes),
      stream: live ? "live" : "unary",
      caps: live ? ["inflight_bytes", "subscriptions"] : ["inflight_bytes"],
      metric: route.path,
    };
    return { surface, method: route.method, path: route.path, policy, errors: route.dialect, serve: (call) => serve(route, policy, call, d) };
  });
}

async function serve(route: Route, policy: RoutePolicy, call: Call, d: GatewayOptions): Promise<void> {
  // An SSE stream ends its source itself (a revoked key, a failed write) while the reply may still
  // be open: it has a controller of its own. A unary reply's work ends with the reply, and an error
  // aborts the pipeline's controller (call.signal) before it is answered.
  const abort = policy.stream === "live" ? following(call.signal) : undefined;
  let release: (() => void) | undefined;
  try {
    const takeTurn = async (): Promise<void> => {
      release = await largeBodies.acquire();
    };
    const body = policy.body === 0 ? undefined : await readJson(call.req, policy.body as number, d.bodyTimeoutMs, route.dialect, d.maxJsonValues ?? MAX_JSON_VALUES, takeTurn);
    const ctx: CallContext = { signal: abort?.signal ?? call.signal, ...(call.project ? { project: call.project } : {}) };
    const result = await route.handle({ params: call.params, query: call.url.searchParams, headers: call.req.headers, ctx, body });
    if ("sse" in result) {
      if (!abort) throw new Error(`route ${route.method} ${route.path} answered SSE but its policy is not a live reader`);
      // Nothing is read from the log before the stream is iterated, so a refused one costs nothing.
      const reader = call.openReader();
      await streamSse(call.req, call.res, abort, untilRevoked(result.sse, reader), {
        keepalive: result.keepalive,
        keepaliveMs: d.sseKeepaliveMs,
        ...(result.hello ? { hello: result.hello } : {}),
        // A revoked key (or a failed read) ends the stream with the dialect's error as a last event.
        finalEvent: (err) => ({ event: "error", data: JSON.stringify(errorReply(route.dialect, err, d.errorQuoteBytes).json) }),
      });
    } else {
      sendJson(call.res, result.status, result.json, result.headers);
    }
  } catch (err) {
    abort?.abort(ABORTED);
    throw err;
  } finally {
    release?.();
  }
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

/** Strict UTF-8 (one decoder: decode() without `stream` keeps no state between calls). */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Reads the whole body (at most maxBytes) and parses it as JSON; dialect-shaped errors otherwise. */
async function readJson(req: Req, maxBytes: number, timeoutMs: number, dialect: Dialect, maxValues: number, takeTurn: () => Promise<void>): Promise<unknown> {
  const raw = await readBody(req, maxBytes, timeoutMs);
  let text: string;
  try {
    text = strictUtf8.decode(raw);
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
