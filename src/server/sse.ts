import type { ServerResponse } from "node:http";
import type { connectNodeAdapter } from "@connectrpc/connect-node";

type NodeHandler = ReturnType<typeof connectNodeAdapter>;
/** The request and response types connect-node hands to its fallback (HTTP/1.1 or HTTP/2). */
export type Req = Parameters<NodeHandler>[0];
export type Res = Parameters<NodeHandler>[1];

/** One server-sent event. Lines of `event`/`id` are kept to one line; `data` may span several. */
export interface SseMessage {
  event?: string;
  id?: string | number;
  data: string;
}

export function formatSse(m: SseMessage): string {
  let out = "";
  if (m.event !== undefined) out += `event: ${m.event.replace(/[\r\n]+/g, " ")}\n`;
  if (m.id !== undefined) out += `id: ${String(m.id).replace(/[\r\n]+/g, " ")}\n`;
  for (const line of m.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return out + "\n";
}

/** Characters of SSE frames joined into one write at most (a larger frame is written alone). */
export const SSE_WRITE_BYTES = 64 * 1024;

export interface SseOptions {
  /** Sent first, once the stream is open. */
  hello?: SseMessage;
  /** What to write when the stream has been idle for keepaliveMs (a comment line or an event). */
  keepalive: string;
  keepaliveMs: number;
  /**
   * The last event to send when the source fails (a revoked key, a store outage): the stream then
   * ends with it, in the route's dialect, and the error is passed on. Without it the stream just ends.
   */
  finalEvent?: (err: unknown) => SseMessage;
}

/**
 * Streams `source` as text/event-stream. Each batch is written with one write. The source is
 * stopped (via `abort`) when the client goes away; write back-pressure pauses the source.
 */
export async function streamSse(req: Req, res: Res, abort: AbortController, source: AsyncIterable<SseMessage[]>, opts: SseOptions): Promise<void> {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
    ...(req.httpVersionMajor === 1 ? { connection: "keep-alive" } : {}),
  });
  const onClose = (): void => abort.abort();
  req.on("close", onClose);
  res.on("close", onClose);
  let last = Date.now();
  // A write never throws out of here and never waits for a connection that is gone: the client
  // leaving (or the stream being cut) aborts, and every pending write resolves.
  const write = (chunk: string): Promise<void> => {
    last = Date.now();
    if (abort.signal.aborted || res.destroyed || res.writableEnded) return Promise.resolve();
    return new Promise((resolve) => {
      let ok: boolean;
      try {
        ok = (res as ServerResponse).write(chunk);
      } catch {
        abort.abort();
        ok = true;
      }
      if (ok) resolve();
      else {
        const done = (): void => {
          res.off("drain", done);
          res.off("close", done);
          abort.signal.removeEventListener("abort", done);
          resolve();
        };
        res.on("drain", done);
        res.on("close", done);
        abort.signal.addEventListener("abort", done, { once: true });
      }
    });
  };
  const timer = setInterval(() => {
    if (Date.now() - last >= opts.keepaliveMs) void write(opts.keepalive);
  }, Math.max(50, Math.floor(opts.keepaliveMs / 3)));
  try {
    // Flush the headers (and the greeting) at once so clients see the stream is open.
    await write(opts.hello ? formatSse(opts.hello) : ": connected\n\n");
    for await (const batch of source) {
      if (abort.signal.aborted) break;
      // Frames are joined into writes of about SSE_WRITE_BYTES, never into one string for a
      // whole batch (a batch of large events would pass V8's string limit).
      let chunk = "";
      for (const m of batch) {
        const frame = formatSse(m);
        if (chunk.length > 0 && chunk.length + frame.length > SSE_WRITE_BYTES) {
          await write(chunk);
          chunk = "";
          if (abort.signal.aborted) break;
        }
        chunk += frame;
      }
      if (chunk.length > 0 && !abort.signal.aborted) await write(chunk);
    }
  } catch (err) {
    if (opts.finalEvent) await write(formatSse(opts.finalEvent(err)));
    throw err;
  } finally {
    clearInterval(timer);
    req.off("close", onClose);
    if (!res.writableEnded && !res.destroyed) res.end();
  }
}
