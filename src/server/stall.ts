import http2 from "node:http2";
import type { Req, Res } from "./sse.js";

export type CutReason = "stalled" | "backlog" | "budget";

export interface StallOptions {
  /** A response paused this long (its connection takes no data while the server has some) is cut off; 0: never. */
  stallTimeoutMs: number;
  /** A response holding more unsent bytes than this in the server is cut off at once. */
  backlogBytes: number;
  /**
   * Unsent response bytes the whole instance may hold (MAX_UNSENT_BYTES), all responses on all
   * surfaces together; past it the slowest readers are cut until it holds again. 0: no budget.
   */
  maxUnsentBytes?: number;
  /** Told about each response cut off. */
  onCut?: (reason: CutReason, req: Req, unsentBytes: number) => void;
}

interface Watched {
  req: Req;
  res: Res;
  /** When the response last started waiting for 'drain' (undefined: it is not waiting). */
  since: number | undefined;
  /** Its unsent bytes when last looked at (what it adds to the instance's total). */
  unsent: number;
  /** When it last sent something, or had nothing to send: the reader that waited longest is the slowest. */
  progressAt: number;
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
 *
 * It also keeps the instance's budget of unsent bytes (MAX_UNSENT_BYTES): every write of every
 * tracked response updates the instance's total (from the writable's own count of what it holds,
 * so it is exact whoever writes); past the budget, the responses that have gone longest without
 * sending anything (then: hold the most) are cut the same way, until the total is within it. So
 * bytes queued to clients are bounded for the whole instance, not only per response: many
 * responses written to connections that take nothing (an HTTP/2 flow-control window of zero) can
 * no longer grow the process without bound. A response cut is aborted (reset or closed), never
 * ended as if complete.
 */
export class StallWatch {
  readonly #opts: StallOptions;
  readonly #open = new Set<Watched>();
  readonly #timer: NodeJS.Timeout | undefined;
  /** Unsent bytes of all tracked responses, as last looked at. */
  #unsent = 0;

  constructor(opts: StallOptions) {
    this.#opts = opts;
    if (opts.stallTimeoutMs > 0 || opts.backlogBytes > 0 || (opts.maxUnsentBytes ?? 0) > 0) {
      this.#timer = setInterval(() => this.check(performance.now()), Math.max(20, Math.min(1000, Math.floor((opts.stallTimeoutMs || 4000) / 4))));
      this.#timer.unref();
    }
  }

  /** Unsent bytes the instance holds for its clients (as last looked at). */
  get unsentBytes(): number {
    return this.#unsent;
  }

  /** Watches a response until it closes. */
  track(req: Req, res: Res): void {
    if (!this.#timer) return;
    const w: Watched = { req, res, since: undefined, unsent: 0, progressAt: performance.now() };
    this.#open.add(w);
    // A reader that is slow but reading drains now and then: each drain restarts the clock.
    const drained = (): void => {
      w.since = undefined;
      this.#look(w, performance.now());
    };
    res.on("drain", drained);
    if ((this.#opts.maxUnsentBytes ?? 0) > 0) {
      // Every write counts at once (a burst of large responses is over the budget before any timer runs).
      const write = res.write;
      const end = res.end;
      const self = this;
      res.write = function (this: Res, ...args: unknown[]) {
        const ok = (write as (...a: unknown[]) => boolean).apply(this, args);
        self.#wrote(w);
        return ok;
      } as typeof res.write;
      res.end = function (this: Res, ...args: unknown[]) {
        const r = (end as (...a: unknown[]) => Res).apply(this, args);
        self.#wrote(w);
        return r;
      } as typeof res.end;
    }
    res.once("close", () => {
      if (this.#open.delete(w)) this.#unsent -= w.unsent;
      w.unsent = 0;
      res.off("drain", drained);
    });
  }

  /** Updates a response's share of the total from its writable; returns what it holds unsent. */
  #look(w: Watched, now: number): number {
    const out = outgoing(w.res);
    const unsent = !out || out.destroyed ? 0 : out.writableLength;
    if (unsent < w.unsent || unsent === 0) w.progressAt = now;
    this.#unsent += unsent - w.unsent;
    w.unsent = unsent;
    return unsent;
  }

  #wrote(w: Watched): void {
    if (!this.#open.has(w)) return;
    this.#look(w, performance.now());
    if (this.#unsent > (this.#opts.maxUnsentBytes ?? 0)) this.#keepBudget(performance.now());
  }

  /**
   * Cuts the slowest readers until the instance's unsent bytes are within MAX_UNSENT_BYTES: first
   * the responses that have gone longest without sending, then those holding the most.
   */
  #keepBudget(now: number): void {
    const max = this.#opts.maxUnsentBytes ?? 0;
    if (max <= 0) return;
    // The total may be stale for responses that drained since they were last looked at.
    for (const w of this.#open) this.#look(w, now);
    if (this.#unsent <= max) return;
    const slowest = [...this.#open].filter((w) => w.unsent > 0).sort((a, b) => a.progressAt - b.progressAt || b.unsent - a.unsent);
    for (const w of slowest) {
      if (this.#unsent <= max) break;
      this.#cut(w, "budget", w.unsent);
    }
  }

  /** One round of the watch (run by the timer; exposed for tests). */
  check(now: number): void {
    const { stallTimeoutMs, backlogBytes } = this.#opts;
    this.#keepBudget(now);
    for (const w of this.#open) {
      const out = outgoing(w.res);
      if (!out || out.destroyed) continue;
      const unsent = this.#look(w, now);
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

  #cut(w: Watched, reason: CutReason, unsent: number): void {
    if (!this.#open.delete(w)) return;
    this.#unsent -= w.unsent;
    w.unsent = 0;
    this.#opts.onCut?.(reason, w.req, unsent);
    const stream = (w.res as { stream?: http2.ServerHttp2Stream }).stream;
    if (stream) stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    else w.res.destroy();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#open.clear();
    this.#unsent = 0;
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
