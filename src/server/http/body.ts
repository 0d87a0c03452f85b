/** Reading a request body whole, bounded in bytes and in time. */
import { HttpError } from "../../api/errors.js";
import { busyError, INFLIGHT, type InflightCounter } from "../limits.js";
import type { Req } from "../sse.js";

/**
 * Reads the whole body (at most maxBytes, within timeoutMs): 413 / 408 HttpErrors otherwise.
 * Chunks come from `data` events with one timer per request (an async iterator costs a promise,
 * an end-of-stream watcher and a race per chunk); they count against the instance's in-flight
 * budget through the counter the listener put on the request (src/server/limits.ts).
 */
export function readBody(req: Req, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(new HttpError(413, `request body exceeds ${maxBytes} bytes`));
  const inflight = (req as unknown as Record<symbol, InflightCounter | undefined>)[INFLIGHT];
  // The client went away before the end (what the stream iterator reports as a premature close).
  const gone = (): Error => Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
  if (req.destroyed) return Promise.reject(gone());
  return new Promise<Buffer>((resolve, reject) => {
    // One buffer of at most maxBytes: no growing strings.
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err: unknown, body?: Buffer): void => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      if (err === undefined) return resolve(body!);
      // Stop reading; the reply closes the connection (HTTP/1.1) or the stream (HTTP/2).
      req.pause();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      if (inflight && !inflight.take(chunk.length)) return done(busyError(inflight.limit));
      size += chunk.length;
      if (size > maxBytes) return done(new HttpError(413, `request body exceeds ${maxBytes} bytes`));
      chunks.push(chunk);
    };
    const onEnd = (): void => done(undefined, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onError = (err: Error): void => done(err);
    const onClose = (): void => done(gone());
    const timer = setTimeout(() => done(new HttpError(408, `the request body did not arrive within ${timeoutMs} ms`)), timeoutMs);
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}
