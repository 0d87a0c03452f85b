import { randomUUID } from "node:crypto";
import { eventCost, freeJsonProblem, MAX_JSON_DEPTH, setCost } from "../json.js";
import { CapacityError, DuplicateEventError, internalKeyPrefix, InvalidEventError, LimitError, StoreUnavailableError, streamName, type EventDraft, type StoredEvent, type StreamId } from "../types.js";
import { afterFailedAppend } from "./failed.js";
import { traceAppend } from "../trace.js";
import type { LogContext, PublishOptions } from "./options.js";

export interface Pending {
  drafts: readonly EventDraft[];
  opts: PublishOptions | undefined;
  resolve: (events: StoredEvent[]) => void;
  reject: (err: unknown) => void;
  /** Put back once after a lost idempotency race with another instance. */
  requeued?: true;
}

interface Queue {
  stream: StreamId;
  pending: Pending[];
  running: boolean;
}

/**
 * The publish side of the log: validation, the per-stream commit queue and group commit (one
 * sequence reservation and one store write for the publishes that arrive together), idempotency.
 */
export class Committer {
  readonly #queues = new Map<string, Queue>();
  /** Estimated heap bytes of the publishes queued or being written. */
  #pending = 0;
  /** The sequences of each stream's round being stored now (reserved, append not settled). */
  readonly #storing = new Map<string, { first: number; last: number }>();

  constructor(
    private readonly ctx: LogContext,
    /** Called after a round is stored, before its publishes resolve (the tail cache). */
    private readonly committed: (name: string, events: StoredEvent[], streamExpireAt: Date | undefined) => void,
  ) {}

  /** The range of the stream this process has reserved and is storing now, if any. */
  storing(name: string): { first: number; last: number } | undefined {
    return this.#storing.get(name);
  }

  /** Resolves once no publish is queued or being written. */
  async idle(): Promise<void> {
    while (this.#queues.size > 0) await new Promise((r) => setTimeout(r, 5));
  }

  publish(stream: StreamId, drafts: readonly EventDraft[], opts?: PublishOptions): Promise<StoredEvent[]> {
    const o = this.ctx.opts;
    if (drafts.length === 0) return Promise.resolve([]);
    if (drafts.length > o.maxBatchEvents && !opts?.byteBounded) {
      return Promise.reject(new LimitError(`a publish may hold at most ${o.maxBatchEvents} events, got ${drafts.length}`));
    }
    for (const [i, d] of drafts.entries()) {
      const reserved = opts?.internalKeys || d.idempotencyKey === undefined ? undefined : internalKeyPrefix(d.idempotencyKey);
      if (reserved !== undefined) {
        return Promise.reject(new InvalidEventError(i, "idempotency_key", `may not start with ${JSON.stringify(reserved)}: that prefix is reserved for keys the service derives`));
      }
      // Whatever a surface let through, only JSON every other surface can serve is stored. Callers
      // hold their input to MAX_JSON_DEPTH; a dialect may wrap it in a level or two (TerminalUse's
      // content part), which stays within what protobuf clients decode.
      for (const field of ["data", "metadata", "extra"] as const) {
        const problem = d[field] === undefined ? undefined : freeJsonProblem(d[field], MAX_JSON_DEPTH + (field === "extra" ? 4 : 2));
        if (problem) return Promise.reject(new InvalidEventError(i, field, problem));
      }
      const { bytes: size, values } = eventCost(d);
      if (values > o.maxEventValues) return Promise.reject(new LimitError(`event ${i} holds ${values} JSON values; the limit is ${o.maxEventValues}`));
      if (size > o.maxEventBytes) return Promise.reject(new LimitError(`event ${i} is ${size} bytes; the limit is ${o.maxEventBytes}`));
    }
    // Queued publishes hold their events in memory until the store has them: bounded in bytes.
    const weight = drafts.reduce((n, d) => n + eventCost(d).weight, 0);
    if (this.#pending > 0 && this.#pending + weight > o.pendingBytes) {
      return Promise.reject(new CapacityError(`publishes queued here hold over ${o.pendingBytes} bytes; retry shortly`));
    }
    this.#pending += weight;
    const name = streamName(stream);
    let q = this.#queues.get(name);
    if (!q) {
      q = { stream, pending: [], running: false };
      this.#queues.set(name, q);
    }
    const queue = q;
    const started = performance.now();
    const result = new Promise<StoredEvent[]>((resolve, reject) => {
      queue.pending.push({ drafts, opts, resolve, reject });
      if (!queue.running) {
        queue.running = true;
        setImmediate(() => void this.#drain(name, queue));
      }
    });
    const settled = (): void => {
      this.#pending -= weight;
    };
    result.then(settled, settled);
    const obs = o.observer;
    if (obs) {
      const source = opts?.source ?? "other";
      result.then(
        (events) => obs.published(source, events.length, (performance.now() - started) / 1000),
        () => obs.publishFailed(source),
      );
    }
    return result;
  }

  async #drain(name: string, q: Queue): Promise<void> {
    while (q.pending.length > 0) {
      let count = 0;
      let take = 0;
      // A round's reservation checks one expected incarnation (or none): a publish expecting
      // another one waits for the next round.
      const inc = q.pending[0]!.opts?.incarnation;
      while (take < q.pending.length && (take === 0 || (count + q.pending[take]!.drafts.length <= this.ctx.opts.maxCommitEvents && q.pending[take]!.opts?.incarnation === inc))) {
        count += q.pending[take]!.drafts.length;
        take++;
        // A closing publish ends its round: it must be the last thing the stream takes.
        if (q.pending[take - 1]!.opts?.close) break;
      }
      await this.#commit(q.stream, name, q.pending.splice(0, take), (again) => q.pending.unshift(...again));
    }
    q.running = false;
    if (q.pending.length === 0) this.#queues.delete(name);
  }

  /**
   * Idempotency: a publish whose events all carry keys already stored in the stream is answered
   * with the stored events and takes no sequence; one that repeats a key of an earlier publish of
   * the same round follows that publish's outcome. A publish that mixes stored and new keys is
   * refused (DuplicateEventError). Publishes with `keysAreNew` are not looked up (insert first)
   * unless they come back after a duplicate-key failure. Returns the publishes that still need writing.
   */
  async #dedupe(stream: StreamId, batch: Pending[]): Promise<{ fresh: Pending[]; followers: Map<Pending, Pending[]> }> {
    const fresh: Pending[] = [];
    const followers = new Map<Pending, Pending[]>();
    const leaders = new Map<string, Pending>();
    for (const p of batch) {
      const keys = p.drafts.map((d) => d.idempotencyKey);
      if (keys.every((k) => k === undefined)) {
        fresh.push(p);
        continue;
      }
      const leader = keys[0] !== undefined ? leaders.get(keys[0]) : undefined;
      if (leader && keys.every((k, i) => k === leader.drafts[i]?.idempotencyKey) && keys.length === leader.drafts.length) {
        followers.set(leader, [...(followers.get(leader) ?? []), p]);
        continue;
      }
      const insertFirst = p.opts?.keysAreNew === true && !p.requeued;
      const stored = insertFirst ? [] : await Promise.all(keys.map((k) => (k === undefined ? undefined : this.ctx.store.findByIdempotencyKey(stream, k))));
      if (stored.length > 0 && stored.every((e) => e !== undefined)) {
        p.resolve(stored as StoredEvent[]);
      } else if (stored.some((e) => e !== undefined)) {
        p.reject(new DuplicateEventError("some idempotency keys of this publish are already used by other events"));
      } else {
        for (const k of keys) if (k !== undefined) leaders.set(k, p);
        fresh.push(p);
      }
    }
    return { fresh, followers };
  }

  async #commit(stream: StreamId, name: string, pending: Pending[], requeue: (again: Pending[]) => void): Promise<void> {
    const { store, stats } = this.ctx;
    let batch: Pending[];
    let followers: Map<Pending, Pending[]>;
    try {
      ({ fresh: batch, followers } = await this.#dedupe(stream, pending));
    } catch (err) {
      stats.storeErrors++;
      for (const p of pending) p.reject(err);
      return;
    }
    // Followers settle with their leader.
    for (const [leader, list] of followers) {
      const { resolve, reject } = leader;
      leader.resolve = (events) => (resolve(events), list.forEach((f) => f.resolve(events)));
      leader.reject = (err) => (reject(err), list.forEach((f) => f.reject(err)));
    }
    if (batch.length === 0) return;
    const count = batch.reduce((n, p) => n + p.drafts.length, 0);
    let expireAt: Date | undefined;
    for (const p of batch) {
      const to = p.opts?.extendExpiryTo;
      if (to && (!expireAt || to > expireAt)) expireAt = to;
    }
    let last: number;
    try {
      // The stream's expiry slides in the same round trip (the stream record), so no earlier event
      // is rewritten and none expires before the new ones are visible.
      const close = batch[batch.length - 1]!.opts?.close === true;
      const inc = batch[0]!.opts?.incarnation;
      last = await store.reserve(stream, count, expireAt || close || inc !== undefined ? { ...(expireAt ? { expireAt } : {}), ...(close ? { close } : {}), ...(inc !== undefined ? { inc } : {}) } : undefined);
    } catch (err) {
      // Nothing was inserted. If the counter did move, readers claim the untouched range later.
      stats.storeErrors++;
      const failure = err instanceof StoreUnavailableError ? new StoreUnavailableError(err.message, { cause: err, outcome: "not-stored" }) : err;
      for (const p of batch) p.reject(failure);
      return;
    }
    const first = last - count + 1;
    const createdAt = new Date(this.ctx.now());
    let seq = first;
    const results: StoredEvent[][] = [];
    const all: StoredEvent[] = [];
    for (const p of batch) {
      const batchEnd = p.drafts.length > 1 ? seq + p.drafts.length - 1 : undefined;
      const events = p.drafts.map((d) => {
        const e: StoredEvent = {
          id: d.id ?? randomUUID(),
          stream: name,
          seq: seq++,
          eventType: d.eventType,
          data: d.data,
          metadata: d.metadata ?? {},
          createdAt,
        };
        if (d.expireAt) e.expireAt = d.expireAt;
        if (d.idempotencyKey !== undefined) e.idempotencyKey = d.idempotencyKey;
        if (d.extra) e.extra = d.extra;
        if (d.bytes) e.bytes = d.bytes;
        if (batchEnd !== undefined) e.batchEnd = batchEnd;
        if (p.opts?.trace) e.trace = p.opts.trace;
        setCost(e, eventCost(d));
        return e;
      });
      results.push(events);
      all.push(...events);
    }
    this.#storing.set(name, { first, last });
    try {
      await traceAppend(batch.map((p) => p.opts?.trace), name, () => store.append(all));
    } catch (err) {
      await afterFailedAppend(this.ctx, { stream, name, batch, results, first, last, createdAt }, err, requeue);
      return;
    } finally {
      this.#storing.delete(name);
    }
    stats.commits++;
    stats.published += count;
    this.committed(name, all, expireAt);
    this.ctx.hub.notify(name);
    batch.forEach((p, k) => p.resolve(results[k]!));
  }
}
