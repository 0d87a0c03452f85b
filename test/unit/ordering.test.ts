import { describe, expect, it } from "vitest";
import { HoleClock, ready } from "../../src/core/ordering.js";
import { purgeMarker, type StoredEvent } from "../../src/core/types.js";

const T0 = 1_000_000;
function ev(seq: number, extra: Partial<StoredEvent> = {}): StoredEvent {
  return { id: `e${seq}`, stream: "p/topic/t", seq, eventType: "x", data: seq, metadata: {}, createdAt: new Date(T0), ...extra };
}
const seqs = (r: { events: StoredEvent[] }) => r.events.map((e) => e.seq);

describe("ready(): what a reader may deliver", () => {
  it("delivers contiguous events and moves the cursor", () => {
    const r = ready([ev(1), ev(2), ev(3)], 0, T0, false);
    expect(seqs(r)).toEqual([1, 2, 3]);
    expect(r.next).toBe(3);
    expect(r.hole).toBeUndefined();
  });

  it("never delivers 6 before 5: stops at a hole and names it, whatever the events' creation times", () => {
    // Created long ago by a skewed or stalled publisher: ready() does not look at created_at.
    const r = ready([ev(4), ev(6, { createdAt: new Date(0) }), ev(7)], 3, T0 + 10_000_000, false);
    expect(seqs(r)).toEqual([4]);
    expect(r.next).toBe(4);
    expect(r.hole).toEqual({ from: 5, to: 5 });
  });

  it("passes a purged range at once, up to the purge marker", () => {
    const r = ready([purgeMarker("p/topic/t", 50), ev(51)], 3, T0, false);
    expect(seqs(r)).toEqual([51]);
    expect(r.next).toBe(51);
    expect(r.hole).toBeUndefined();
  });

  it("passes claimed holes (void placeholders) and expired events without delivering them", () => {
    const r = ready([ev(1), ev(2, { void: true }), ev(3, { expireAt: new Date(T0 - 1) }), ev(4, { expireAt: new Date(T0 + 5) })], 0, T0, false);
    expect(seqs(r)).toEqual([1, 4]);
    expect(r.next).toBe(4);
  });

  it("delivers a multi-event batch only when all of it is stored; the missing rest is the hole", () => {
    const partial = [ev(1), ev(2, { batchEnd: 4 }), ev(3, { batchEnd: 4 })];
    const r1 = ready(partial, 0, T0, false);
    expect(seqs(r1)).toEqual([1]);
    expect(r1.hole).toEqual({ from: 4, to: 4 });
    const r2 = ready([...partial, ev(4, { batchEnd: 4 })], 0, T0, false);
    expect(seqs(r2)).toEqual([1, 2, 3, 4]);
  });

  it("passes the whole of a batch with a void member (claimed or failed), never a part of it", () => {
    const docs = [ev(2, { batchEnd: 4 }), ev(3, { batchEnd: 4 }), ev(4, { void: true }), ev(5)];
    const r = ready(docs, 1, T0, false);
    expect(seqs(r)).toEqual([5]);
    expect(r.next).toBe(5);
  });

  it("stops before a batch that the page cut off, to read it whole next time", () => {
    const r = ready([ev(1), ev(2, { batchEnd: 3 })], 0, T0, true);
    expect(seqs(r)).toEqual([1]);
    expect(r.next).toBe(1);
    expect(r.hole).toBeUndefined();
  });

  it("resumes in the middle of a batch", () => {
    const r = ready([ev(3, { batchEnd: 4 }), ev(4, { batchEnd: 4 })], 2, T0, false);
    expect(seqs(r)).toEqual([3, 4]);
  });
});

describe("HoleClock: a hole's age on this process's monotonic clock", () => {
  it("counts from the first sighting, per stream and first missing sequence, and forgets", () => {
    let t = 100;
    const c = new HoleClock(() => t, 2);
    expect(c.age("a", 5)).toBe(0);
    t = 350;
    expect(c.age("a", 5)).toBe(250);
    expect(c.age("b", 5)).toBe(0);
    c.forget("a", 5);
    expect(c.age("a", 5)).toBe(0);
    // Bounded: the oldest entry goes; its hole starts waiting again (later, never earlier).
    t = 400;
    c.age("c", 1);
    expect(c.age("b", 5)).toBe(0);
  });
});
