import { describe, expect, it } from "vitest";
import { ready } from "../../src/core/ordering.js";
import { purgeMarker, type StoredEvent } from "../../src/core/types.js";

const T0 = 1_000_000;
function ev(seq: number, extra: Partial<StoredEvent> = {}): StoredEvent {
  return { id: `e${seq}`, stream: "p/topic/t", seq, eventType: "x", data: seq, metadata: {}, createdAt: new Date(T0), ...extra };
}
const seqs = (r: { events: StoredEvent[] }) => r.events.map((e) => e.seq);

describe("ready(): what a reader may deliver", () => {
  it("delivers contiguous events and moves the cursor", () => {
    const r = ready([ev(1), ev(2), ev(3)], 0, T0, 1000, false);
    expect(seqs(r)).toEqual([1, 2, 3]);
    expect(r.next).toBe(3);
    expect(r.blockedUntil).toBeUndefined();
  });

  it("never delivers 6 before 5: stops at a young hole", () => {
    const r = ready([ev(4), ev(6), ev(7)], 3, T0 + 10, 1000, false);
    expect(seqs(r)).toEqual([4]);
    expect(r.next).toBe(4);
    expect(r.blockedUntil).toBe(T0 + 1000);
    expect(r.holesSkipped).toBe(0);
  });

  it("passes a purged range at once, up to the purge marker, without counting holes", () => {
    const r = ready([purgeMarker("p/topic/t", 50), ev(51)], 3, T0, 1000, false);
    expect(seqs(r)).toEqual([51]);
    expect(r.next).toBe(51);
    expect(r.holesSkipped).toBe(0);
  });

  it("skips a hole once the event after it is older than the hole timeout, and counts it", () => {
    const r = ready([ev(4), ev(7)], 3, T0 + 1000, 1000, false);
    expect(seqs(r)).toEqual([4, 7]);
    expect(r.next).toBe(7);
    expect(r.holesSkipped).toBe(2);
  });

  it("skips void placeholders and expired events without delivering them", () => {
    const r = ready([ev(1), ev(2, { void: true }), ev(3, { expireAt: new Date(T0 - 1) }), ev(4, { expireAt: new Date(T0 + 5) })], 0, T0, 1000, false);
    expect(seqs(r)).toEqual([1, 4]);
    expect(r.next).toBe(4);
  });

  it("delivers a multi-event batch only when all of it is stored", () => {
    const partial = [ev(1), ev(2, { batchEnd: 4 }), ev(3, { batchEnd: 4 })];
    const r1 = ready(partial, 0, T0, 1000, false);
    expect(seqs(r1)).toEqual([1]);
    expect(r1.blockedUntil).toBe(T0 + 1000);
    const r2 = ready([...partial, ev(4, { batchEnd: 4 })], 0, T0, 1000, false);
    expect(seqs(r2)).toEqual([1, 2, 3, 4]);
  });

  it("skips the whole of an incomplete batch whose publisher died", () => {
    const docs = [ev(2, { batchEnd: 4 }), ev(3, { batchEnd: 4 }), ev(5)];
    const r = ready(docs, 1, T0 + 1000, 1000, false);
    expect(seqs(r)).toEqual([5]);
    expect(r.next).toBe(5);
    expect(r.holesSkipped).toBe(1);
  });

  it("stops before a batch that the page cut off, to read it whole next time", () => {
    const r = ready([ev(1), ev(2, { batchEnd: 3 })], 0, T0, 1000, true);
    expect(seqs(r)).toEqual([1]);
    expect(r.next).toBe(1);
    expect(r.blockedUntil).toBeUndefined();
  });

  it("resumes in the middle of a batch", () => {
    const r = ready([ev(3, { batchEnd: 4 }), ev(4, { batchEnd: 4 })], 2, T0, 1000, false);
    expect(seqs(r)).toEqual([3, 4]);
  });
});
