/**
 * The event log over a scripted fake store: what it answers when an append fails (nothing stored,
 * stored but unacknowledged, a prefix stored, the store unreachable), how readers claim holes,
 * and which store calls delivery makes (none for this instance's own appends and their echo; one
 * shared read for another instance's; one head() per stream on the idle recheck).
 */
import { afterEach, describe, expect, it } from "vitest";
import { EventLog, type EventLogOptions } from "../../src/core/log.js";
import type { AppendRange, Store } from "../../src/core/store.js";
import { DuplicateEventError, SequenceTakenError, StoreUnavailableError, streamName, type StoredEvent, type StreamId } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory/index.js";

type Append = (events: readonly StoredEvent[], real: (events: readonly StoredEvent[]) => Promise<void>) => Promise<void>;

/**
 * A memory store whose calls are counted and whose appends and hole claims can be scripted; it
 * keeps the watcher's callback so a test can report appends as another instance's would be.
 */
class FakeStore {
  readonly inner = new MemoryStore();
  readonly calls = new Map<string, number>();
  /** Replaces append (the real one is passed in) while set. */
  append: Append | undefined;
  /** voidRange fails while set (the store is away). */
  voidFails = false;
  onAppend: ((stream: string, range?: AppendRange, events?: StoredEvent[]) => void) | undefined;

  readonly store: Store = new Proxy(this.inner, {
    get: (target, prop, receiver) => {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== "function") return value;
      const real = (value as (...a: unknown[]) => unknown).bind(target);
      return (...args: unknown[]) => {
        this.calls.set(String(prop), (this.calls.get(String(prop)) ?? 0) + 1);
        if (prop === "watchAppends") {
          this.onAppend = args[0] as (stream: string, range?: AppendRange, events?: StoredEvent[]) => void;
          return async () => {};
        }
        if (prop === "append" && this.append) return this.append(args[0] as StoredEvent[], real as (e: readonly StoredEvent[]) => Promise<void>);
        if (prop === "voidRange" && this.voidFails) return Promise.reject(new StoreUnavailableError("injected: store away", { outcome: "unknown" }));
        return real(...args);
      };
    },
  });

  count(name: string): number {
    return this.calls.get(name) ?? 0;
  }

  reset(): void {
    this.calls.clear();
  }
}

const stream: StreamId = { project: "p", kind: "topic", key: "t" };
const name = streamName(stream);
const unavailable = () => new StoreUnavailableError("injected: no reply", { outcome: "unknown" });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const logs: EventLog[] = [];
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
});

function setup(opts: Partial<EventLogOptions> = {}): { fake: FakeStore; log: EventLog } {
  const fake = new FakeStore();
  const log = new EventLog(fake.store, { holeTimeoutMs: 50, idleRecheckMs: 60_000, ...opts });
  logs.push(log);
  return { fake, log };
}

/** Follows the stream from `after`, collecting sequences, until `stop` aborts. */
function follow(log: EventLog, after = 0): { seqs: number[]; until(n: number): Promise<void>; stop(): Promise<void> } {
  const seqs: number[] = [];
  const abort = new AbortController();
  const done = (async () => {
    for await (const batch of log.subscribe(stream, after, abort.signal)) seqs.push(...batch.map((e) => e.seq));
  })();
  return {
    seqs,
    async until(n) {
      const end = Date.now() + 10_000;
      while (seqs.length < n && Date.now() < end) await sleep(5);
      expect(seqs.length).toBe(n);
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

/** Another instance's single-event publish, straight into the store. */
async function elsewhere(fake: FakeStore, data: unknown): Promise<number> {
  const seq = await fake.inner.reserve(stream, 1);
  await fake.inner.append([{ id: `x${seq}`, stream: name, seq, eventType: "t", data: data as never, metadata: {}, createdAt: new Date() }]);
  return seq;
}

describe("failed appends", () => {
  it("nothing stored: the publish fails as not stored, its sequences become placeholders readers pass", async () => {
    const { fake, log } = setup();
    fake.append = () => Promise.reject(unavailable());
    const err = await log.publish(stream, [{ eventType: "t", data: 1 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).outcome).toBe("not-stored");
    fake.append = undefined;
    const [next] = await log.publish(stream, [{ eventType: "t", data: 2 }]);
    expect(next!.seq).toBe(2);
    expect((await fake.inner.read(stream, 0, 10)).map((e) => [e.seq, e.void === true])).toEqual([
      [1, true],
      [2, false],
    ]);
    const sub = follow(log);
    await sub.until(1);
    expect(sub.seqs).toEqual([2]);
    await sub.stop();
    expect(log.stats).toMatchObject({ published: 1, storeErrors: 1 });
  });

  it("stored but the reply lost: the publish is acked with what the store holds", async () => {
    const { fake, log } = setup();
    fake.append = async (events, real) => {
      await real(events);
      throw unavailable();
    };
    const events = await log.publish(stream, [{ eventType: "t", data: 1 }, { eventType: "t", data: 2 }]);
    expect(events.map((e) => e.seq)).toEqual([1, 2]);
    fake.append = undefined;
    const sub = follow(log);
    await sub.until(2);
    expect(sub.seqs).toEqual([1, 2]);
    await sub.stop();
  });

  it("a prefix of a round stored: the publish it covers is acked, the other fails and its stored part is voided", async () => {
    const { fake, log } = setup();
    fake.append = async (events, real) => {
      await real(events.slice(0, 2)); // the first publish and half of the second
      throw unavailable();
    };
    // Same tick: one round, one append of seq 1 (first publish) and 2..3 (second).
    const first = log.publish(stream, [{ eventType: "t", data: "a" }]);
    const second = log.publish(stream, [{ eventType: "t", data: "b" }, { eventType: "t", data: "c" }]).catch((e: unknown) => e);
    expect((await first).map((e) => e.seq)).toEqual([1]);
    const err = await second;
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).outcome).toBe("not-stored");
    expect((await fake.inner.read(stream, 0, 10)).map((e) => [e.seq, e.void === true])).toEqual([
      [1, false],
      [2, true],
      [3, true],
    ]);
    fake.append = undefined;
    const sub = follow(log);
    await log.publish(stream, [{ eventType: "t", data: "d" }]);
    await sub.until(2);
    expect(sub.seqs).toEqual([1, 4]);
    await sub.stop();
  });

  it("the store unreachable while resolving: the outcome is unknown, never acked nor called unstored", async () => {
    const { fake, log } = setup();
    fake.append = () => Promise.reject(unavailable());
    fake.voidFails = true;
    const err = await log.publish(stream, [{ eventType: "t", data: 1 }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect((err as StoreUnavailableError).outcome).toBe("unknown");
    expect(log.stats.published).toBe(0);
  });

  it("a lost idempotency race is put through once more: a key now stored answers with the stored event", async () => {
    const { fake, log } = setup();
    let raced = false;
    fake.append = async (events, real) => {
      if (raced) return real(events);
      raced = true;
      // Another instance stores the same key first (under its own sequence).
      const seq = await fake.inner.reserve(stream, 1);
      await fake.inner.append([{ ...events[0]!, id: "theirs", seq }]);
      throw new DuplicateEventError("injected: key taken");
    };
    const [got] = await log.publish(stream, [{ eventType: "t", data: 1, idempotencyKey: "k" }]);
    expect(got!.id).toBe("theirs");
    expect(fake.count("findByIdempotencyKey")).toBe(2);
  });

  it("a sequence claimed by a reader while the append stalled: the publish is retried under new sequences", async () => {
    const { fake, log } = setup();
    let claimed = false;
    fake.append = async (events, real) => {
      if (!claimed) {
        claimed = true;
        await fake.inner.voidRange(stream, events[0]!.seq, events[events.length - 1]!.seq, new Date(), []);
      }
      return real(events);
    };
    const [got] = await log.publish(stream, [{ eventType: "t", data: 1 }]);
    expect(got!.seq).toBe(2);
    await expect(fake.inner.append([{ ...got!, id: "late", seq: 1 }])).rejects.toBeInstanceOf(SequenceTakenError);
  });
});

describe("holes", () => {
  it("a sequence taken and never stored is claimed after the hole timeout; the events after it are delivered", async () => {
    let mono = 0;
    const { fake, log } = setup({ holeTimeoutMs: 1000, monotonic: () => mono });
    await fake.inner.reserve(stream, 1); // a publisher that took seq 1 and stalled
    await log.publish(stream, [{ eventType: "t", data: 2 }]);
    const sub = follow(log);
    await sleep(50);
    expect(sub.seqs).toEqual([]); // seq 2 waits behind the hole
    expect(fake.count("voidRange")).toBe(0);
    mono = 1000;
    await sub.until(1);
    expect(sub.seqs).toEqual([2]);
    expect(log.stats.holesSkipped).toBe(1);
    // The stalled publisher can no longer store seq 1.
    await expect(fake.inner.append([{ id: "stalled", stream: name, seq: 1, eventType: "t", data: 1, metadata: {}, createdAt: new Date() }])).rejects.toBeInstanceOf(SequenceTakenError);
    await sub.stop();
  });

  it("a page never waits at a young hole, and claims an old one", async () => {
    let mono = 0;
    const { fake, log } = setup({ holeTimeoutMs: 1000, monotonic: () => mono });
    await fake.inner.reserve(stream, 1);
    await log.publish(stream, [{ eventType: "t", data: 2 }]);
    expect(await log.list(stream, 0, 10)).toEqual({ events: [], next: 0, hasMore: true });
    mono = 1000;
    const page = await log.list(stream, 0, 10);
    expect(page.events.map((e) => e.seq)).toEqual([2]);
  });
});

describe("delivery's store calls", () => {
  it("subscribers here get this instance's appends from memory, and the watcher's echo of them wakes no one", async () => {
    const { fake, log } = setup();
    const subs = [follow(log), follow(log), follow(log)];
    await log.publish(stream, [{ eventType: "t", data: 0 }]);
    for (const s of subs) await s.until(1);
    fake.reset();
    for (let i = 1; i <= 5; i++) {
      const [e] = await log.publish(stream, [{ eventType: "t", data: i }]);
      fake.onAppend!(name, { from: e!.seq, to: e!.seq }); // the change stream's echo
    }
    for (const s of subs) await s.until(6);
    await sleep(20);
    expect(fake.count("read")).toBe(0);
    expect(fake.count("head")).toBe(0);
    for (const s of subs) await s.stop();
  });

  it("another instance's append: one shared store read for every subscriber here, then memory", async () => {
    const { fake, log } = setup();
    const subs = [follow(log), follow(log), follow(log), follow(log)];
    await sleep(20);
    fake.reset();
    const seq = await elsewhere(fake, "x");
    fake.onAppend!(name, { from: seq, to: seq });
    for (const s of subs) await s.until(1);
    expect(fake.count("read")).toBe(1);
    expect(fake.count("head")).toBe(0);
    // A local publish continues the tail that read began: no read.
    await log.publish(stream, [{ eventType: "t", data: "y" }]);
    for (const s of subs) await s.until(2);
    expect(fake.count("read")).toBe(1);
    for (const s of subs) await s.stop();
  });

  it("another instance's append carried by the watcher, continuing the tail: no store read at all", async () => {
    const { fake, log } = setup();
    const subs = [follow(log), follow(log), follow(log)];
    await log.publish(stream, [{ eventType: "t", data: 0 }]); // starts the tail
    for (const s of subs) await s.until(1);
    fake.reset();
    for (let i = 0; i < 3; i++) {
      const seq = await elsewhere(fake, i);
      const [event] = await fake.inner.read(stream, seq - 1, 1);
      fake.onAppend!(name, { from: seq, to: seq }, [event!]);
    }
    for (const s of subs) await s.until(4);
    expect(subs[0]!.seqs).toEqual([1, 2, 3, 4]);
    expect(fake.count("read")).toBe(0);
    // Not continuing the tail (an insert after a hole): the subscribers read the store instead.
    await fake.inner.reserve(stream, 1); // seq 5, never stored
    const seq = await elsewhere(fake, "after the hole");
    const [event] = await fake.inner.read(stream, seq - 1, 1);
    fake.onAppend!(name, { from: seq, to: seq }, [event!]);
    await sleep(20);
    expect(fake.count("read")).toBeGreaterThanOrEqual(1);
    expect(subs[0]!.seqs).toEqual([1, 2, 3, 4]);
    for (const s of subs) await s.stop();
  });

  it("head() only when a wake-up found nothing: another writer between reserve and append", async () => {
    const { fake, log } = setup({ holeTimeoutMs: 60_000 });
    const subs = [follow(log), follow(log)];
    await sleep(20);
    fake.reset();
    const seq = await fake.inner.reserve(stream, 1); // reserved elsewhere, not stored yet
    fake.onAppend!(name, { from: seq, to: seq });
    const end = Date.now() + 5_000;
    while (fake.count("head") === 0 && Date.now() < end) await sleep(2);
    await sleep(20);
    // One head() for both subscribers, after their (shared) read found nothing; then the chase
    // reads again soon, shared too.
    expect(fake.count("head")).toBe(1);
    expect(fake.count("read")).toBeGreaterThanOrEqual(1);
    expect(fake.count("read")).toBeLessThanOrEqual(5);
    // The insert lands: the chase finds it.
    await fake.inner.append([{ id: "late", stream: name, seq, eventType: "t", data: 1, metadata: {}, createdAt: new Date() }]);
    for (const s of subs) await s.until(1);
    for (const s of subs) await s.stop();
  });

  it("the idle recheck asks head() once per stream, not per subscriber, and reads only when it moved", async () => {
    const { fake, log } = setup({ idleRecheckMs: 100 });
    const subs = Array.from({ length: 10 }, () => follow(log));
    await sleep(20);
    fake.reset();
    const end = Date.now() + 5_000;
    while (fake.count("head") === 0 && Date.now() < end) await sleep(2);
    // Per subscriber, the first recheck alone would have made 10.
    expect(fake.count("head")).toBeGreaterThanOrEqual(1);
    expect(fake.count("head")).toBeLessThan(10);
    expect(fake.count("read")).toBe(0);
    // An append no watcher reported: the next recheck finds it, with one read for all.
    await elsewhere(fake, "unannounced");
    for (const s of subs) await s.until(1);
    expect(fake.count("read")).toBe(1);
    for (const s of subs) await s.stop();
  });
});
