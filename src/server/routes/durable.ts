/**
 * The Durable Streams route table: `/v1/stream/{name}` (PUT create, POST append/close, GET read /
 * long-poll / SSE, HEAD, DELETE, OPTIONS preflight), and `/v1/log/{topic|execution|task}/{key}`,
 * the same protocol over the other kinds' streams (JSON envelopes, see src/api/durable/). The protocol speaks raw bytes and its own
 * headers, not the JSON dialects of gateway.ts, so these routes move bytes and headers themselves;
 * everything the protocol decides is in src/api/durable/. Matching, the policy (key, Origin, CORS,
 * body limit) and errors (text/plain, through the one error table) are the pipeline's.
 */
import type { ServerResponse } from "node:http";
import http2 from "node:http2";
import { DEFAULT_PROJECT } from "../../api/common.js";
import { DsError, H, LOG_PREFIX, STREAM_PREFIX, type DurableApi, type DsReply, type DsRequest } from "../../api/durable/index.js";
import { classify } from "../../api/errors.js";
import { isIdentifier } from "../../core/names.js";
import { readBody } from "../http/body.js";
import { ABORTED, following } from "../http/abort.js";
import { HEADER, headerOf } from "../http/wire.js";
import type { LiveReader } from "../limits.js";
import type { Call, PipelineRoute } from "../pipeline.js";
import type { RoutePolicy } from "../policy.js";
import { untilRevoked } from "../revocation.js";
import type { Res } from "../sse.js";

export interface DurableRouteOptions {
  /** Largest request body (413 above): DURABLE_MAX_APPEND_BYTES. */
  maxBodyBytes: number;
  /** A body must arrive whole within this time (408). */
  bodyTimeoutMs: number;
}

/** Longest stream name, in bytes (after URL decoding). */
const MAX_NAME_BYTES = 1024;

/** On every answer: browsers must not sniff stream bytes, and may embed them cross-origin where CORS lets them read. */
const PROTOCOL_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  "cross-origin-resource-policy": "cross-origin",
};

/** The protocol's request headers a cross-origin page may send, and the reply headers it may read (CORS). */
const CORS_HEADERS = {
  request: ["if-none-match", H.seq, H.ttl, H.expiresAt, H.closed, H.closeReason, H.producerId, H.producerEpoch, H.producerSeq, H.forkedFrom, H.forkOffset, H.forkSubOffset],
  expose: [H.offset, H.cursor, H.upToDate, H.closed, H.closeReason, H.ttl, H.expiresAt, H.sseEncoding, H.producerEpoch, H.producerSeq, H.expectedSeq, H.receivedSeq, "etag", "location", "content-type"],
};

function write(res: Res, chunk: string | Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    if ((res as ServerResponse).write(chunk)) return resolve();
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/**
 * The routes of `/v1/stream/{name}` and `/v1/log/{kind}/{key}`: PUT, POST, GET, HEAD, DELETE, each
 * with an API key, CORS for listed origins (preflights are the pipeline's), DURABLE_MAX_APPEND_BYTES
 * on bodies; a live read (`live=long-poll` or `sse`) is a live reader (a subscription slot, ended
 * when its key is revoked).
 */
export function durableRoutes(api: DurableApi, d: DurableRouteOptions): PipelineRoute[] {
  const methods = ["PUT", "POST", "GET", "HEAD", "DELETE"] as const;
  const templates = [
    { prefix: STREAM_PREFIX, path: `${STREAM_PREFIX}{name+}`, metric: `${STREAM_PREFIX}{name}` },
    { prefix: LOG_PREFIX, path: `${LOG_PREFIX}{name+}`, metric: `${LOG_PREFIX}{kind}/{key}` },
  ];
  return templates.flatMap((t) =>
    methods.map((method): PipelineRoute => {
      const reads = method === "GET";
      const policy: RoutePolicy = {
        auth: "key",
        cors: "listed",
        body: method === "PUT" || method === "POST" ? d.maxBodyBytes : 0,
        // GET is a catch-up read, or a live one (long-poll, SSE) holding a subscription slot.
        stream: reads ? "live" : "unary",
        caps: reads ? ["inflight_bytes", "subscriptions"] : ["inflight_bytes"],
        metric: t.metric,
        corsHeaders: CORS_HEADERS,
      };
      return { surface: "durable", method, path: t.path, policy, errors: "text", serve: (call) => serve(call, t.prefix === LOG_PREFIX) };
    }),
  );

  async function serve(call: Call, isView: boolean): Promise<void> {
    const { req, res, url } = call;
    for (const [k, v] of Object.entries(PROTOCOL_HEADERS)) res.setHeader(k, v);
    const method = req.method ?? "GET";
    const abort = following(call.signal);
    let revokedBy: unknown;
    const name = call.params["name"]!;
    // `__ds` is the protocol's reserved control namespace (subscriptions, not served here).
    if (name.split("/")[0] === "__ds" || Buffer.byteLength(name) > MAX_NAME_BYTES || /[\u0000-\u001f\u007f]/.test(name)) {
      throw new DsError(404, "no such stream");
    }
    let view: DsRequest["view"];
    if (isView) {
      const slash = name.indexOf("/");
      const kind = name.slice(0, slash);
      const key = name.slice(slash + 1);
      if (slash < 0 || (kind !== "topic" && kind !== "execution" && kind !== "task") || !isIdentifier(key)) {
        throw new DsError(404, "no such stream: /v1/log/{topic|execution|task}/{key}");
      }
      view = { kind, key };
    }
    let reader: LiveReader | undefined;
    if (method === "GET" && url.searchParams.has("live")) {
      reader = call.openReader();
      // A long-poll waiting for data is woken to answer 401; an SSE stream ends with an error event (send).
      void reader.revoked.then((err) => {
        revokedBy = err;
        if (!res.headersSent) abort.abort(ABORTED);
      });
    }
    const body = method === "PUT" || method === "POST" ? await readBody(req, call.route.policy.body as number, d.bodyTimeoutMs) : Buffer.alloc(0);
    const reply = await api.handle({
      method,
      project: call.project ?? DEFAULT_PROJECT,
      name,
      header: (n) => headerOf(req, n),
      query: url.searchParams,
      body,
      signal: abort.signal,
      ...(view ? { view } : {}),
      origin: `${(req.socket as { encrypted?: boolean }).encrypted ? "https" : "http"}://${headerOf(req, HEADER.host) ?? headerOf(req, HEADER.authority) ?? "localhost"}`,
    });
    if (revokedBy) throw revokedBy;
    await send(res, reply, abort, reader, call);
  }

  async function send(res: Res, reply: DsReply, abort: AbortController, reader: LiveReader | undefined, call: Call): Promise<void> {
    if ("sse" in reply) {
      res.writeHead(200, reply.headers);
      const frames = (reader ? untilRevoked(reply.sse, reader) : reply.sse)[Symbol.asyncIterator]();
      try {
        for (;;) {
          const next = await frames.next();
          if (next.done || abort.signal.aborted) break;
          await write(res, next.value);
        }
      } catch (err) {
        // The key was revoked (or the read failed): a last event says why, then the stream ends.
        const message = classify(err).message;
        if (!res.writableEnded && !res.destroyed) res.write(`event: error\ndata: ${message.replace(/[\r\n]+/g, " ")}\n\n`);
        throw err;
      } finally {
        await frames.return?.(undefined);
        if (!res.writableEnded) res.end();
      }
      return;
    }
    if ("stream" in reply) {
      await stream(res, reply, abort, call);
      return;
    }
    const headers = { ...reply.headers };
    if (reply.body !== undefined && reply.status !== 204 && reply.status !== 304) headers["content-length"] = String(Buffer.byteLength(reply.body));
    res.writeHead(reply.status, headers);
    if (reply.body === undefined || reply.status === 204 || reply.status === 304) res.end();
    else res.end(reply.body);
  }

  /**
   * A body produced as the connection takes it: each chunk is written and the next one asked for
   * only after 'drain' (a client that stops reading is cut off by the stall watch, which ends the
   * wait). Ended only when complete; when the answer cannot be completed it is aborted (HTTP/2:
   * RST_STREAM; HTTP/1.1: the connection closes before the last chunk), so no client takes a
   * short answer for a whole one.
   */
  async function stream(res: Res, reply: Extract<DsReply, { stream: unknown }>, abort: AbortController, call: Call): Promise<void> {
    res.writeHead(200, reply.headers);
    const chunks = reply.stream[Symbol.asyncIterator]();
    try {
      for (;;) {
        const next = await chunks.next();
        if (abort.signal.aborted) return;
        if (next.done) break;
        if (next.value.byteLength > 0) await write(res, next.value);
      }
      if (!abort.signal.aborted) res.end();
    } catch (err) {
      if (!abort.signal.aborted) call.log.warn({ err, path: call.url.pathname }, "durable stream read failed mid-answer; response aborted");
      cut(res);
    } finally {
      await chunks.return?.(undefined);
    }
  }
}

/** Aborts a response: HTTP/2 resets the stream (INTERNAL_ERROR), HTTP/1.1 closes the connection. */
function cut(res: Res): void {
  const h2 = (res as { stream?: http2.ServerHttp2Stream }).stream;
  if (h2) {
    if (!h2.destroyed) h2.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  } else if (!res.destroyed) res.destroy();
}
