/** The in-memory store's own bounds: retention per stream and the expiry sweep (MongoDB has TTL indexes instead). */
import { describe, expect, it } from "vitest";
import { EventLog } from "../../src/core/log.js";
import { streamName, type StoredEvent, type StreamId } from "../../src/core/types.js";
import { MemoryStore } from "../../src/store/memory/index.js";

const stream: StreamId = { project: "p", kind: "topic", key: "retained" };
const T0 = 1_700_000_000_000;
/** Without the purge marker that stands for what retention or expiry removed. */
const live = (events: StoredEvent[]): StoredEvent[] => events.filter((e) => !e.void);

function ev(seq: number, extra: Partial<StoredEvent> = {}): StoredEvent {
  return { id: `e${seq}`, stream: streamName(stream), seq, eventType: "t", data: { seq }, metadata: {}, createdAt: new Date(T0 + seq), ...extra };
}

async function fill(store: MemoryStore, from: number, to: number, extra: (seq: number) => Partial<StoredEvent> = () => ({})): Promise<void> {
  await store.reserve(stream, to - from + 1);
  for (let seq = from; seq <= to; seq++) await store.append([ev(seq, { idempotencyKey: `k${seq}`, ...extra(seq) })]);
}

describe("memory store bounds", () => {
  it("keeps each stream's newest retainEvents events (trimmed in chunks) and forgets the rest everywhere", async () => {
    const store = new MemoryStore({ retainEvents: 100 });
    await fill(store, 1, 1000);
    const all = live(await store.read(stream, 0, 10_000));
    // Trimmed once the stream is an eighth (at least 64) over the bound: between 100 and 164 kept.
    expect(all.length).toBeGreaterThanOrEqual(100);
    expect(all.length).toBeLessThanOrEqual(164);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: all.length }, (_, i) => 1001 - all.length + i));
    expect(await store.head(stream)).toBe(1000);
    expect(await store.getEvent("e1")).toBeUndefined();
    expect(await store.findByIdempotencyKey(stream, "k1")).toBeUndefined();
    expect((await store.getEvent("e1000"))?.seq).toBe(1000);
    expect((await store.read(stream, 999, 10)).map((e) => e.seq)).toEqual([1000]);
    expect((await store.readBefore(stream, 1000, 3)).map((e) => e.seq)).toEqual([999, 998, 997]);
    expect((await store.listStreams("p", { limit: 10 }))[0]).toMatchObject({ head: 1000, events: all.length });
    // A trimmed sequence can never be written again.
    await expect(store.append([ev(1)])).rejects.toThrow(/retained window/);
  });

  it("a subscriber from the start skips what retention dropped and gets the rest in order", async () => {
    const store = new MemoryStore({ retainEvents: 100 });
    await fill(store, 1, 500);
    const log = new EventLog(store, { holeTimeoutMs: 50 });
    const page = await log.list(stream, 0, 1000);
    const seqs = page.events.map((e) => e.seq);
    expect(seqs[seqs.length - 1]).toBe(500);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => 501 - seqs.length + i));
    expect(seqs.length).toBeLessThanOrEqual(164);
    await log.close();
  });

  it("the sweep deletes events past expire_at, like MongoDB's TTL monitor, and nothing else", async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 });
    // 1-5 expire at T0+10 s, 6 never, 7-8 at T0+10 s, 9-10 at T0+60 s.
    await fill(store, 1, 10, (seq) => (seq === 6 ? {} : { expireAt: new Date(T0 + (seq >= 9 ? 60_000 : 10_000)) }));
    store.sweepExpired(T0 + 9_999);
    expect(live(await store.read(stream, 0, 100)).length).toBe(10);
    store.sweepExpired(T0 + 10_000);
    expect(live(await store.read(stream, 0, 100)).map((e) => e.seq)).toEqual([6, 9, 10]);
    expect(await store.getEvent("e7")).toBeUndefined();
    expect(await store.findByIdempotencyKey(stream, "k2")).toBeUndefined();
    expect((await store.listStreams("p", { limit: 10 }))[0]).toMatchObject({ head: 10, events: 3 });
    // Sequences stay taken: the next reservation continues after 10.
    expect(await store.reserve(stream, 1)).toBe(11);
    store.sweepExpired(T0 + 60_000);
    expect(live(await store.read(stream, 0, 100)).map((e) => e.seq)).toEqual([6]);
  });

  it("the sweep never cuts off a reserved sequence whose append is still on its way", async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 });
    await fill(store, 1, 3, () => ({ expireAt: new Date(T0) }));
    await store.reserve(stream, 1); // 4: reserved, not stored yet
    store.sweepExpired(T0 + 1);
    await store.append([ev(4)]);
    expect(live(await store.read(stream, 0, 100)).map((e) => e.seq)).toEqual([4]);
  });
});
