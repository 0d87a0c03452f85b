import { expect, it } from "vitest";
import { RecentCache } from "../../src/api/common.js";
import type { StoredEvent } from "../../src/core/types.js";

const ev = (seq: number): StoredEvent => ({ id: `e${seq}`, stream: "p/topic/s", seq, eventType: "", data: null, metadata: {}, createdAt: new Date(0) });

it("RecentCache builds once per event and keeps only the newest `max` conversions", () => {
  const cache = new RecentCache<string>(3);
  let builds = 0;
  const build = (e: StoredEvent): string => `${e.seq}:${++builds}`;
  const events = [1, 2, 3, 4].map(ev);
  expect(cache.get(events[0]!, build)).toBe("1:1");
  expect(cache.get(events[0]!, build)).toBe("1:1"); // fanned out: not built again
  cache.get(events[1]!, build);
  cache.get(events[2]!, build);
  cache.get(events[3]!, build); // the oldest (1) goes
  expect(builds).toBe(4);
  expect(cache.get(events[3]!, build)).toBe("4:4");
  expect(cache.get(events[0]!, build)).toBe("1:5"); // rebuilt after eviction
});
