/** Reading a request body whole, bounded in bytes and in time. */
import { HttpError } from "../../api/errors.js";
import type { Req } from "../sse.js";

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
