/**
 * Reads: catch-up, long-poll and SSE.
 */
import type { DurableMeta } from "../../store/durable.js";
import type { StoredEvent } from "../../core/types.js";
import type { DurableContext } from "./context.js";
import { body, bodyWriter } from "./messages.js";
import { DsError, H, type DsReply, type DsRequest } from "./protocol.js";
import { isJson, isTextual, OFFSET, parseOffset, responseCursor, sseData } from "./wire.js";

/** How long a live reader waits before it looks whether another instance closed the stream. */
const CLOSE_CHECK_MS = 1000;

export function durableReads(ctx: DurableContext) {
  const { log, config, logOf, nowMs, target, touch, tailOf, sharedTail, readAfter, offsetOf, closeReasonOf, passTrailing } = ctx;

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
    if (mode !== "long-poll") return catchUp(r, m, offset, start, tail);
    let page = await readAfter(m, start);
    if (page.events.length === 0) {
      const waited = await longPoll(r, m, start);
      if ("at" in waited) {
        const now = await tailOf(m);
        const headers: Record<string, string> = { [H.offset]: offsetOf(m, waited.at), [H.upToDate]: "true" };
        if (now.closed && waited.at >= now.position) {
          headers[H.closed] = "true";
          const reason = await closeReasonOf(m);
          if (reason !== undefined) headers[H.closeReason] = reason;
        } else headers[H.cursor] = responseCursor(r.query.get("cursor"), nowMs());
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
    const reason = closed ? await closeReasonOf(m) : undefined;
    if (reason !== undefined) headers[H.closeReason] = reason;
    if (!closed) headers[H.cursor] = responseCursor(r.query.get("cursor"), nowMs());
    // Data before the tail never changes: cacheable. A read that reached the tail is not.
    headers["cache-control"] = page.upToDate ? "no-cache" : "private, max-age=60, stale-while-revalidate=300";
    const etag = `"${m.inc}:${offset ?? "-1"}:${offsetOf(m, page.next)}${closed ? ":c" : ""}"`;
    headers["etag"] = etag;
    if (r.header("if-none-match") === etag) return { status: 304, headers: { etag } };
    return { status: 200, headers, body: body(m, page.events) };
  }

  /**
   * A catch-up read (no live mode) answers everything from `start` to the tail as it was when the
   * request started, in one response, as the reference server does: clients make one request for
   * it (stream({ live: false }), StreamDB's preload, TanStack AI's snapshot). An answer of one page
   * goes as one body; a longer one is streamed page by page, each page (about readMaxBytes) read
   * only once the connection took the one before (the route waits for 'drain'), so what the server
   * holds for it stays bounded. Once the headers are out, a read that cannot finish (a store error,
   * a hole that does not resolve, the client gone) throws, and the route aborts the response rather
   * than end it short as if complete.
   */
  async function catchUp(r: DsRequest, m: DurableMeta, offset: string | undefined, start: number, tail: { position: number; closed: boolean }): Promise<DsReply> {
    const end = tail.position;
    const first = await pageUpTo(r, m, start, end);
    const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, end), [H.upToDate]: "true", "cache-control": "no-cache" };
    if (tail.closed) headers[H.closed] = "true";
    if (tail.closed && m.closeReason !== undefined) headers[H.closeReason] = m.closeReason;
    const etag = `"${m.inc}:${offset ?? "-1"}:${offsetOf(m, end)}${tail.closed ? ":c" : ""}"`;
    headers["etag"] = etag;
    if (r.header("if-none-match") === etag) return { status: 304, headers: { etag } };
    if (first.next >= end) return { status: 200, headers, body: body(m, first.events) };
    const writer = bodyWriter(m);
    async function* pages(): AsyncGenerator<Uint8Array> {
      yield writer.part(first.events);
      for (let at = first.next; at < end; ) {
        const page = await pageUpTo(r, m, at, end);
        at = page.next;
        yield writer.part(page.events);
      }
      yield writer.end();
    }
    return { status: 200, headers, stream: pages() };
  }

  /**
   * The page after `position`, without anything past `end`. Sequences up to `end` were all taken
   * when the request started, so a page that cannot advance stands at an append still in flight
   * (or one whose writer died, which the log claims as void after HOLE_TIMEOUT_MS): it waits for
   * that, up to longPollTimeoutMs, then fails.
   */
  async function pageUpTo(r: DsRequest, m: DurableMeta, position: number, end: number): Promise<{ events: StoredEvent[]; next: number }> {
    const deadline = nowMs() + config.longPollTimeoutMs;
    for (;;) {
      const w = log.watch(logOf(m));
      let waited = false;
      try {
        const page = await readAfter(m, position);
        const next = Math.min(page.next, end);
        if (next > position || position >= end) return { events: page.events.filter((e) => e.seq - m.base <= end), next };
        if (r.signal.aborted) throw new DsError(499, "the client went away");
        if (await passTrailing(m, position, end)) continue;
        if (nowMs() >= deadline) throw new Error(`the stream's data up to position ${end} did not become readable in ${config.longPollTimeoutMs} ms`);
        waited = true;
        await w.wait(Math.min(250, deadline - nowMs()));
      } finally {
        if (!waited) w.cancel();
      }
    }
  }

  /**
   * Waits for data after `start`. Answers the page with data, or (timeout, or the stream closed
   * right there) the position reached without any: past `start` when only void sequences (an
   * append that failed, a claimed hole) lay between it and the tail.
   */
  async function longPoll(r: DsRequest, m: DurableMeta, start: number): Promise<{ events: StoredEvent[]; next: number; upToDate: boolean } | { at: number }> {
    const id = logOf(m);
    const deadline = nowMs() + config.longPollTimeoutMs;
    let at = start;
    while (!r.signal.aborted) {
      const w = log.watch(id);
      const page = await readAfter(m, at);
      if (page.events.length > 0) {
        w.cancel();
        return page;
      }
      at = page.next;
      const tail = await tailOf(m);
      const left = deadline - nowMs();
      // Closed *here* only when nothing is left before the close: an append made just before it
      // (perhaps on another instance, not readable a moment ago) is still to be read.
      if ((tail.closed && at >= tail.position) || left <= 0) {
        w.cancel();
        return { at };
      }
      if (tail.closed && (await passTrailing(m, at, tail.position))) {
        w.cancel();
        continue;
      }
      // Woken by local appends and closes at once; another instance's close is seen within a second.
      await w.wait(Math.min(left, 1000));
    }
    return { at };
  }


  function control(m: DurableMeta, position: number, cursorIn: string | null, upToDate: boolean, closed: boolean, closeReason?: string): string {
    const c: Record<string, unknown> = { streamNextOffset: offsetOf(m, position) };
    if (closed) {
      c["streamClosed"] = true;
      c["upToDate"] = true;
      if (closeReason !== undefined) c["streamCloseReason"] = closeReason;
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
      let lastFrame = nowMs();
      let read = true;
      /** The watch for the next round, when taken before a look at the tail (see below). */
      let next: ReturnType<typeof log.watch> | undefined;
      try {
        while (!r.signal.aborted) {
          const w = next ?? log.watch(id);
          next = undefined;
          let waited = false;
          try {
            if (read) {
              const page = await readAfter(m, position);
              const tail = await tailOf(m);
              const atTail = page.upToDate && page.next >= tail.position;
              const closed = tail.closed && atTail;
              const reason = closed ? await closeReasonOf(m) : undefined;
              if (page.events.length > 0) {
                const b = body(m, page.events);
                const payload = base64 ? b.toString("base64") : b.toString("utf8");
                yield `event: data\n${sseData(payload)}\n\n` + control(m, page.next, cursorIn, page.upToDate, closed, reason);
                lastFrame = nowMs();
              } else if (first || closed) {
                yield control(m, page.next, cursorIn, page.upToDate, closed, reason);
                lastFrame = nowMs();
              }
              first = false;
              const advanced = page.next > position;
              position = page.next;
              if (closed) return;
              if (tail.closed && !advanced && (await passTrailing(m, position, tail.position))) continue;
              // More to read now; a page that could not advance stands at an append in flight: wait for it.
              if (!page.upToDate && advanced) continue;
            }
            const left = end - nowMs();
            if (left <= 0) return;
            waited = true;
            read = true;
            if ((await w.wait(Math.min(left, CLOSE_CHECK_MS))) || r.signal.aborted) continue;
            // Not woken for a second. Appends anywhere wake this wait, but a close made on another
            // instance does not: look at the tail (one look per stream and second on this instance,
            // shared by its readers), so every reader sees a stop from anywhere within about a second.
            // The next round's watch is taken before the look: an append or close here while the
            // look is in flight (or after the shared look was taken) wakes that round's wait, where
            // with a watch taken after the look it would wake nobody and wait for the next look.
            next = log.watch(id);
            const t = await sharedTail(m);
            if (t.closed || t.position > position) continue;
            read = false;
            if (nowMs() - lastFrame >= config.longPollTimeoutMs) {
              // Idle: a control event keeps the connection (and proxies) alive and repeats the position.
              yield control(m, position, cursorIn, true, false);
              lastFrame = nowMs();
            }
          } finally {
            if (!waited) w.cancel();
          }
        }
      } finally {
        next?.cancel();
      }
    }
    return { status: 200, headers, sse: frames() };
  }

  return { read };
}
