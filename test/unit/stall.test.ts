/** The stall watch's decisions, on stand-in responses (the real thing is in test/slow-subscriber.test.ts). */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { Req, Res } from "../../src/server/sse.js";
import { releaseWriters, StallWatch } from "../../src/server/stall.js";

class FakeRes extends EventEmitter {
  writableLength = 0;
  writableNeedDrain = false;
  destroyed = false;
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

function setup(stallTimeoutMs = 1000, backlogBytes = 1 << 20) {
  const cuts: string[] = [];
  const watch = new StallWatch({ stallTimeoutMs, backlogBytes, onCut: (reason) => cuts.push(reason) });
  const res = new FakeRes();
  watch.track({ url: "/x" } as unknown as Req, res as unknown as Res);
  return { watch, res, cuts };
}

describe("StallWatch", () => {
  it("cuts off a response that waits for drain longer than the timeout, not before", () => {
    const { watch, res, cuts } = setup();
    res.writableNeedDrain = true;
    watch.check(0);
    watch.check(999);
    expect(cuts).toEqual([]);
    watch.check(1000);
    expect(cuts).toEqual(["stalled"]);
    expect(res.destroyed).toBe(true);
    watch.close();
  });

  it("leaves a slow reader alone while it drains now and then", () => {
    const { watch, res, cuts } = setup();
    res.writableNeedDrain = true;
    for (let t = 0; t <= 5000; t += 250) {
      watch.check(t);
      if (t % 750 === 0) res.emit("drain"); // drained, written again, waiting again
    }
    expect(cuts).toEqual([]);
    res.writableNeedDrain = false;
    watch.check(6000);
    res.writableNeedDrain = true;
    watch.check(6100);
    watch.check(7000);
    expect(cuts).toEqual([]);
    watch.close();
  });

  it("cuts off at once a response with more unsent bytes than the backlog bound", () => {
    const { watch, res, cuts } = setup(0, 65536);
    res.writableLength = 65537;
    watch.check(0);
    expect(cuts).toEqual(["backlog"]);
    watch.close();
  });

  it("wakes writers left waiting for drain when the connection closes", () => {
    const res = new FakeRes();
    let woken = false;
    res.once("drain", () => (woken = true));
    releaseWriters(res as unknown as Res);
    expect(woken).toBe(true);
  });
});
