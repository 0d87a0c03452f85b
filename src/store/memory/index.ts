import { DuplicateEventError, parseStreamName, streamName, type StoredEvent, type StreamId } from "../../core/types.js";
import type { Store } from "../port.js";

interface MemStream {
  id: StreamId;
  head: number;
  events: Map<number, StoredEvent>;
}

/**
 * The embedded store: everything in this process's memory, lost on restart. Same contract as the
 * MongoDB adapter (sequences are reserved and appended in separate steps, so readers meet the same
 * transient holes), which keeps the core honest when it runs on either.
 */
export class MemoryStore implements Store {
  readonly kind = "memory";
  readonly durable = false;
  readonly #streams = new Map<string, MemStream>();
  readonly #executions = new Map<string, string>();
  readonly #byId = new Map<string, StoredEvent>();
  /** `stream` + "\n" + idempotency key → event. */
  readonly #byKey = new Map<string, StoredEvent>();

  async init(): Promise<void> {}
  async close(): Promise<void> {}
  async ping(): Promise<void> {}

  #stream(name: string, id?: StreamId): MemStream {
    let s = this.#streams.get(name);
    if (!s) {
      s = { id: id ?? parseStreamName(name), head: 0, events: new Map() };
      this.#streams.set(name, s);
    }
    return s;
  }

  async reserve(stream: StreamId, count: number): Promise<number> {
    const s = this.#stream(streamName(stream), stream);
    s.head += count;
    return s.head;
  }

  async head(stream: StreamId): Promise<number> {
    return this.#streams.get(streamName(stream))?.head ?? 0;
  }

  async append(events: readonly StoredEvent[]): Promise<void> {
    // Check everything first so that a rejected call stores nothing.
    for (const e of events) {
      const s = this.#streams.get(e.stream);
      if (!s || e.seq > s.head || e.seq < 1) throw new Error(`sequence ${e.seq} of ${e.stream} was not reserved`);
      if (s.events.has(e.seq)) throw new Error(`duplicate sequence ${e.seq} in ${e.stream}`);
      if (this.#byId.has(e.id)) throw new DuplicateEventError(`event id ${e.id} is taken`);
      if (e.idempotencyKey !== undefined && this.#byKey.has(`${e.stream}\n${e.idempotencyKey}`)) throw new DuplicateEventError(`idempotency key ${e.idempotencyKey} is taken`);
    }
    for (const e of events) {
      // A shallow copy: stored events are never mutated in place by callers (extendExpiry and
      // voidRange change or replace the store's own copies), so readers can share them.
      const copy = { ...e };
      this.#stream(e.stream).events.set(e.seq, copy);
      this.#byId.set(e.id, copy);
      if (e.idempotencyKey !== undefined) this.#byKey.set(`${e.stream}\n${e.idempotencyKey}`, copy);
    }
  }

  async voidRange(stream: StreamId, from: number, to: number, at: Date, ids: readonly string[]): Promise<void> {
    const name = streamName(stream);
    const s = this.#stream(name);
    for (let seq = from; seq <= to; seq++) {
      const existing = s.events.get(seq);
      if (existing && !ids.includes(existing.id)) continue;
      if (existing) {
        this.#byId.delete(existing.id);
        if (existing.idempotencyKey !== undefined) this.#byKey.delete(`${name}\n${existing.idempotencyKey}`);
      }
      s.events.set(seq, { id: `void:${name}:${seq}`, stream: name, seq, eventType: "", data: null, metadata: {}, createdAt: at, void: true });
    }
  }

  async read(stream: StreamId, after: number, limit: number): Promise<StoredEvent[]> {
    const s = this.#streams.get(streamName(stream));
    const out: StoredEvent[] = [];
    if (!s) return out;
    for (let seq = Math.max(after, 0) + 1; seq <= s.head && out.length < limit; seq++) {
      const e = s.events.get(seq);
      if (e) out.push(e);
    }
    return out;
  }

  async findByIdempotencyKey(stream: StreamId, key: string): Promise<StoredEvent | undefined> {
    const e = this.#byKey.get(`${streamName(stream)}\n${key}`);
    return e;
  }

  async getEvent(id: string): Promise<StoredEvent | undefined> {
    const e = this.#byId.get(id);
    return e && !e.void ? e : undefined;
  }

  async readBefore(stream: StreamId, before: number, limit: number): Promise<StoredEvent[]> {
    const s = this.#streams.get(streamName(stream));
    const out: StoredEvent[] = [];
    if (!s) return out;
    for (let seq = Math.min(before - 1, s.head); seq >= 1 && out.length < limit; seq--) {
      const e = s.events.get(seq);
      if (e) out.push(e);
    }
    return out;
  }

  async cursorAt(stream: StreamId, at: Date): Promise<number> {
    const s = this.#streams.get(streamName(stream));
    if (!s) return 0;
    let best = 0;
    for (const e of s.events.values()) if (e.createdAt <= at && e.seq > best) best = e.seq;
    return best;
  }

  async listStreams(project: string, limit: number): Promise<{ stream: StreamId; head: number; events: number }[]> {
    return [...this.#streams.values()]
      .filter((s) => s.id.project === project)
      .slice(0, limit)
      .map((s) => ({ stream: s.id, head: s.head, events: [...s.events.values()].filter((e) => !e.void).length }));
  }

  async extendExpiry(stream: StreamId, expireAt: Date): Promise<void> {
    const s = this.#streams.get(streamName(stream));
    if (!s) return;
    // Replaced, not changed in place: readers may hold (and caches may key on) the old objects.
    for (const [seq, e] of s.events) {
      if (!e.expireAt || e.expireAt >= expireAt) continue;
      const updated = { ...e, expireAt };
      s.events.set(seq, updated);
      if (!e.void) this.#byId.set(e.id, updated);
      if (e.idempotencyKey !== undefined) this.#byKey.set(`${e.stream}\n${e.idempotencyKey}`, updated);
    }
  }

  async bindExecution(executionId: string, project: string): Promise<string> {
    const bound = this.#executions.get(executionId);
    if (bound !== undefined) return bound;
    this.#executions.set(executionId, project);
    return project;
  }

  async executionProject(executionId: string): Promise<string | undefined> {
    return this.#executions.get(executionId);
  }

  watchAppends(): () => Promise<void> {
    return async () => {};
  }
}
