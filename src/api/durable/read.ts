/**
 * Reads: catch-up, long-poll and SSE.
 */
import type { DurableMeta } from "../../store/durable.js";
import type { StoredEvent } from "../../core/types.js";
import type { DurableContext } from "./context.js";
import { body } from "./messages.js";
import { DsError, H, type DsReply, type DsRequest } from "./protocol.js";
import { isJson, isTextual, OFFSET, parseOffset, responseCursor, sseData } from "./wire.js";

export function durableReads(ctx: DurableContext) {
  const { log, config, logOf, nowMs, target, touch, tailOf, readAfter, offsetOf } = ctx;

  // ---------------------------------------------------------------- reads: catch-up, long-poll, SSE

  function readParams(r: DsRequest): { offset: string | undefined; live: string | undefined } {
    const all = r.query.getAll("offset");
    if (all.length > 1) throw new DsError(400, "one offset parameter only");
    const offset = all[0];
    if (offset === "") throw new DsError(400, "empty offset");
    const live = r.query.get("live") ?? undefined;
    if ((live === "long-poll" || live === "sse") && offset === undefined) throw new DsError(400, `live=${live} needs an offset`);
    return { offset, live };
  }

  function resolveStart(m: DurableMeta, offset: string | undefined, tail: number): number {
    if (offset === undefined) return 0;
    let p;
    try {
      p = parseOffset(offset, m);
    } catch (err) {
      throw new DsError(400, err instanceof Error ? err.message : "malformed offset");
    }
    // An offset beyond the tail reads from the tail (as the reference server does), so the next
    // offset answered is a real one, never an echo of a position the stream has not reached.
    return p.kind === "start" ? 0 : p.kind === "now" ? tail : Math.min(p.position, tail);
  }

  async function read(r: DsRequest): Promise<DsReply> {
    const { offset, live: mode } = readParams(r);
    if (offset !== undefined && offset !== "-1" && offset !== "now" && !OFFSET.test(offset)) throw new DsError(400, "malformed offset");
    const m = await target(r);
    await touch(m);
    const tail = await tailOf(m);
    const start = resolveStart(m, offset, tail.position);
    if (mode === "sse") return sse(r, m, start);
    if (offset === "now" && mode !== "long-poll") {
      const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, tail.position), [H.upToDate]: "true", "cache-control": "no-store" };
      if (tail.closed) headers[H.closed] = "true";
      return { status: 200, headers, body: isJson(m.contentType) ? "[]" : "" };
    }
    let page = await readAfter(m, start);
    if (mode === "long-poll" && page.events.length === 0) {
      const waited = await longPoll(r, m, start);
      if (!waited) {
        const now = await tailOf(m);
        const headers: Record<string, string> = { [H.offset]: offsetOf(m, start), [H.upToDate]: "true" };
        if (now.closed) headers[H.closed] = "true";
        else headers[H.cursor] = responseCursor(r.query.get("cursor"), nowMs());
        return { status: 204, headers };
      }
      page = waited;
    }
    const after = await tailOf(m);
    const atTail = page.upToDate && page.next >= after.position;
    const closed = after.closed && atTail;
    const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, page.next) };
    if (page.upToDate) headers[H.upToDate] = "true";
    if (closed) headers[H.closed] = "true";
    if (mode === "long-poll" && !closed) headers[H.cursor] = responseCursor(r.query.get("cursor"), nowMs());
    // Data before the tail never changes: cacheable. A read that reached the tail is not.
    headers["cache-control"] = page.upToDate ? "no-cache" : "private, max-age=60, stale-while-revalidate=300";
    const etag = `"${m.inc}:${offset ?? "-1"}:${offsetOf(m, page.next)}${closed ? ":c" : ""}"`;
    headers["etag"] = etag;
    if (r.header("if-none-match") === etag) return { status: 304, headers: { etag } };
    return { status: 200, headers, body: body(m, page.events) };
  }

  /** Waits for data after `start`; undefined on timeout or when the stream is (or becomes) closed there. */
  async function longPoll(r: DsRequest, m: DurableMeta, start: number): Promise<{ events: StoredEvent[]; next: number; upToDate: boolean } | undefined> {
    const id = logOf(m);
    const deadline = nowMs() + config.longPollTimeoutMs;
    while (!r.signal.aborted) {
      const w = log.watch(id);
      const page = await readAfter(m, start);
      if (page.events.length > 0) {
        w.cancel();
        return page;
      }
      const tail = await tailOf(m);
      const left = deadline - nowMs();
      if (tail.closed || left <= 0) {
        w.cancel();
        return undefined;
      }
      // Woken by local appends and closes at once; another instance's close is seen within a second.
      await w.wait(Math.min(left, 1000));
    }
    return undefined;
  }

  function control(m: DurableMeta, position: number, cursorIn: string | null, upToDate: boolean, closed: boolean): string {
    const c: Record<string, unknown> = { streamNextOffset: offsetOf(m, position) };
    if (closed) {
      c["streamClosed"] = true;
      c["upToDate"] = true;
    } else {
      c["streamCursor"] = responseCursor(cursorIn, nowMs());
      if (upToDate) c["upToDate"] = true;
    }
    return `event: control\n${sseData(JSON.stringify(c))}\n\n`;
  }

  function sse(r: DsRequest, m: DurableMeta, start: number): DsReply {
    const base64 = !isTextual(m.contentType);
    const headers: Record<string, string> = { "content-type": "text/event-stream", "cache-control": "no-cache" };
    if (base64) headers[H.sseEncoding] = "base64";
    const id = logOf(m);
    const cursorIn = r.query.get("cursor");
    async function* frames(): AsyncGenerator<string> {
      // DURABLE_SSE_MAX_MS=0: never ended by age (for clients that do not reconnect).
      const end = config.sseMaxMs > 0 ? nowMs() + config.sseMaxMs : Number.POSITIVE_INFINITY;
      let position = start;
      let first = true;
      while (!r.signal.aborted) {
        const w = log.watch(id);
        let waited = false;
        try {
          const page = await readAfter(m, position);
          const tail = await tailOf(m);
          const atTail = page.upToDate && page.next >= tail.position;
          const closed = tail.closed && atTail;
          if (page.events.length > 0) {
            const b = body(m, page.events);
            const payload = base64 ? b.toString("base64") : b.toString("utf8");
            yield `event: data\n${sseData(payload)}\n\n` + control(m, page.next, cursorIn, page.upToDate, closed);
          } else if (first || closed) {
            yield control(m, page.next, cursorIn, page.upToDate, closed);
          }
          first = false;
          position = page.next;
          if (closed) return;
          if (!page.upToDate) continue;
          const left = end - nowMs();
          if (left <= 0) return;
          waited = true;
          const woken = await w.wait(Math.min(left, config.longPollTimeoutMs));
          if (!woken && !r.signal.aborted) {
            // Idle: a control event keeps the connection (and proxies) alive and repeats the position.
            const t = await tailOf(m);
            const closedNow = t.closed && position >= t.position;
            yield control(m, position, cursorIn, true, closedNow);
            if (closedNow) return;
          }
        } finally {
          if (!waited) w.cancel();
        }
      }
    }
    return { status: 200, headers, sse: frames() };
  }
  return { read };
}
