/**
 * The socket layer: one TCP listener for HTTP/1.1 and h2c (sniffing the HTTP/2 preface), with the
 * bounds that keep connections from costing the service more than they bring:
 *
 * - a connection must send its first bytes, and a request its headers and body, within
 *   REQUEST_TIMEOUT_MS (silent sockets, trickled headers, stalled bodies, unfinished h2 prefaces);
 * - a connection with no request or stream open for IDLE_TIMEOUT_MS is closed (HTTP/1.1
 *   keep-alive; HTTP/2 GOAWAY). A connection with an open stream (a subscription) is not idle:
 *   SSE keepalives and the stall watch (src/server/stall.ts) decide about it;
 * - at most MAX_CONNECTIONS connections (the next ones get 503 / GOAWAY and are closed, unless a
 *   connection holding only unauthenticated streams, health watches or reflection, gives up its
 *   place: those never take the capacity keyed clients need, src/server/unauthenticated.ts) and
 *   MAX_CONCURRENT_STREAMS streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS: clients
 *   queue beyond it; a client that ignores it has the excess streams refused, REFUSED_STREAM);
 * - a request target or authority the URL parser rejects is answered 400 before routing.
 *
 * Whatever a request handler throws synchronously is caught here (src/server/boundary.ts).
 */
import net from "node:net";
import http from "node:http";
import http2 from "node:http2";
import type { ErrorSink } from "./boundary.js";
import { sendJson } from "./http/reply.js";
import { targetOf } from "./http/wire.js";
import type { Req, Res } from "./sse.js";

const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface ListenerOptions {
  host: string;
  port: number;
  /** First bytes of a connection, and each request's headers and body, must arrive within this. */
  requestTimeoutMs: number;
  /** A connection with no open request or stream for this long is closed. */
  idleTimeoutMs: number;
  maxConnections: number;
  maxConcurrentStreams: number;
  /** Paths of RPCs whose request is a stream (client or bidi streaming): no body deadline. */
  streamingRequestPaths: ReadonlySet<string>;
  /** Paths that need no key: a full listener closes the oldest connection using only these to let a new one in. */
  unauthenticatedPaths?: ReadonlySet<string>;
  errors: ErrorSink;
  /** Told each time a limit refuses or cuts something (for the metric). */
  limited(limit: "connections" | "request_timeout" | "idle" | "preface" | "bad_target" | "unauthenticated_evicted"): void;
  serve(req: Req, res: Res): void;
}

export interface Listener {
  url: string;
  host: string;
  port: number;
  /** Open connections (HTTP/1.1 and HTTP/2). */
  connections(): number;
  /** Stops accepting; HTTP/2 sessions get GOAWAY and HTTP/1.1 idle connections close. Resolves once the listening socket is closed. */
  stop(): Promise<void>;
  /** Drops every connection still open. */
  destroyAll(): void;
}

/** True when `first` is (the start of) the HTTP/2 connection preface. */
function isH2(first: Buffer): boolean {
  return first.length >= HTTP2_PREFACE.length ? first.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE) : HTTP2_PREFACE.subarray(0, first.length).equals(first);
}

/** An empty SETTINGS frame then GOAWAY(ENHANCE_YOUR_CALM) with a short reason: "go away, we are full". */
function goAway(reason: string): Buffer {
  const debug = Buffer.from(reason);
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  const head = Buffer.alloc(9 + 8);
  head.writeUIntBE(8 + debug.length, 0, 3);
  head[3] = 7; // GOAWAY
  head.writeUInt32BE(0, 5); // stream 0
  head.writeUInt32BE(0, 9); // last stream id
  head.writeUInt32BE(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, 13);
  return Buffer.concat([settings, head, debug]);
}

function refuseHttp1(): string {
  const body = JSON.stringify({ error: "too many connections; retry later" });
  return `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nretry-after: 1\r\nconnection: close\r\n\r\n${body}`;
}

/** Why a request's target or authority cannot be used (undefined: it can), as connect-node and the gateway will parse them. */
export function badTarget(req: Req): string | undefined {
  const target = req.url;
  if (!target || (!target.startsWith("/") && target !== "*")) return "malformed request target";
  const h2 = req.httpVersionMajor === 2;
  const authority = h2 ? ((req as http2.Http2ServerRequest).authority ?? req.headers.host) : req.headers.host;
  if (!authority) return "missing Host header";
  try {
    // Parsed once for the whole request: the pipeline routes on this parse (targetOf).
    targetOf(req);
    // connect-node builds the request URL from the authority and the path like this. With the
    // path valid (above), that URL fails only on the authority, so a connection's last good
    // authority (HTTP/1.1 keep-alive, HTTP/2 streams: the same Host on every request) is not
    // parsed again.
    const conn: object | undefined = h2 ? (req as http2.Http2ServerRequest).stream.session : req.socket;
    if (!conn || goodAuthority.get(conn) !== authority) {
      new URL(target.split("?", 2)[0]!, `http://${authority}`);
      if (conn) goodAuthority.set(conn, authority);
    }
  } catch {
    return "malformed request target or Host header";
  }
  return undefined;
}

/** Per connection: the authority whose URL last parsed (badTarget). */
const goodAuthority = new WeakMap<object, string>();

/** What the listener knows of one connection: its open requests/streams, how many need no key, how to close it. */
interface Conn {
  open: number;
  keyless: number;
  evict(): void;
}

export async function listen(o: ListenerOptions): Promise<Listener> {
  const keyless = o.unauthenticatedPaths ?? new Set<string>();
  const conns = new Map<net.Socket, Conn>();
  /** Counts a request or stream on its connection until it closes. */
  const count = (c: Conn | undefined, path: string | undefined, closes: { once(e: "close", f: () => void): unknown }): void => {
    if (!c) return;
    const free = keyless.has((path ?? "").split("?", 2)[0]!);
    c.open++;
    if (free) c.keyless++;
    closes.once("close", () => {
      c.open--;
      if (free) c.keyless--;
    });
  };
  /** Closes the oldest connection whose open streams all need no key (at least one); false if none. */
  const evictOne = (): boolean => {
    for (const [socket, c] of conns) {
      if (c.open === 0 || c.keyless !== c.open) continue;
      conns.delete(socket);
      o.limited("unauthenticated_evicted");
      c.evict();
      return true;
    }
    return false;
  };

  const dispatch = (req: Req, res: Res): void => {
    try {
      const problem = badTarget(req);
      if (problem) {
        o.limited("bad_target");
        if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
        if (String(req.headers["content-type"] ?? "").startsWith("application/grpc")) {
          res.writeHead(200, { "content-type": "application/grpc", "grpc-status": "3", "grpc-message": encodeURIComponent(problem) });
          res.end();
        } else sendJson(res, 400, { error: problem });
        return;
      }
      bodyDeadline(req, res);
      o.serve(req, res);
    } catch (err) {
      o.errors.caught("request", err, { method: req.method, path: String(req.url).slice(0, 256) });
      try {
        if (!res.headersSent && !res.destroyed) sendJson(res, 500, { error: "internal error" });
        else if (!res.destroyed) res.destroy();
      } catch {
        res.destroy();
      }
    }
  };

  /**
   * HTTP/2: a request's body must arrive within REQUEST_TIMEOUT_MS (HTTP/1.1 gets Node's own
   * requestTimeout). Streaming RPCs (PublishStream) are exempt: their body is the stream.
   */
  const bodyDeadline = (req: Req, res: Res): void => {
    if (req.httpVersionMajor !== 2) return;
    const stream = (req as http2.Http2ServerRequest).stream;
    if (stream.endAfterHeaders || o.streamingRequestPaths.has((req.url ?? "").split("?", 2)[0]!)) return;
    const timer = setTimeout(() => {
      const state = (stream as unknown as { _readableState?: { ended?: boolean } })._readableState;
      if (stream.destroyed || stream.readableEnded || state?.ended) return;
      o.limited("request_timeout");
      try {
        if (!res.headersSent) sendJson(res, 408, { error: `the request body did not arrive within ${o.requestTimeoutMs} ms` });
      } finally {
        stream.close(http2.constants.NGHTTP2_CANCEL);
      }
    }, o.requestTimeoutMs);
    res.once("close", () => clearTimeout(timer));
  };

  // HTTP/1.1: Node's own headers and request timeouts (408, then close) need its connection
  // tracking, which starts on 'listening'; this server never listens itself (the sockets are
  // handed to it below), so that event is emitted once by hand.
  const h1 = http.createServer(
    {
      requestTimeout: o.requestTimeoutMs,
      headersTimeout: o.requestTimeoutMs,
      keepAliveTimeout: o.idleTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(o.requestTimeoutMs / 4))),
    },
    dispatch,
  );
  h1.emit("listening");
  h1.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    // A response in progress (an SSE stream) is not idle; keep-alive re-arms after it (Node).
    req.socket.setTimeout(0);
    count(conns.get(req.socket), req.url, res);
  });

  const h2 = http2.createServer({ settings: { maxConcurrentStreams: o.maxConcurrentStreams } }, dispatch);
  const sessions = new Set<http2.ServerHttp2Session>();
  /** The connection being handed to the HTTP/2 server (it emits 'session' synchronously). */
  let accepting: Conn | undefined;
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    const conn = accepting;
    accepting = undefined;
    if (conn) {
      conn.evict = () => {
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, 0, Buffer.from("connection closed for a new one: it held only unauthenticated streams"));
        setImmediate(() => session.destroy());
      };
    }
    // The client's preface and SETTINGS must arrive in time.
    const preface = setTimeout(() => {
      o.limited("preface");
      session.destroy();
    }, o.requestTimeoutMs);
    session.once("remoteSettings", () => clearTimeout(preface));
    // Idle: no stream open for IDLE_TIMEOUT_MS (a stream open for a subscription keeps it).
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      idle = setTimeout(() => {
        o.limited("idle");
        session.close();
        setTimeout(() => session.destroy(), 1000).unref();
      }, o.idleTimeoutMs);
    };
    armIdle();
    session.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      count(conn, headers[":path"], stream);
      open++;
      clearTimeout(idle);
      stream.once("close", () => {
        if (--open === 0 && !session.closed && !session.destroyed) armIdle();
      });
    });
    session.once("close", () => {
      sessions.delete(session);
      clearTimeout(idle);
      clearTimeout(preface);
    });
    session.on("error", () => session.destroy());
  });

  const server = net.createServer((socket) => {
    socket.on("error", () => socket.destroy());
    if (conns.size >= o.maxConnections && !evictOne()) {
      // Full: tell the client in its protocol, then close (1 s to say what it is).
      o.limited("connections");
      socket.setTimeout(1000, () => socket.destroy());
      socket.once("data", (first: Buffer) => socket.end(isH2(first) ? goAway("too many connections") : refuseHttp1()));
      return;
    }
    const conn: Conn = { open: 0, keyless: 0, evict: () => socket.destroy() };
    conns.set(socket, conn);
    socket.on("close", () => conns.delete(socket));
    // A connection that says nothing is closed after REQUEST_TIMEOUT_MS.
    socket.setTimeout(o.requestTimeoutMs, () => socket.destroy());
    socket.once("data", (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      // The HTTP/2 session reads the socket's handle itself and takes the buffered (unshifted)
      // bytes first; resuming the socket here would steal its data. HTTP/1.1 reads via the stream.
      if (isH2(first)) {
        socket.setTimeout(0);
        accepting = conn;
        h2.emit("connection", socket);
        accepting = undefined;
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
  // Accept errors (EMFILE when out of file descriptors, say) must not take the process down.
  const onServerError = (err: unknown): void => o.errors.caught("socket", err, { during: "accept" });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    // A deep accept queue: bursts of new connections (HTTP/1.1 clients open one per call in flight)
    // wait for accept() instead of being reset (the kernel caps it at net.core.somaxconn).
    server.listen({ port: o.port, host: o.host, backlog: 4096 }, () => {
      server.off("error", reject);
      server.on("error", onServerError);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;
  return {
    host: address.address,
    port: address.port,
    url: `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`,
    connections: () => conns.size,
    stop() {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      h1.closeIdleConnections();
      // Stops Node's connection checks (the server itself was never listening).
      h1.close(() => {});
      return stopped;
    },
    destroyAll() {
      for (const s of conns.keys()) s.destroy();
    },
  };
}
