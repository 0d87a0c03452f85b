/**
 * Generated sequences (fast-check) against the stream guards' own decisions, on stand-ins: the
 * revocation check (src/server/revocation.ts), the instance's unsent-bytes budget
 * (src/server/stall.ts), the cap of unauthenticated streams (src/server/unauthenticated.ts) and
 * the bounded metrics labels (src/server/metrics.ts). The real clients are in
 * test/stream-auth.test.ts, test/unsent-budget.test.ts, test/unauthenticated-streams.test.ts and
 * test/listener-fuzz.test.ts.
 */
import { EventEmitter } from "node:events";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { StreamKeys, untilRevoked } from "../../src/server/revocation.js";
import { StallWatch } from "../../src/server/stall.js";
import { UnauthenticatedStreams, UNAUTHENTICATED_STREAM_PATHS } from "../../src/server/unauthenticated.js";
import { METHOD_LABELS, requestLabels } from "../../src/server/metrics.js";
import type { Req, Res } from "../../src/server/sse.js";

const params = { seed: Number(process.env["FUZZ_SEED"] ?? 1111), numRuns: Number(process.env["FUZZ_RUNS"] ?? 100) };
const tick = () => new Promise((r) => setImmediate(r));

describe("revocation check", () => {
  it("ends exactly the streams of keys found revoked, with one query per check for all keys in use, and nothing during an outage", async () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant("hold" as const), key: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant("revoke" as const), key: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ kind: fc.constant("outage" as const), on: fc.boolean() }),
      fc.record({ kind: fc.constant("check" as const) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 40 }), async (ops) => {
        const revoked = new Set<string>();
        let down = false;
        const queries: string[][] = [];
        const keys = new StreamKeys(
          {
            async liveHashes(hashes) {
              queries.push([...hashes]);
              if (down) throw new Error("key store unavailable");
              return new Set(hashes.filter((h) => !revoked.has(h)));
            },
          },
          60_000,
        );
        const open: { key: string; ended: boolean; release(): void }[] = [];
        for (const o of ops) {
          if (o.kind === "hold") {
            const hold = keys.hold(`k${o.key}`);
            const s = { key: `k${o.key}`, ended: false, release: hold.release };
            void hold.revoked.then((err) => {
              expect(err.code).toBe(Code.Unauthenticated);
              s.ended = true;
            });
            open.push(s);
          } else if (o.kind === "release" && open.length > 0) {
            open.splice(o.pick % open.length, 1)[0]!.release();
          } else if (o.kind === "revoke") revoked.add(`k${o.key}`);
          else if (o.kind === "outage") down = o.on;
          else if (o.kind === "check") {
            const inUse = new Set(open.filter((s) => !s.ended).map((s) => s.key));
            const before = queries.length;
            await keys.check();
            await tick();
            // One query, naming each key in use once; none when no stream is open.
            expect(queries.length - before).toBe(inUse.size > 0 ? 1 : 0);
            if (inUse.size > 0) expect(new Set(queries.at(-1))).toEqual(inUse);
            for (const s of open) {
              if (!inUse.has(s.key)) continue;
              expect(s.ended).toBe(!down && revoked.has(s.key));
            }
            // Ended streams leave the registry; the others stay.
            for (let i = open.length - 1; i >= 0; i--) if (open[i]!.ended) open.splice(i, 1);
          }
        }
        expect(keys.streams).toBe(open.filter((s) => !s.ended).length);
        keys.close();
      }),
      params,
    );
  });

  it("untilRevoked ends a source that waits forever with the key's error, and returns it", async () => {
    let returned = false;
    const source: AsyncIterable<number> = {
      [Symbol.asyncIterator]: () => ({
        next: () => new Promise<IteratorResult<number>>(() => {}),
        return: async () => ((returned = true), { done: true as const, value: undefined }),
      }),
    };
    const keys = new StreamKeys({ liveHashes: async () => new Set() }, 60_000);
    const hold = keys.hold("gone");
    const reading = (async () => {
      for await (const _ of untilRevoked(source, hold)) return "value";
      return "done";
    })().catch((e: { code?: Code }) => e.code);
    await keys.check();
    expect(await reading).toBe(Code.Unauthenticated);
    await tick();
    expect(returned).toBe(true);
    keys.close();
  });
});

class FakeRes extends EventEmitter {
  writableLength = 0;
  writableNeedDrain = false;
  destroyed = false;
  write(chunk: { length: number }): boolean {
    this.writableLength += chunk.length;
    return this.writableLength < 16384;
  }
  end(chunk?: { length: number }): this {
    if (chunk) this.writableLength += chunk.length;
    return this;
  }
  destroy(): void {
    this.destroyed = true;
    this.writableLength = 0;
    this.emit("close");
  }
}

describe("unsent-bytes budget", () => {
  it("after every write, the instance holds at most the budget, its count is exact, and only the budget cuts", () => {
    const BUDGET = 1 << 20;
    const op = fc.oneof(
      fc.record({ kind: fc.constant("open" as const) }),
      fc.record({ kind: fc.constant("write" as const), pick: fc.nat(), bytes: fc.integer({ min: 1, max: 600_000 }), end: fc.boolean() }),
      fc.record({ kind: fc.constant("drain" as const), pick: fc.nat(), bytes: fc.nat({ max: 600_000 }) }),
      fc.record({ kind: fc.constant("close" as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const cuts: string[] = [];
        const watch = new StallWatch({ stallTimeoutMs: 0, backlogBytes: 0, maxUnsentBytes: BUDGET, onCut: (reason) => cuts.push(reason) });
        const open: FakeRes[] = [];
        let closedByClient = 0;
        for (const o of ops) {
          const live = open.filter((r) => !r.destroyed);
          if (o.kind === "open") {
            const res = new FakeRes();
            watch.track({ url: "/x" } as unknown as Req, res as unknown as Res);
            open.push(res);
          } else if (live.length === 0) continue;
          else if (o.kind === "write") {
            const res = live[o.pick % live.length]!;
            const r = res as unknown as Res;
            if (o.end) r.end(Buffer.alloc(o.bytes));
            else r.write(Buffer.alloc(o.bytes));
            expect(watch.unsentBytes).toBeLessThanOrEqual(BUDGET);
          } else if (o.kind === "drain") {
            const res = live[o.pick % live.length]!;
            res.writableLength = Math.max(0, res.writableLength - o.bytes);
            res.emit("drain");
          } else {
            live[o.pick % live.length]!.destroy();
            closedByClient++;
          }
          expect(watch.unsentBytes).toBe(open.filter((r) => !r.destroyed).reduce((n, r) => n + r.writableLength, 0));
        }
        expect(cuts.every((c) => c === "budget")).toBe(true);
        // Everything cut was destroyed, and nothing else was.
        expect(cuts.length).toBe(open.filter((r) => r.destroyed).length - closedByClient);
        watch.close();
      }),
      params,
    );
  });
});

describe("who is cut for the budget", () => {
  it("the reader that has gone longest without taking anything, not the one written last", async () => {
    const cuts: string[] = [];
    const watch = new StallWatch({ stallTimeoutMs: 0, backlogBytes: 0, maxUnsentBytes: 1 << 20, onCut: (_r, req) => cuts.push(req.url ?? "") });
    const [slow, busy, fresh] = ["/slow", "/busy", "/fresh"].map((url) => {
      const res = new FakeRes();
      watch.track({ url } as unknown as Req, res as unknown as Res);
      return res;
    });
    (slow as unknown as Res).write(Buffer.alloc(400_000));
    await new Promise((r) => setTimeout(r, 5));
    (busy as unknown as Res).write(Buffer.alloc(400_000));
    // `busy` takes some of what it holds: it is making progress.
    busy!.writableLength = 100_000;
    busy!.emit("drain");
    (fresh as unknown as Res).write(Buffer.alloc(700_000));
    expect(cuts).toEqual(["/slow"]);
    expect([slow!.destroyed, busy!.destroyed, fresh!.destroyed]).toEqual([true, false, false]);
    expect(watch.unsentBytes).toBe(800_000);
    watch.close();
  });
});

describe("cap of unauthenticated streams", () => {
  it("never holds more than the cap, refuses exactly when full, and gives every place back", () => {
    const paths = [...UNAUTHENTICATED_STREAM_PATHS, "/events.v1.StreamService/Subscribe", "/grpc.health.v1.Health/Check"];
    const op = fc.oneof(fc.record({ kind: fc.constant("open" as const), path: fc.constantFrom(...paths) }), fc.record({ kind: fc.constant("close" as const), pick: fc.nat() }));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 60 }), (cap, ops) => {
        let refused = 0;
        const cap_ = new UnauthenticatedStreams(cap, () => refused++);
        const held: EventEmitter[] = [];
        for (const o of ops) {
          if (o.kind === "close") {
            if (held.length > 0) held.splice(o.pick % held.length, 1)[0]!.emit("close");
            continue;
          }
          const res = Object.assign(new EventEmitter(), { setHeader() {}, writeHead() {}, end() {} });
          const counted = UNAUTHENTICATED_STREAM_PATHS.has(o.path);
          const full = cap_.open >= cap;
          const before = refused;
          const admitted = cap_.admit({ url: o.path, headers: { "content-type": "application/grpc" }, httpVersionMajor: 2 } as unknown as Req, res as unknown as Res);
          expect(admitted).toBe(!counted || !full);
          expect(refused - before).toBe(counted && full ? 1 : 0);
          if (admitted && counted) held.push(res);
          expect(cap_.open).toBeLessThanOrEqual(cap);
          expect(cap_.open).toBe(held.length);
        }
        for (const r of held) r.emit("close");
        expect(cap_.open).toBe(0);
      }),
      params,
    );
  });
});

describe("metrics labels", () => {
  it("map any method and status a client can cause onto fixed sets, keeping the template", () => {
    fc.assert(
      fc.property(fc.oneof(fc.constantFrom(...METHOD_LABELS), fc.string({ maxLength: 12 })), fc.constantFrom("/v1/stream/{name}", "/api/v1/events/stream"), fc.oneof(fc.integer({ min: 0, max: 1000 }).map(String), fc.string({ maxLength: 5 })), (method, template, status) => {
        const l = requestLabels(`${method} ${template}`, status);
        const [m, t] = [l.route.slice(0, l.route.lastIndexOf(" ")), l.route.slice(l.route.lastIndexOf(" ") + 1)];
        expect(METHOD_LABELS.has(m) || m === "other").toBe(true);
        expect(m === method || !METHOD_LABELS.has(method)).toBe(true);
        expect(t).toBe(template);
        expect(l.status).toMatch(/^([1-5]\d\d|other)$/);
      }),
      params,
    );
  });
});
