/**
 * Fault injection against the invariant: an acknowledged event is never skipped by any reader, and
 * an event a reader skipped is never acknowledged — whatever the clocks, stalls or crashes.
 *
 * Two log instances (two EventLogs, each on its own store connection: two MongoClients on one
 * database, or one shared memory store) publish concurrently to one stream, with a subscriber on
 * each. Faults are injected by a store wrapper (test/support/faults.ts) on every store, and on
 * MongoDB also through a TCP proxy that speaks the wire protocol (test/support/proxy.ts). After
 * each run, checkInvariant() checks every acked event reached every subscriber once, in order, that
 * nothing reported "not stored" was delivered, and that every sequence up to the counter is an
 * acked event, a placeholder, or an event of a publish reported "outcome unknown".
 *
 * Runs on the memory store, on the test MongoDB server, and on MONGODB_URI when set.
 */
import { afterAll, describe, expect, it } from "vitest";
import { randomUUID } from "node:crypto";
import { EventLog } from "../src/core/log.js";
import type { Store } from "../src/core/store.js";
import type { EventDraft, StoredEvent, StreamId } from "../src/core/types.js";
import { MongoStore } from "../src/store/mongo/index.js";
import { checkInvariant, classify, FaultControl, Recorder, type FaultPlan, type Figures, type Outcome } from "./support/faults.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { TcpProxy, type WireCommand, type WireFault } from "./support/proxy.js";
import { storeFactories } from "./support/stores.js";

interface Run {
  name: string;
  holeTimeoutMs: number;
  /** Per instance: wall-clock skew (ms) of its log. */
  skewMs?: [number, number];
  plans?: [FaultPlan, FaultPlan];
  publishers?: number;
  perPublisher?: number;
  /** Take the store down (wrapper) for this long, this long after the start. */
  down?: { atMs: number; forMs: number };
  /** Build the two stores (default: the factory's, one client each, polling watcher). */
  stores?: () => Promise<Store[]>;
  /** Pause between one publisher's publishes (ms), so the instances' activity overlaps. */
  paceMs?: number;
  /** Called once mid-run (e.g. to cut a proxy). */
  midRun?: { atMs: number; run: () => Promise<void> };
}

/** Every 1-in-n appends (per instance) gets the fault, starting with the k-th. */
function every(n: number, fault: FaultPlan["append"] extends ((...a: never[]) => infer R) | undefined ? R : never, k = 2): FaultPlan["append"] {
  let i = 0;
  return () => (i++ % n === k ? fault : undefined);
}

const figures: Record<string, Figures> = {};

async function run(factoryName: string, makeStore: () => Promise<Store>, r: Run): Promise<Figures> {
  const control = new FaultControl();
  const bases = r.stores ? await r.stores() : factoryName === "memory" ? [await makeStore()].flatMap((s) => [s, s]) : [await makeStore(), await makeStore()];
  const stores = bases.map((b, i) => control.wrap(b, r.plans?.[i] ?? {}));
  const logs = stores.map((s, i) => new EventLog(s, { holeTimeoutMs: r.holeTimeoutMs, now: () => Date.now() + (r.skewMs?.[i] ?? 0), idleRecheckMs: 100 }));
  const stream: StreamId = { project: "faults", kind: "topic", key: `${r.name}-${randomUUID().slice(0, 8)}` };
  const recorders = logs.map((l) => new Recorder(l, stream));
  const outcomes: Outcome[] = [];
  const P = r.publishers ?? 4;
  const N = r.perPublisher ?? 40;
  const timers: NodeJS.Timeout[] = [];
  if (r.down) {
    timers.push(setTimeout(() => (control.down = true), r.down.atMs));
    timers.push(setTimeout(() => (control.down = false), r.down.atMs + r.down.forMs));
  }
  let mid: Promise<void> | undefined;
  if (r.midRun) timers.push(setTimeout(() => (mid = r.midRun!.run()), r.midRun.atMs));
  try {
    await Promise.all(
      logs.flatMap((log, i) =>
        Array.from({ length: P }, async (_, p) => {
          for (let k = 0; k < N; k++) {
            // Mostly single events, every fourth publish a batch of three (all-or-nothing).
            const size = k % 4 === 3 ? 3 : 1;
            const drafts: EventDraft[] = Array.from({ length: size }, (_, j) => ({ id: `${stream.key}.${i}.${p}.${k}.${j}`, eventType: "t", data: { i, p, k, j } }));
            const settled = await log.publish(stream, drafts).then(
              (value): PromiseSettledResult<StoredEvent[]> => ({ status: "fulfilled", value }),
              (reason: unknown): PromiseSettledResult<StoredEvent[]> => ({ status: "rejected", reason }),
            );
            outcomes.push(classify(drafts.map((d) => d.id!), settled));
            // Spread the publishes over the outage, or over the other instance's stalls.
            if (r.down || r.midRun || r.paceMs) await new Promise((res) => setTimeout(res, r.paceMs ?? 5));
          }
        }),
      ),
    );
    timers.forEach(clearTimeout);
    control.down = false;
    await mid;
    await control.settle();
    // A last acked event: every hole before it must be claimed or filled for it to be delivered.
    let sentinel: StoredEvent[] | undefined;
    const sentinelId = `sentinel.${stream.key}`;
    for (let attempt = 0; !sentinel && attempt < 50; attempt++) {
      sentinel = await logs[0]!.publish(stream, [{ id: sentinelId, eventType: "end", data: null }]).catch(async () => {
        await new Promise((res) => setTimeout(res, 200));
        return undefined;
      });
    }
    expect(sentinel, "the store came back").toBeDefined();
    outcomes.push({ ids: [sentinelId], kind: "acked", seqs: [sentinel![0]!.seq] });
    await Promise.all(recorders.map((rec) => rec.until(() => rec.got.some((g) => g.id === sentinelId), 30_000)));
    await Promise.all(recorders.map((rec) => rec.stop()));
    const f = await checkInvariant(bases[0]!, stream, outcomes, recorders);
    figures[`${r.name} (${factoryName})`] = f;
    console.log(`[faults] ${r.name} on ${factoryName}: ${JSON.stringify({ ...f, injected: control.counts })}`);
    expect(f.skipped).toBe(0);
    return f;
  } finally {
    timers.forEach(clearTimeout);
    await Promise.all(recorders.map((rec) => rec.stop()));
    for (const l of logs) await l.close();
    for (const b of new Set(bases)) if (b.kind === "mongo" || r.stores) await b.close();
  }
}

afterAll(() => {
  if (Object.keys(figures).length > 0) console.log(`[faults] summary\n${Object.entries(figures).map(([k, f]) => `  ${k}: acked ${f.acked}, delivered ${f.delivered.join("/")}, skipped ${f.skipped}, not stored ${f.notStored}, unknown ${f.unknown}, placeholders ${f.placeholders}, head ${f.head}`).join("\n")}`);
});

for (const factory of storeFactories) {
  describe(`fault injection: ${factory.name}`, () => {
    const dbName = `faults_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const make = () => factory.make({ dbName, watch: "poll" });
    afterAll(() => factory.teardown());

    it("a writer stalled between reserve and insert past the hole timeout: its sequences are claimed, its publish fails or is retried, nothing acked is skipped", async () => {
      const f = await run(factory.name, make, {
        name: "stall",
        holeTimeoutMs: 250,
        plans: [{ append: every(6, "stall"), stallMs: 900 }, { append: every(9, "stall", 4), stallMs: 900 }],
      });
      // The faults bit: readers had to claim sequences.
      expect(f.placeholders).toBeGreaterThan(0);
    }, 90_000);

    it("instance clocks skewed by ±10 s, with writers stalled shorter than the hole timeout: nothing is claimed early", async () => {
      const f = await run(factory.name, make, {
        name: "skew",
        holeTimeoutMs: 1500,
        skewMs: [10_000, -10_000],
        paceMs: 3,
        plans: [{ append: every(5, "stall"), stallMs: 200 }, { append: every(5, "stall", 1), stallMs: 200 }],
      });
      // Nothing was claimed: every stall was shorter than the hole timeout on the reader's own clock
      // (a reader timing holes from the other instance's created_at would have skipped them).
      expect(f.placeholders).toBe(0);
      expect(f.acked).toBe(f.head);
      expect(f.notStored).toBe(0);
    }, 90_000);

    it("the acknowledgement lost after the insert, and an insert landing after its failure was reported: outcomes resolved before answering", async () => {
      const f = await run(factory.name, make, {
        name: "lost-ack",
        holeTimeoutMs: 300,
        plans: [
          { append: every(5, "drop-ack") },
          { append: every(7, "late-insert"), lateMs: 150 },
        ],
      });
      // A dropped ack is resolved by reading back: those publishes are acked, not reported failed.
      expect(f.unknown).toBe(0);
    }, 90_000);

    it("the store down mid-run: publishes fail as unavailable, acked events all delivered once, in order", async () => {
      const f = await run(factory.name, make, { name: "down", holeTimeoutMs: 300, down: { atMs: 150, forMs: 600 } });
      expect(f.notStored + f.unknown).toBeGreaterThan(0);
    }, 90_000);
  });
}

/**
 * The same faults through the network, on MongoDB only: a proxy between the service's clients and
 * the server that stalls inserts, drops the connection after an insert was executed (before its
 * reply), and cuts every connection for a while.
 */
describe("fault injection through a wire-protocol proxy: mongo", () => {
  let mongo: TestMongo;
  const proxies: TcpProxy[] = [];
  afterAll(async () => {
    for (const p of proxies) await p.stop();
    await mongo?.stop();
  });

  async function proxiedStores(faults: (instance: number) => ((cmd: WireCommand) => WireFault) | undefined, dbName: string): Promise<Store[]> {
    mongo ??= await startTestMongo();
    const stores: Store[] = [];
    for (let i = 0; i < 2; i++) {
      const proxy = TcpProxy.toMongo(mongo.uri);
      proxy.faults = faults(i);
      await proxy.start();
      proxies.push(proxy);
      const store = new MongoStore({ uri: proxy.mongoUri, dbName, watch: "poll", pollIntervalMs: 20, serverSelectionTimeoutMs: 1000, operationTimeoutMs: 2000 });
      await store.init();
      stores.push(store);
    }
    return stores;
  }

  const insertsEvery = (n: number, fault: WireFault, k = 2) => {
    let i = 0;
    return (cmd: WireCommand): WireFault => (cmd.name === "insert" && cmd.collection === "events" && i++ % n === k ? fault : undefined);
  };

  it("inserts stalled on the wire past the hole timeout, and connections dropped after an insert before its reply", async () => {
    const dbName = `wire_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const f = await run("mongo-wire", async () => undefined as never, {
      name: "wire-stall-and-drop",
      holeTimeoutMs: 300,
      stores: () => proxiedStores((i) => (i === 0 ? insertsEvery(6, { stallMs: 1000 }) : insertsEvery(5, "drop-reply")), dbName),
    });
    expect(proxies.reduce((n, p) => n + p.counts.stalled, 0)).toBeGreaterThan(0);
    expect(proxies.reduce((n, p) => n + p.counts.repliesDropped, 0)).toBeGreaterThan(0);
    expect(f.placeholders).toBeGreaterThan(0);
  }, 120_000);

  it("every connection cut mid-run and restored", async () => {
    const dbName = `wire_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const mine: TcpProxy[] = [];
    const f = await run("mongo-wire", async () => undefined as never, {
      name: "wire-cut",
      holeTimeoutMs: 300,
      stores: async () => {
        const s = await proxiedStores(() => undefined, dbName);
        mine.push(...proxies.slice(-2));
        return s;
      },
      midRun: {
        atMs: 200,
        run: async () => {
          for (const p of mine) await p.cut();
          await new Promise((res) => setTimeout(res, 1000));
          for (const p of mine) await p.restore();
        },
      },
    });
    expect(f.notStored + f.unknown).toBeGreaterThan(0);
  }, 120_000);
});
