import { CapacityError, DuplicateEventError, SequenceTakenError, StoreUnavailableError, type StoredEvent, type StreamId } from "../types.js";
import type { Pending } from "./commit.js";
import type { LogContext } from "./options.js";

/** Majority reads of a failed append's range before its outcome is called unknown (about 1.4 s in all). */
const RESOLVE_READS = 8;

/** A commit round whose append failed: its publishes, their events and the sequences it took. */
export interface FailedRound {
  stream: StreamId;
  name: string;
  batch: Pending[];
  /** The events of each publish of `batch`, in the same order. */
  results: StoredEvent[][];
  first: number;
  last: number;
  createdAt: Date;
}

/**
 * A round's append failed. What it left is not known yet: a prefix may be stored, and after a
 * timeout or a dropped connection the rest may still land. So the range is first *closed*: every
 * sequence of it that is still free gets a void placeholder (the same claim readers make), after
 * which nothing of this round can be stored any more and what the store holds is final. Then it
 * is read back (majority read concern): publishes whose events are all stored are acked (readers
 * may already have delivered them); the others failed for certain — their own stored events are
 * voided, and they are either put through the queue once more (a lost idempotency race, or a
 * range claimed by a reader after a stall) or rejected as "not stored". When the store cannot
 * even be asked, the publishes are rejected with outcome "unknown": never acked, never claimed
 * to be unstored.
 */
export async function afterFailedAppend(ctx: LogContext, round: FailedRound, err: unknown, requeue: (again: Pending[]) => void): Promise<void> {
  const { store, stats, hub, opts } = ctx;
  const { stream, name, batch, results, first, last, createdAt } = round;
  stats.storeErrors++;
  let stored: Map<string, number> | undefined;
  try {
    await store.voidRange(stream, first, last, createdAt, []);
    // Every sequence of the range is taken now (one of ours, or a placeholder). One that a
    // majority read does not show yet is not majority-committed yet (a write-concern timeout
    // left it on the primary only): look again for a while before calling the outcome unknown.
    for (let attempt = 0; attempt < RESOLVE_READS && !stored; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 50 * attempt));
      const docs = (await store.read(stream, first - 1, last - first + 1)).filter((e) => e.seq >= first && e.seq <= last);
      if (new Set(docs.map((e) => e.seq)).size === last - first + 1) stored = new Map(docs.filter((e) => !e.void).map((e) => [e.id, e.seq]));
    }
    if (!stored) throw new Error("the range is not majority-committed yet");
  } catch (resolveErr) {
    opts.log?.("a failed publish could not be resolved: its outcome is unknown (readers claim its sequences once the store is back)", {
      stream: name,
      first,
      last,
      err: String(err),
      resolveErr: String(resolveErr),
    });
    hub.notify(name);
    const unknown = new StoreUnavailableError(
      "the event store became unavailable while storing this publish: it may or may not have been stored (an idempotency key makes a retry safe)",
      { cause: err, outcome: "unknown" },
    );
    for (const p of batch) p.reject(unknown);
    return;
  }
  const done = new Set(batch.filter((_p, k) => results[k]!.every((e) => stored.get(e.id) === e.seq)));
  const failedIds = batch.flatMap((p, k) => (done.has(p) ? [] : results[k]!.map((e) => e.id).filter((id) => stored.has(id))));
  if (failedIds.length > 0) {
    try {
      // Frees their ids and idempotency keys (a retry can use them); readers never deliver them
      // either way: each is in a batch with a void member.
      await store.voidRange(stream, first, last, createdAt, failedIds);
    } catch (voidErr) {
      opts.log?.("could not free the ids of a failed publish (its events are void to readers all the same)", { stream: name, first, last, err: String(voidErr) });
    }
  }
  hub.notify(name);
  if (done.size > 0) stats.commits++;
  batch.forEach((p, k) => {
    if (!done.has(p)) return;
    stats.published += results[k]!.length;
    p.resolve(results[k]!);
  });
  const retryable = err instanceof DuplicateEventError || err instanceof SequenceTakenError;
  const again = batch.filter((p) => !done.has(p) && retryable && !p.requeued);
  for (const p of batch) {
    if (done.has(p) || again.includes(p)) continue;
    // A duplicate, or a full in-memory store (it refuses before storing anything), says so itself.
    if (err instanceof DuplicateEventError || err instanceof CapacityError) p.reject(err);
    else p.reject(new StoreUnavailableError("the event store did not store this publish in time; nothing of it was stored, retry", { cause: err, outcome: "not-stored" }));
  }
  for (const p of again) p.requeued = true;
  requeue(again);
}
