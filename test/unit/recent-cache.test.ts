import { expect, it } from "vitest";
import { RecentCache } from "../../src/api/common.js";
import type { StoredEvent } from "../../src/core/types.js";

const ev = (seq: number): StoredEvent => ({ id: `e${seq}`, stream: "p/topic/s", seq, eventType: "", data: null, metadata: {}, createdAt: new Date(0) });

it("RecentCache builds once per event and keeps only the newest conversions within its bytes", () => {
  const cache = new RecentCache<string>(20, (_e, v) => v.length * 2);
  let builds = 0;
  const build = (e: StoredEvent): string => `${e.seq}:${++builds}`;
  const events = [1, 2, 3, 4].map(ev);
  expect(cache.get(events[0]!, build)).toBe("1:1");
  expect(cache.get(events[0]!, build)).toBe("1:1"); // fanned out: not built again
  cache.get(events[1]!, build);
  cache.get(events[2]!, build);
  expect(cache.bytes).toBe(18);
  cache.get(events[3]!, build); // over 20 bytes: the oldest (1) goes
  expect(cache.bytes).toBe(18);
  expect(builds).toBe(4);
  expect(cache.get(events[3]!, build)).toBe("4:4");
  expect(cache.get(events[0]!, build)).toBe("1:5"); // rebuilt after eviction
  // An entry larger than the whole cache is returned, never kept.
  const big = new RecentCache<string>({ value: 4 }, (_e, v) => v.length);
  expect(big.get(events[0]!, () => "too large")).toBe("too large");
  expect(big.bytes).toBe(0);
});
