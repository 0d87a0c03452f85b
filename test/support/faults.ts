/**
 * Fault injection for the event log's store, and the invariant checker every fault test uses.
 *
 * FaultyStore wraps a real store (memory or MongoDB) and, per append, can stall between reserve
 * and insert, drop the acknowledgement after the insert (the caller sees "unavailable, outcome
 * unknown" although the events are stored), or report failure first and let the insert land later
 * (a server that finishes a write after the client gave up), and can take the whole store down.
 */
import type { Store } from "../../src/core/store.js";
import { StoreUnavailableError, type StoredEvent, type StreamId } from "../../src/core/types.js";
import type { EventLog } from "../../src/core/log.js";

export type AppendFault = "stall" | "drop-ack" | "late-insert" | undefined;

export interface FaultPlan {
  /** Which fault (if any) hits this append; called once per append. */
  append?: (events: readonly StoredEvent[]) => AppendFault;
  stallMs?: number;
  /** late-insert: how long after the failure report the insert lands. */
  lateMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Store methods that talk to the database (they fail while the store is down). */
const IO = new Set(["reserve", "head", "streamInfo", "touch", "append", "voidRange", "findByIdempotencyKey", "getEvent", "read", "readBefore", "cursorAt", "listStreams", "purge", "bindExecution", "executionProject", "ping"]);

export class FaultControl {
  down = false;
  readonly counts = { stalls: 0, droppedAcks: 0, lateInserts: 0, lateInsertsRefused: 0, refusedWhileDown: 0 };
  readonly #late: Promise<void>[] = [];

  /** Waits for every late insert to have landed or been refused. */
  async settle(): Promise<void> {
    await Promise.all(this.#late);
  }

  wrap(inner: Store, plan: FaultPlan = {}): Store {
    const control = this;
    const unavailable = (outcome: "not-stored" | "unknown") => new StoreUnavailableError("injected: store down", { outcome });
    return new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (typeof value !== "function") return value;
        if (prop === "append") {
          return async (events: readonly StoredEvent[]): Promise<void> => {
            if (control.down) {
              control.counts.refusedWhileDown++;
              throw unavailable("unknown");
            }
            const fault = plan.append?.(events);
            if (fault === "stall") {
              control.counts.stalls++;
              await sleep(plan.stallMs ?? 1000);
            }
            if (fault === "late-insert") {
              control.counts.lateInserts++;
              control.#late.push(
                sleep(plan.lateMs ?? 300).then(() =>
                  target.append(events).catch(() => {
                    control.counts.lateInsertsRefused++;
                  }),
                ),
              );
              throw unavailable("unknown");
            }
            await target.append(events);
            if (fault === "drop-ack" || control.down) {
              control.counts.droppedAcks++;
              throw unavailable("unknown");
            }
          };
        }
        if (IO.has(String(prop))) {
          return (...args: unknown[]) => {
            if (control.down) {
              control.counts.refusedWhileDown++;
              return Promise.reject(unavailable(prop === "reserve" ? "unknown" : "not-stored"));
            }
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  }
}

/** What one publish came to. */
export interface Outcome {
  ids: string[];
  kind: "acked" | "not-stored" | "unknown" | "other";
  seqs?: number[];
  error?: string;
}

export function classify(ids: string[], result: PromiseSettledResult<StoredEvent[]>): Outcome {
  if (result.status === "fulfilled") return { ids, kind: "acked", seqs: result.value.map((e) => e.seq) };
  const err = result.reason as unknown;
  if (err instanceof StoreUnavailableError) return { ids, kind: err.outcome === "unknown" ? "unknown" : "not-stored", error: err.message };
  return { ids, kind: "other", error: String(err) };
}

/** A subscriber that records (seq, id) of everything delivered. */
export class Recorder {
  readonly got: { seq: number; id: string }[] = [];
  readonly #abort = new AbortController();
  readonly done: Promise<void>;

  constructor(log: EventLog, stream: StreamId) {
    this.done = (async () => {
      for await (const batch of log.subscribe(stream, 0, this.#abort.signal)) for (const e of batch) this.got.push({ seq: e.seq, id: e.id });
    })();
  }

  async until(pred: () => boolean, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > end) throw new Error(`subscriber stuck at ${this.got.length} events (last seq ${this.got[this.got.length - 1]?.seq ?? 0})`);
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.done;
  }
}

export interface Figures {
  publishes: number;
  acked: number;
  notStored: number;
  unknown: number;
  delivered: number[];
  skipped: number;
  placeholders: number;
  head: number;
}

/**
 * The invariant, checked against what happened:
 * - every subscriber delivered strictly ascending sequences (in order, each once);
 * - every acked event reached every subscriber, at its acked sequence, with its id (skipped: 0);
 * - nothing that was reported "not stored" was delivered, and everything delivered was acked or
 *   of unknown outcome;
 * - every sequence up to the counter is stored: an acked event, a void placeholder (a failed
 *   publish's, or a reader's claim), or an event of a publish whose outcome was reported unknown.
 */
export async function checkInvariant(store: Store, stream: StreamId, outcomes: Outcome[], recorders: Recorder[]): Promise<Figures> {
  const ackedAt = new Map<number, string>();
  const notStored = new Set<string>();
  const unknown = new Set<string>();
  for (const o of outcomes) {
    if (o.kind === "acked") o.ids.forEach((id, i) => ackedAt.set(o.seqs![i]!, id));
    else if (o.kind === "not-stored") o.ids.forEach((id) => notStored.add(id));
    else if (o.kind === "unknown") o.ids.forEach((id) => unknown.add(id));
    else throw new Error(`a publish failed with something other than unavailable: ${o.error}`);
  }
  const ackedIds = new Set(ackedAt.values());
  let skipped = 0;
  for (const [k, r] of recorders.entries()) {
    const seqs = r.got.map((g) => g.seq);
    for (let i = 1; i < seqs.length; i++) if (seqs[i]! <= seqs[i - 1]!) throw new Error(`subscriber ${k}: ${seqs[i]} delivered after ${seqs[i - 1]}`);
    const bySeq = new Map(r.got.map((g) => [g.seq, g.id]));
    for (const [seq, id] of ackedAt) {
      if (bySeq.get(seq) !== id) {
        skipped++;
        if (skipped < 5) console.error(`subscriber ${k} missed acked seq ${seq} (${id}); got ${bySeq.get(seq) ?? "nothing"}`);
      }
    }
    for (const g of r.got) {
      if (notStored.has(g.id)) throw new Error(`subscriber ${k} delivered seq ${g.seq} (${g.id}) of a publish reported "not stored"`);
      if (!ackedIds.has(g.id) && !unknown.has(g.id)) throw new Error(`subscriber ${k} delivered seq ${g.seq} (${g.id}) that nobody published`);
    }
  }
  const head = await store.head(stream);
  const stored: StoredEvent[] = [];
  for (let after = 0; ; ) {
    const page = await store.read(stream, after, 1000);
    if (page.length === 0) break;
    stored.push(...page);
    after = page[page.length - 1]!.seq;
  }
  const bySeq = new Map(stored.map((e) => [e.seq, e]));
  let placeholders = 0;
  for (let seq = 1; seq <= head; seq++) {
    const e = bySeq.get(seq);
    if (!e) throw new Error(`sequence ${seq} of ${head} is neither an event nor a placeholder`);
    if (e.void) placeholders++;
    else if (ackedAt.has(seq)) {
      if (ackedAt.get(seq) !== e.id) throw new Error(`sequence ${seq} holds ${e.id}, but ${ackedAt.get(seq)} was acked there`);
    } else if (!unknown.has(e.id)) {
      // An unacked event left in place is allowed only as part of a batch with a void member
      // (its publish failed; readers pass the whole batch).
      const end = e.batchEnd ?? seq;
      let start = seq;
      while (start > 1 && bySeq.get(start - 1)?.batchEnd === end && !bySeq.get(start - 1)?.void) start--;
      const members = Array.from({ length: end - start + 1 }, (_, i) => bySeq.get(start + i));
      if (!members.some((m) => !m || m.void)) throw new Error(`sequence ${seq} holds ${e.id}, an unacked event in a complete batch`);
    }
  }
  for (const seq of ackedAt.keys()) if (seq > head) throw new Error(`acked sequence ${seq} is above the counter ${head}`);
  return {
    publishes: outcomes.length,
    acked: ackedAt.size,
    notStored: notStored.size,
    unknown: unknown.size,
    delivered: recorders.map((r) => r.got.length),
    skipped,
    placeholders,
    head,
  };
}

/** A request on a JSON / HTTP surface that needs one store port (see outageProbes). */
export interface OutageProbe {
  port: "events" | "tasks" | "sailhouse" | "durable" | "keys";
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/**
 * One request per store port and HTTP dialect path that reads or writes that port, for outage
 * tests: each must answer 503 with its dialect's "unavailable" error while the database is away.
 * `refs` name things created before the outage, so a read's answer is the store's, not a 404.
 * Live streams (SSE, long-poll, Subscribe) are not here: they stay open through an outage and
 * resume (the outage test proves that).
 */
export function outageProbes(refs: { taskId: string; taskName: string; stream: string; topic: string; subscription: string }): OutageProbe[] {
  const json = { "content-type": "application/json" };
  const sub = `/topics/${refs.topic}/subscriptions/${refs.subscription}`;
  return [
    { port: "events", method: "POST", path: "/api/v1/events/publish", headers: json, body: JSON.stringify({ topic: "t", events: [{ data: 1 }] }) },
    { port: "events", method: "GET", path: "/api/v1/events?topic=t" },
    { port: "events", method: "POST", path: "/api/v1/executions/e1/events", headers: json, body: JSON.stringify({ event_type: "x", data: {} }) },
    { port: "events", method: "POST", path: `/topics/${refs.topic}/events`, headers: json, body: JSON.stringify({ data: {} }) },
    { port: "events", method: "POST", path: "/v1/log/topic/t", headers: json, body: JSON.stringify({ n: 1 }) },
    { port: "tasks", method: "POST", path: "/tasks", headers: json, body: JSON.stringify({ agent_name: "acme/a" }) },
    { port: "tasks", method: "GET", path: `/tasks/${refs.taskId}` },
    { port: "tasks", method: "GET", path: `/tasks/name/${refs.taskName}` },
    { port: "tasks", method: "GET", path: "/tasks?limit=10" },
    { port: "tasks", method: "PUT", path: `/tasks/${refs.taskId}`, headers: json, body: JSON.stringify({ task_metadata: { a: 1 } }) },
    { port: "tasks", method: "POST", path: `/tasks/${refs.taskId}/cancel` },
    { port: "tasks", method: "GET", path: `/tasks/${refs.taskId}/messages` },
    { port: "tasks", method: "POST", path: `/tasks/${refs.taskId}/events`, headers: json, body: JSON.stringify({ content: { type: "text", text: "x" } }) },
    { port: "sailhouse", method: "PUT", path: `${sub}2`, headers: json, body: JSON.stringify({ type: "pull" }) },
    { port: "sailhouse", method: "GET", path: `${sub}/events/pull` },
    { port: "sailhouse", method: "GET", path: `${sub}/events?limit=10` },
    { port: "sailhouse", method: "POST", path: `${sub}/events/some-event` },
    { port: "sailhouse", method: "POST", path: "/waitgroups/instances", headers: json, body: JSON.stringify({ topic: refs.topic, ttl: "10m" }) },
    { port: "durable", method: "PUT", path: "/v1/stream/created-in-outage", headers: { "content-type": "text/plain" } },
    { port: "durable", method: "POST", path: `/v1/stream/${refs.stream}`, headers: { "content-type": "text/plain" }, body: "x" },
    { port: "durable", method: "GET", path: `/v1/stream/${refs.stream}?offset=-1` },
    { port: "durable", method: "DELETE", path: `/v1/stream/${refs.stream}` },
    { port: "keys", method: "GET", path: "/api/v1/events?topic=t" },
    { port: "keys", method: "GET", path: `/v1/stream/${refs.stream}?offset=-1` },
    { port: "keys", method: "GET", path: "/tasks" },
  ];
}
