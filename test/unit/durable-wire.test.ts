/** Durable Streams offsets, cursors and header values (src/api/durable/wire.ts). */
import { describe, expect, it } from "vitest";
import { formatOffset, newIncarnation, OFFSET_UNITS, parseOffset, responseCursor, sseData, strictUint } from "../../src/api/durable/wire.js";
import { judgeProducer } from "../../src/api/durable/index.js";

describe("durable wire", () => {
  it("formats offsets that sort byte-wise in position order and never collide with -1 or now", () => {
    const inc = newIncarnation();
    expect(inc).toMatch(/^\d{16}$/);
    const positions = [0, 1, 2, 9, 10, 99, 100, 12345, 2 ** 40, Number.MAX_SAFE_INTEGER];
    const offsets = positions.map((p) => formatOffset(inc, p));
    expect([...offsets].sort()).toEqual(offsets);
    for (const o of offsets) expect(o).toMatch(/^\d{16}_\d{16}$/);
  });

  it("resolves offsets: sentinels, own incarnation, inherited ancestors, the universal zero", () => {
    const meta = { inc: "1111111111111111", ancestors: [{ inc: "2222222222222222", upTo: 5 }] };
    expect(parseOffset("-1", meta)).toEqual({ kind: "start" });
    expect(parseOffset("now", meta)).toEqual({ kind: "now" });
    expect(parseOffset("0000000000000000_0000000000000000", meta)).toEqual({ kind: "start" });
    expect(parseOffset("1111111111111111_0000000000000042", meta)).toEqual({ kind: "at", position: 42 });
    expect(parseOffset("2222222222222222_0000000000000005", meta)).toEqual({ kind: "at", position: 5 });
    // Past the fork point the source's offsets name data the fork does not have; other incarnations are refused.
    expect(() => parseOffset("2222222222222222_0000000000000006", meta)).toThrow();
    expect(() => parseOffset("3333333333333333_0000000000000001", meta)).toThrow();
    for (const bad of ["", "0,1", "0 1", "abc", "1_2", "-2", "../x", "1111111111111111_000000000000004a"]) expect(() => parseOffset(bad, meta)).toThrow();
  });

  it("offsets of streams with offset units: +1 lands inside the next message, which a read returns whole; unit-less (older) streams keep counting messages", () => {
    const inc = "1111111111111111";
    const meta = { inc, ancestors: [{ inc: "2222222222222222", upTo: 5 }], offsetUnits: OFFSET_UNITS };
    const plusOne = (o: string) => o.replace(/_(\d+)$/, (_m, n: string) => `_${String(Number(n) + 1).padStart(n.length, "0")}`);
    for (const position of [0, 1, 7, 12345]) {
      const o = formatOffset(inc, position, OFFSET_UNITS);
      expect(o).toMatch(/^\d{16}_\d{16}$/);
      // The offset and the offset + 1 (what y-durable-streams resumes at) read after the same message.
      const want = position === 0 ? { kind: "start" } : { kind: "at", position };
      expect(parseOffset(o, meta)).toEqual(want);
      expect(parseOffset(plusOne(o), meta)).toEqual(want);
      expect(parseOffset(formatOffset(inc, position + 1, OFFSET_UNITS), meta)).toEqual({ kind: "at", position: position + 1 });
    }
    // Inherited offsets use the same units (a fork takes its source's).
    expect(parseOffset(`2222222222222222_${String(5 * OFFSET_UNITS).padStart(16, "0")}`, meta)).toEqual({ kind: "at", position: 5 });
    expect(() => parseOffset(`2222222222222222_${String(6 * OFFSET_UNITS).padStart(16, "0")}`, meta)).toThrow();
    // A stream created before offset units keeps its offsets: already issued offsets stay valid.
    const legacy = { inc, ancestors: [] };
    expect(formatOffset(inc, 42)).toBe("1111111111111111_0000000000000042");
    expect(parseOffset("1111111111111111_0000000000000042", legacy)).toEqual({ kind: "at", position: 42 });
    // Order is position order, within and across the inside-a-message values.
    const values = [0, 1, OFFSET_UNITS - 1, OFFSET_UNITS, OFFSET_UNITS + 1, 10 * OFFSET_UNITS].map((v) => `${inc}_${String(v).padStart(16, "0")}`);
    expect(values.map((v) => parseOffset(v, meta)).map((p) => (p.kind === "at" ? p.position : 0))).toEqual([0, 0, 0, 1, 1, 10]);
  });

  it("parses strict non-negative integers only", () => {
    expect(strictUint("0")).toBe(0);
    expect(strictUint("3600")).toBe(3600);
    for (const bad of ["", "03600", "+1", "-1", "1.5", "3.6e3", " 1", "9007199254740993"]) expect(strictUint(bad)).toBeUndefined();
  });

  it("moves cursors forward, never back, past a cursor the client echoes", () => {
    const now = Date.UTC(2026, 0, 1);
    const current = Number(responseCursor(undefined, now));
    expect(Number(responseCursor(String(current - 5), now))).toBe(current);
    for (let i = 0; i < 50; i++) {
      const next = Number(responseCursor(String(current), now));
      expect(next).toBeGreaterThan(current);
      expect(next).toBeLessThanOrEqual(current + 180);
    }
    expect(responseCursor("garbage", now)).toBe(String(current));
  });

  it("writes payload lines so no CR/LF can end an SSE event early, and keeps leading spaces", () => {
    const out = sseData("a\r\n\r\nevent: control\rdata: x\n y");
    const lines = out.split("\n");
    expect(lines.every((l) => l.startsWith("data:"))).toBe(true);
    expect(out).not.toMatch(/\r/);
    expect(lines).toContain("data:  y"); // a reader strips one space and keeps " y"
  });

  it("judges producer requests as PROTOCOL.md 5.2.1 says", () => {
    expect(judgeProducer(undefined, { id: "p", epoch: 0, seq: 0 })).toMatchObject({ kind: "accept" });
    expect(judgeProducer(undefined, { id: "p", epoch: 3, seq: 0 })).toMatchObject({ kind: "accept", next: { epoch: 3, lastSeq: 0 } });
    expect(judgeProducer(undefined, { id: "p", epoch: 0, seq: 2 })).toEqual({ kind: "gap", expected: 0, received: 2 });
    const s = { epoch: 2, lastSeq: 4 };
    expect(judgeProducer(s, { id: "p", epoch: 1, seq: 9 })).toEqual({ kind: "stale", epoch: 2 });
    expect(judgeProducer(s, { id: "p", epoch: 3, seq: 1 })).toEqual({ kind: "epoch-seq" });
    expect(judgeProducer(s, { id: "p", epoch: 3, seq: 0 })).toMatchObject({ kind: "accept", next: { epoch: 3, lastSeq: 0 } });
    expect(judgeProducer(s, { id: "p", epoch: 2, seq: 4 })).toEqual({ kind: "duplicate", lastSeq: 4 });
    expect(judgeProducer(s, { id: "p", epoch: 2, seq: 0 })).toEqual({ kind: "duplicate", lastSeq: 4 });
    expect(judgeProducer(s, { id: "p", epoch: 2, seq: 5 })).toMatchObject({ kind: "accept", next: { epoch: 2, lastSeq: 5 } });
    expect(judgeProducer(s, { id: "p", epoch: 2, seq: 7 })).toEqual({ kind: "gap", expected: 5, received: 7 });
  });
});
