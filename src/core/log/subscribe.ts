import { ready } from "../ordering.js";
import type { StoredEvent, StreamId } from "../types.js";
import type { LogContext } from "./options.js";
import { withinBytes, type Reader } from "./read.js";
import type { TailCache } from "./tail.js";

/** What a subscription uses of the log besides the shared context. */
export interface SubscribeParts {
  reader: Reader;
  tails: TailCache;
  /** Counts a local follower of the stream in (+1) or out (-1): the watcher's interest. */
  follow: (name: string, id: StreamId, delta: 1 | -1) => void;
  /** Aborted when the log closes. */
  closing: AbortSignal;
}

/**
 * Follows a stream from `after`: yields batches of events in sequence order, each event exactly
 * once, then waits for new ones until `signal` aborts.
 */
export async function* subscribe(ctx: LogContext, parts: SubscribeParts, stream: StreamId, name: string, after: number, callerSignal: AbortSignal): AsyncGenerator<StoredEvent[]> {
  const { opts, hub, stats } = ctx;
  const { reader, tails, follow } = parts;
  const signal = AbortSignal.any([callerSignal, parts.closing]);
  follow(name, stream, +1);
  // Taken before each read: whatever is appended after the read fires it, so no wake-up is lost.
  let ticket = hub.ticket(name);
  const onAbort = (): void => ticket.expire();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    let cursor = after;
    let chaseDelay = 0;
    let chaseStarted = 0;
    let outageDelay = 0;
    /** Why the last wait ended: an append (or close) was signalled, or the log's idle recheck. */
    let woken: "append" | "recheck" | undefined;
    while (!signal.aborted) {
      if (woken === "recheck" && chaseDelay === 0) {
        // The idle recheck looks for appends no wake-up announced: one head() for the stream's
        // subscribers here (they are woken together), and a read only when it moved.
        const head = await reader.head(stream, name).catch(() => Number.MAX_SAFE_INTEGER);
        if (head <= cursor) {
          if (signal.aborted) break;
          woken = (await ticket.wait()) ? "append" : "recheck";
          ticket = hub.ticket(name);
          continue;
        }
      }
      let docs: StoredEvent[];
      let truncated: boolean;
      let stored = false;
      try {
        const fromTail = tails.read(name, cursor, opts.readBatch);
        if (fromTail) {
          docs = fromTail;
          truncated = docs.length === opts.readBatch;
        } else {
          ({ docs, truncated } = await reader.shared(stream, name, cursor, opts.readBatch));
          stored = true;
        }
        outageDelay = 0;
      } catch (err) {
        // The store is unreachable: keep the subscriber, retry with backoff, resume at the cursor.
        stats.storeErrors++;
        outageDelay = Math.min(outageDelay === 0 ? 100 : outageDelay * 2, 2000);
        if (outageDelay === 100) opts.log?.("subscriber read failed; retrying", { stream: name, err: String(err) });
        await ticket.wait(outageDelay);
        ticket = hub.ticket(name);
        continue;
      }
      const now = ctx.now();
      const r = ready(docs, cursor, now, truncated);
      // What one subscriber read from the store serves the others here from memory.
      if (stored) tails.extend(name, cursor, docs, r.next);
      if (r.next > cursor) {
        cursor = r.next;
        chaseDelay = 0;
        if (r.events.length > 0) {
          opts.observer?.delivered(r.events.length, now - r.events[r.events.length - 1]!.createdAt.getTime());
          // Batches of at most responseBytes (an event larger than that comes alone).
          for (let rest = r.events; rest.length > 0; ) {
            const batch = withinBytes(rest, opts.responseBytes);
            rest = rest.slice(batch.length);
            yield batch;
          }
        }
        // Read again at once when there may be more: the page was full, or something was
        // appended since the read (the ticket fired, perhaps during the yield). Otherwise the
        // read saw everything: wait on the same ticket.
        if (!r.hole && (truncated || ticket.fired)) {
          woken = ticket.fired ? "append" : undefined;
          ticket.cancel();
          ticket = hub.ticket(name);
          continue;
        }
      } else if (woken === "append" && chaseDelay === 0 && !r.hole && (await reader.head(stream, name).catch(() => 0)) > cursor) {
        // Woken, the head moved, but nothing was readable: another writer is between reserve and
        // append (asked only after a read that made no progress).
        chaseDelay = 5;
        chaseStarted = ctx.mono();
      }
      woken = undefined;
      let waitMs: number | undefined;
      if (r.hole) {
        // A hole: its insert may land any moment (possibly from another instance).
        let left: number;
        try {
          left = await reader.atHole(stream, name, r.hole);
        } catch (err) {
          stats.storeErrors++;
          left = 250; // the claim failed (store away): look again
          opts.log?.("claiming a hole failed; retrying", { stream: name, err: String(err) });
        }
        if (left === 0) {
          ticket.cancel();
          ticket = hub.ticket(name);
          continue;
        }
        chaseDelay = Math.min(chaseDelay === 0 ? 5 : chaseDelay * 2, 250);
        waitMs = Math.max(1, Math.min(chaseDelay, left));
      } else if (chaseDelay > 0 && ctx.mono() - chaseStarted < opts.holeTimeoutMs) {
        // Woken for sequences that are taken but not stored yet: look again soon.
        chaseDelay = Math.min(chaseDelay * 2, 250);
        waitMs = chaseDelay;
      } else {
        chaseDelay = 0;
      }
      // No timeout otherwise: woken by an append, or by the log's periodic idle recheck.
      if (signal.aborted) break;
      const notified = await ticket.wait(waitMs);
      ticket = hub.ticket(name);
      woken = notified ? "append" : waitMs === undefined ? "recheck" : undefined;
    }
  } finally {
    ticket.cancel();
    signal.removeEventListener("abort", onAbort);
    follow(name, stream, -1);
  }
}
