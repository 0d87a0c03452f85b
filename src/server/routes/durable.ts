/**
 * The Durable Streams route table: `/v1/stream/{name}` (PUT create, POST append/close, GET read /
 * long-poll / SSE, HEAD, DELETE, OPTIONS preflight), and `/v1/log/{topic|execution|task}/{key}`,
 * the same protocol over the other kinds' streams (JSON envelopes, see src/api/durable/). The protocol speaks raw bytes and its own
 * headers, not the JSON dialects of gateway.ts, so this table moves bytes and headers itself;
 * everything the protocol decides is in src/api/durable/.
 */
import type { ServerResponse } from "node:http";
import http2 from "node:http2";
import type { Logger } from "pino";
import { DEFAULT_PROJECT } from "../../api/common.js";
import { DsError, LOG_PREFIX, STREAM_PREFIX, type DurableApi, type DsReply, type DsRequest } from "../../api/durable/index.js";
import { InvalidEventError } from "../../core/types.js";
import { credentialOf, type Auth } from "../auth.js";
import { errorReply, readBody } from "../gateway.js";
import type { LiveReader, LiveReaders } from "../limits.js";
import { untilRevoked } from "../revocation.js";
import { isIdentifier } from "../../core/names.js";
import type { Req, Res } from "../sse.js";

export interface DurableRouteOptions {
  auth: Auth;
  /** Largest request body (413 above). */
  maxBodyBytes: number;
  /** A body must arrive whole within this time (408). */
  bodyTimeoutMs: number;
  log: Logger;
  requests?: { inc(labels: { route: string; status: string }): void };
  /** Live reads (long-poll, SSE) are live readers: a subscription slot each, ended when their key is revoked. */
  liveReaders?: LiveReaders;
}

/** Longest stream name, in bytes (after URL decoding). */
const MAX_NAME_BYTES = 1024;

/** On every answer: browsers may call from anywhere (the credentials decide access), and must not sniff stream bytes. */
const COMMON_HEADERS: Record<string, string> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, PUT, DELETE, HEAD, OPTIONS",
  "access-control-allow-headers":
    "content-type, authorization, x-project-id, if-none-match, stream-seq, stream-ttl, stream-expires-at, stream-closed, stream-close-reason, producer-id, producer-epoch, producer-seq, stream-forked-from, stream-fork-offset, stream-fork-sub-offset",
  "access-control-expose-headers":
    "stream-next-offset, stream-cursor, stream-up-to-date, stream-closed, stream-close-reason, stream-ttl, stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, producer-expected-seq, producer-received-seq, etag, location, content-type",
  "access-control-max-age": "86400",
  "x-content-type-options": "nosniff",
  "cross-origin-resource-policy": "cross-origin",
};

function header(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

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

/** Returns the handler for /v1/stream/…: true when it took the request. */
export function durableRoutes(api: DurableApi, d: DurableRouteOptions): (req: Req, res: Res) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (!url.pathname.startsWith(STREAM_PREFIX) && !url.pathname.startsWith(LOG_PREFIX)) return false;
    void serve(url, req, res);
    return true;
  };

  async function serve(url: URL, req: Req, res: Res): Promise<void> {
    for (const [k, v] of Object.entries(COMMON_HEADERS)) res.setHeader(k, v);
    const method = req.method ?? "GET";
    // Labelled by template only (the method is bounded by the metric itself).
    const template = url.pathname.startsWith(LOG_PREFIX) ? `${LOG_PREFIX}{kind}/{key}` : `${STREAM_PREFIX}{name}`;
    res.once("finish", () => d.requests?.inc({ route: `${method} ${template}`, status: String(res.statusCode) }));
    const abort = new AbortController();
    const onClose = (): void => abort.abort();
    res.on("close", onClose);
    let reader: LiveReader | undefined;
    let revokedBy: unknown;
    try {
      if (method === "OPTIONS") {
        res.writeHead(204);
        res.end();
        return;
      }
      const isView = url.pathname.startsWith(LOG_PREFIX);
      let name: string;
      try {
        name = decodeURIComponent(url.pathname.slice(isView ? LOG_PREFIX.length : STREAM_PREFIX.length));
      } catch {
        throw new DsError(400, "malformed stream name");
      }
      // `__ds` is the protocol's reserved control namespace (subscriptions, not served here).
      if (name === "" || name.split("/")[0] === "__ds" || Buffer.byteLength(name) > MAX_NAME_BYTES || /[\u0000-\u001f\u007f]/.test(name)) {
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
      const claimed = header(req, "x-project-id") || header(req, "project-id") || undefined;
      const credential = credentialOf((n) => header(req, n) || undefined);
      const project = (await d.auth.project(credential, claimed)) ?? DEFAULT_PROJECT;
      if (method === "GET" && url.searchParams.has("live")) {
        const r = d.liveReaders?.open(project, credential);
        if (r && "refused" in r) throw new DsError(429, r.refused);
        reader = r;
        // The slot is the client's: it is given back when the connection goes, not when the read notices.
        res.once("close", () => r?.release());
        // A long-poll waiting for data is woken to answer 401; an SSE stream ends with an error event (send).
        void r?.revoked.then((err) => {
          revokedBy = err;
          if (!res.headersSent) abort.abort();
        });
      }
      const body = method === "PUT" || method === "POST" ? await readBody(req, d.maxBodyBytes, d.bodyTimeoutMs) : Buffer.alloc(0);
      const reply = await api.handle({
        method,
        project,
        name,
        header: (n) => header(req, n),
        query: url.searchParams,
        body,
        signal: abort.signal,
        ...(view ? { view } : {}),
        origin: `${(req.socket as { encrypted?: boolean }).encrypted ? "https" : "http"}://${header(req, "host") ?? header(req, ":authority") ?? "localhost"}`,
      });
      if (revokedBy) throw revokedBy;
      await send(res, reply, abort, reader, url);
    } catch (err) {
      fail(res, err, url);
    } finally {
      res.off("close", onClose);
      reader?.release();
    }
  }

  async function send(res: Res, reply: DsReply, abort: AbortController, reader: LiveReader | undefined, url: URL): Promise<void> {
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
        const message = err instanceof DsError ? err.message : (errorReply("error", err).json as { error: string }).error;
        if (!res.writableEnded && !res.destroyed) res.write(`event: error\ndata: ${message.replace(/[\r\n]+/g, " ")}\n\n`);
        throw err;
      } finally {
        await frames.return?.(undefined);
        if (!res.writableEnded) res.end();
      }
      return;
    }
    if ("stream" in reply) {
      await stream(res, reply, abort, url);
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
  async function stream(res: Res, reply: Extract<DsReply, { stream: unknown }>, abort: AbortController, url: URL): Promise<void> {
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
      if (!abort.signal.aborted) d.log.warn({ err, path: url.pathname }, "durable stream read failed mid-answer; response aborted");
      cut(res);
    } finally {
      await chunks.return?.(undefined);
    }
  }

  function fail(res: Res, err: unknown, url: URL): void {
    let status: number;
    let message: string;
    let headers: Record<string, string> = {};
    if (err instanceof DsError) {
      ({ status, message, headers } = err);
    } else if (err instanceof InvalidEventError) {
      // JSON the log does not store (too deep, non-finite numbers, lone surrogates): nothing was appended.
      status = 400;
      message = `message ${err.index}: ${err.field === "idempotency_key" ? "idempotency_key " : ""}${err.problem}`;
    } else {
      // Every other error maps as on the other JSON paths (one table: gateway's errorReply), so a
      // full in-flight budget or memory bound is 503, a closed stream 409, a store outage 503.
      const reply = errorReply("error", err);
      status = reply.status;
      message = (reply.json as { error: string }).error;
      if (status === 401) headers = { "www-authenticate": "Bearer" };
      if (status === 500) d.log.error({ err, path: url.pathname }, "durable stream request failed");
    }
    if (res.headersSent) {
      if (!res.writableEnded) res.end();
      return;
    }
    const text = `${message}\n`;
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }
}

/** Aborts a response: HTTP/2 resets the stream (INTERNAL_ERROR), HTTP/1.1 closes the connection. */
function cut(res: Res): void {
  const h2 = (res as { stream?: http2.ServerHttp2Stream }).stream;
  if (h2) {
    if (!h2.destroyed) h2.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  } else if (!res.destroyed) res.destroy();
}
