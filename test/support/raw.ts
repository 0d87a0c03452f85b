/** Raw HTTP/1.1 and HTTP/2 clients for tests that send what well-behaved clients never would. */
import net from "node:net";
import http2 from "node:http2";
import type { App } from "../../src/server/app.js";

export interface RawAnswer {
  /** Everything the server sent before closing or before the timeout. */
  text: string;
  /** The status of the first response line (0 when there was none). */
  status: number;
  /** True when the server closed the connection (false: the timeout ended the wait). */
  closed: boolean;
  ms: number;
}

/**
 * Writes `bytes` on a fresh connection and collects the answer until the server closes, or the
 * first response is complete (by content-length), or `timeoutMs` passes.
 */
export function rawHttp(app: App, bytes: string | Buffer, timeoutMs = 3000): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const sock = net.connect(app.port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let settled = false;
    const done = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      const text = buf.toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, closed, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on("connect", () => sock.write(bytes));
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const text = buf.toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end));
      if (end >= 0 && len && buf.length >= end + 4 + Number(len[1])) done(false);
    });
    sock.on("close", () => done(true));
    sock.on("error", () => done(true));
  });
}

export interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: string;
  /** RST_STREAM code when the server reset the stream. */
  rstCode: number;
}

/** One request on an existing HTTP/2 session; resolves when the stream closes. */
export function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string | Buffer, timeoutMs = 5000): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    const out: H2Answer = { status: 0, headers: {}, trailers: {}, body: "", rstCode: 0 };
    const timer = setTimeout(() => {
      req.close();
      reject(new Error(`h2 request ${String(headers[":path"])} not answered in ${timeoutMs} ms`));
    }, timeoutMs);
    req.on("response", (h) => {
      out.headers = h;
      out.status = Number(h[":status"]);
    });
    req.on("trailers", (t) => (out.trailers = t));
    req.setEncoding("utf8");
    req.on("data", (d: string) => (out.body += d));
    req.on("error", () => {});
    req.on("close", () => {
      clearTimeout(timer);
      out.rstCode = req.rstCode ?? 0;
      resolve(out);
    });
    if (body !== undefined) req.end(body);
  });
}

/** Resolves when `fn` returns true, checked every 20 ms; fails after timeoutMs. */
export async function eventually(fn: () => boolean | Promise<boolean>, timeoutMs = 5000, what: string | (() => string) = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`${typeof what === "function" ? what() : what} not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A normal request is still answered quickly: GET /healthz within `ms` (default 1 s). */
export async function stillServing(app: App, ms = 1000): Promise<number> {
  const t0 = Date.now();
  const res = await fetch(`${app.url}/healthz`, { signal: AbortSignal.timeout(ms) });
  if (res.status !== 200) throw new Error(`healthz answered ${res.status}`);
  await res.text();
  return Date.now() - t0;
}

/** One sample of the service's /metrics, by its exact series (`name` or `name{label="v"}`); 0 when absent. */
export async function metricValue(app: App, series: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
