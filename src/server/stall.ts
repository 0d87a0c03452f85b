import http2 from "node:http2";
import type { Req, Res } from "./sse.js";

export interface StallOptions {
  /** A response paused this long (its connection takes no data while the server has some) is cut off; 0: never. */
  stallTimeoutMs: number;
  /** A response holding more unsent bytes than this in the server is cut off at once. */
  backlogBytes: number;
  /** Told about each response cut off. */
  onCut?: (reason: "stalled" | "backlog", req: Req, unsentBytes: number) => void;
}

interface Watched {
  req: Req;
  res: Res;
  /** When the response last started waiting for 'drain' (undefined: it is not waiting). */
  since: number | undefined;
}

/**
 * Bounds what a slow reader costs the server. Subscriptions are pulled, not pushed: the next
 * batch is read from the log only after the previous response was taken by the connection, so a
 * reader that stops is paused at the transport's high-water mark (16 KiB per stream) and later
 * read from the store again; nothing piles up for it in the log. This watch ends the pause: a
 * response that has waited for 'drain' longer than `stallTimeoutMs`, or holds more than
 * `backlogBytes` unsent, is cut off. HTTP/2 streams are reset with ENHANCE_YOUR_CALM (the gRPC spec
 * maps it to `resource_exhausted`; connect-node 2.1 reports `internal` naming the code); HTTP/1.1
 * connections are closed. Either way the subscription ends and the client may resume from its
 * last sequence.
 */
export class StallWatch {
  readonly #opts: StallOptions;
  readonly #open = new Set<Watched>();
  readonly #timer: NodeJS.Timeout | undefined;

  constructor(opts: StallOptions) {
    this.#opts = opts;
    if (opts.stallTimeoutMs > 0 || opts.backlogBytes > 0) {
      this.#timer = setInterval(() => this.check(performance.now()), Math.max(20, Math.min(1000, Math.floor((opts.stallTimeoutMs || 4000) / 4))));
      this.#timer.unref();
    }
  }

  /** Watches a response until it closes. */
  track(req: Req, res: Res): void {
    if (!this.#timer) return;
    const w: Watched = { req, res, since: undefined };
    this.#open.add(w);
    // A reader that is slow but reading drains now and then: each drain restarts the clock.
    const drained = (): void => {
      w.since = undefined;
    };
    res.on("drain", drained);
    res.once("close", () => {
      this.#open.delete(w);
      res.off("drain", drained);
    });
  }

  /** One round of the watch (run by the timer; exposed for tests). */
  check(now: number): void {
    const { stallTimeoutMs, backlogBytes } = this.#opts;
    for (const w of this.#open) {
      const out = outgoing(w.res);
      if (!out || out.destroyed) continue;
      const unsent = out.writableLength;
      if (backlogBytes > 0 && unsent > backlogBytes) {
        this.#cut(w, "backlog", unsent);
      } else if (!out.writableNeedDrain) {
        w.since = undefined;
      } else if (w.since === undefined) {
        w.since = now;
      } else if (stallTimeoutMs > 0 && now - w.since >= stallTimeoutMs) {
        this.#cut(w, "stalled", unsent);
      }
    }
  }

  #cut(w: Watched, reason: "stalled" | "backlog", unsent: number): void {
    this.#open.delete(w);
    this.#opts.onCut?.(reason, w.req, unsent);
    const stream = (w.res as { stream?: http2.ServerHttp2Stream }).stream;
    if (stream) stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    else w.res.destroy();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#open.clear();
  }
}

/**
 * Wakes whatever waits for 'drain' on a response whose connection has closed. connect-node's
 * writer waits for 'drain' or 'error' only, and neither comes when the stream closes while it
 * waits, so a subscription paused at that moment (its client vanished, or was cut off above)
 * would never be resumed to see its aborted signal and end: its log subscription would leak.
 */
export function releaseWriters(res: Res): void {
  if (res.listenerCount("drain") > 0) res.emit("drain");
}

/** The writable that buffers a response's unsent bytes: the HTTP/2 stream, or the HTTP/1.1 response. */
function outgoing(res: Res): { writableLength: number; writableNeedDrain: boolean; destroyed: boolean } | undefined {
  const stream = (res as { stream?: http2.ServerHttp2Stream }).stream;
  return stream ?? (res as unknown as { writableLength: number; writableNeedDrain: boolean; destroyed: boolean });
}
