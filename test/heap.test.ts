/**
 * Memory is bounded in bytes: the real service, started as its own process with a 512 MiB heap
 * (node --max-old-space-size=512), takes rounds of maximum-size events on every publish surface
 * (Polos, Kubiya, Sailhouse 4 MiB sends, TerminalUse, StreamService Publish and PublishStream),
 * with data that is cheap in JSON and expensive in the heap (`[{},{},…]`) as well as long strings,
 * while subscribers follow over gRPC, Connect and SSE and streams are purged between rounds. It
 * must stay up, answer /healthz within 1 s once the load is over (and within a few seconds while
 * heavy events are being converted; the figure is printed), and deliver what it acknowledged in
 * order. Publishes the service refuses for lack of memory (503 / resource_exhausted) are allowed:
 * refusing is what a bound does; dying is not.
 */
import { spawn, type ChildProcess } from "node:child_process";
import os from "node:os";
import readline from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { EventView, StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { SseReader } from "./support/server.js";

const P = { "x-project-id": "heap", "content-type": "application/json" };
const MiB = 1024 * 1024;

async function startService(env: Record<string, string>): Promise<{ url: string; child: ChildProcess; exited: Promise<number | null>; stderr: () => string }> {
  const child = spawn(process.execPath, ["--max-old-space-size=512", "--import", "tsx", "src/main.ts"], {
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", AUTH: "off", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`service did not start: ${stderr}`)), 60_000);
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /"url":"(http:[^"]+)"/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`service exited (${code}) before listening: ${stderr}`)));
  });
  // LOG_LEVEL=warn hides the "listening" line; info is needed for the URL.
  return { url, child, exited, stderr: () => stderr };
}

/**
 * JSON of about `bytes` bytes: a long string (light in the heap), or as many empty objects as
 * MAX_JSON_VALUES allows (heavy: tens of heap bytes each) filled up with a string.
 */
function payload(bytes: number, heavy: boolean): unknown {
  if (!heavy) return "x".repeat(bytes);
  const n = 90_000;
  return { h: Array.from({ length: n }, () => ({})), s: "x".repeat(Math.max(0, bytes - 3 * n - 20)) };
}

const stores = [{ name: "memory", env: async () => ({}) as Record<string, string>, stop: async () => {} }];
let mongo: { uri: string; stop(): Promise<void> } | undefined;
stores.push({
  name: "mongo",
  env: async () => {
    mongo ??= await (await import("./support/mongo.js")).startTestMongo();
    return { MONGODB_URI: mongo.uri, MONGODB_DB: `heap_${Date.now()}` };
  },
  stop: async () => {
    await mongo?.stop();
    mongo = undefined;
  },
});

describe("large array bodies in parallel (memory store)", () => {
  it("twelve 1 MiB single-array publishes at once keep /healthz answered within 1 s", async () => {
    const svc = await startService({ LOG_LEVEL: "info" });
    try {
      // One big array at the value limit (99,000 numbers of ~10 characters: ~1 MiB), and one far
      // over it (refused from the text, unparsed).
      const within = `{"topic":"arr","events":[{"data":[${Array.from({ length: 99_000 }, (_, i) => 1_000_000 + i + 0.5).join(",")}]}]}`;
      const over = `{"topic":"arr","events":[{"data":[${"1,".repeat(500_000)}1]}]}`;
      expect(within.length).toBeGreaterThan(900_000);
      let slowest = 0;
      let probing = true;
      const probe = (async () => {
        while (probing) {
          const t = performance.now();
          expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
          slowest = Math.max(slowest, performance.now() - t);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const statuses = await Promise.all(
        Array.from({ length: 12 }, (_, i) => fetch(`${svc.url}/api/v1/events/publish`, { method: "POST", headers: P, body: i % 2 ? within : over }).then((r) => r.status)),
      );
      probing = false;
      await probe;
      // On a machine whose run queue is several times its cores (other suites running beside this
      // one), wall-clock time stretches for every process alike: the bound is loosened there, and
      // the load is printed with the figure.
      const load = os.loadavg()[0]!;
      const overloaded = load > 2 * os.cpus().length;
      console.log(`12 parallel 1 MiB array bodies: statuses ${statuses.join(",")}, slowest /healthz ${Math.round(slowest)} ms (load ${load.toFixed(1)} on ${os.cpus().length} cores)`);
      expect(statuses.filter((s) => s === 200)).toHaveLength(6);
      expect(statuses.filter((s) => s === 413)).toHaveLength(6);
      expect(slowest).toBeLessThan(overloaded ? 3000 : 1000);
    } finally {
      svc.child.kill("SIGTERM");
      await svc.exited;
    }
  }, 120_000);
});

for (const store of stores) {
  describe(`a 512 MiB heap under maximum-size events (${store.name} store)`, () => {
    afterAll(async () => store.stop());

    it("stays up, answers /healthz, and delivers what it acknowledged in order", async () => {
      const svc = await startService({ ...(await store.env()), LOG_LEVEL: "info" });
      let died = false;
      let stopping = false;
      void svc.exited.then((code) => {
        if (stopping) return;
        died = true;
        console.error(`service exited with ${code}: ${svc.stderr()}`);
      });
      const grpc = createClient(StreamService, createGrpcTransport({ baseUrl: svc.url }));
      const connect = createClient(StreamService, createConnectTransport({ baseUrl: svc.url, httpVersion: "1.1" }));
      const headers = { "x-project-id": "heap" };
      // Health probe every 100 ms: the slowest answer is the figure.
      let slowest = 0;
      let probing = true;
      const probe = (async () => {
        while (probing) {
          const t = performance.now();
          const res = await fetch(`${svc.url}/healthz`).catch(() => undefined);
          const ms = performance.now() - t;
          if (!res || res.status !== 200) throw new Error("healthz failed");
          slowest = Math.max(slowest, ms);
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const acked = new Map<string, number>(); // stream key -> acked events
      const ack = (key: string, n = 1) => acked.set(key, (acked.get(key) ?? 0) + n);
      const refused: string[] = [];
      const check = async (label: string, key: string, pending: Promise<unknown>) => {
        const res = pending instanceof Promise && label !== "grpc publish" ? await pending : pending;
        if (res instanceof Response) {
          if (res.status < 300) ack(key);
          else if (res.status === 503) refused.push(`${label} ${res.status}`);
          else throw new Error(`${label}: ${res.status} ${(await res.text()).slice(0, 200)}`);
          await res.body?.cancel();
          return;
        }
        try {
          await res;
          ack(key);
        } catch (err) {
          const ce = ConnectError.from(err);
          if (ce.code === Code.ResourceExhausted || ce.code === Code.Unavailable) refused.push(`${label} ${ce.code}`);
          else throw err;
        }
      };

      // Subscribers: gRPC (full and compact), Connect, and SSE on each dialect.
      const abort = new AbortController();
      const received = new Map<string, number[]>();
      const follow = (label: string, it: AsyncIterable<{ events: { sequence: bigint }[]; compactEvents: { sequence: bigint }[] }>) =>
        (async () => {
          const seqs: number[] = [];
          received.set(label, seqs);
          try {
            for await (const r of it) for (const e of [...r.events, ...r.compactEvents]) seqs.push(Number(e.sequence));
          } catch (err) {
            if (!abort.signal.aborted) throw err;
          }
        })();
      const topic = { kind: StreamKind.TOPIC, key: "big" };
      const subs = [
        follow("grpc full", grpc.subscribe({ stream: topic }, { headers, signal: abort.signal })),
        follow("grpc compact", grpc.subscribe({ stream: topic, view: EventView.COMPACT }, { headers, signal: abort.signal })),
        follow("connect", connect.subscribe({ stream: topic }, { headers, signal: abort.signal })),
      ];
      const sse = [
        new SseReader(`${svc.url}/api/v1/events/stream?topic=big&last_sequence_id=0&project_id=heap`),
        new SseReader(`${svc.url}/api/v1/executions/big-exec/stream`, { "x-project-id": "heap" }),
      ];
      const task = (await (await fetch(`${svc.url}/tasks`, { method: "POST", headers: P, body: JSON.stringify({ agent_name: "heap/a" }) })).json()) as { id: string };
      sse.push(new SseReader(`${svc.url}/tasks/${task.id}/stream`, { "x-project-id": "heap" }));

      const post = (path: string, body: unknown, method = "POST") => fetch(svc.url + path, { method, headers: P, body: JSON.stringify(body) });
      const oneMiB = MiB - 4096;
      const started = performance.now();
      for (let round = 0; round < 4; round++) {
        const heavy = round % 2 === 0;
        const jobs: Promise<void>[] = [];
        for (let i = 0; i < 2; i++) {
          jobs.push(check("polos", "big", post("/api/v1/events/publish", { topic: "big", events: [{ event_type: "big", data: payload(oneMiB - 200, heavy) }] })));
          jobs.push(check("kubiya", "big-exec", post("/api/v1/executions/big-exec/events", { event_type: "big", data: { d: payload(oneMiB - 200, heavy) } })));
          jobs.push(check("sailhouse", "big", post("/topics/big/events", { data: { d: payload(4 * MiB - 4096, heavy) } })));
          jobs.push(check("terminaluse", task.id, post(`/tasks/${task.id}/events`, { content: { type: "data", data: { d: payload(oneMiB - 300, heavy) } } })));
          const data = fromJson(ValueSchema, { d: heavy ? [] : "y".repeat(oneMiB - 1000) });
          jobs.push(check("grpc publish", "big", grpc.publish({ stream: topic, events: [{ eventType: "big", data }] }, { headers })));
        }
        const stream = grpc.publishStream(
          (async function* () {
            for (let i = 0; i < 4; i++) yield { requestId: BigInt(i), stream: topic, events: [{ eventType: "ps", data: fromJson(ValueSchema, "z".repeat(oneMiB - 1000)) }] };
          })(),
          { headers },
        );
        jobs.push(
          (async () => {
            for await (const a of stream) {
              if (a.error) refused.push(`publishStream ${a.error.code}`);
              else ack("big");
            }
          })(),
        );
        await Promise.all(jobs);
        console.log(`round ${round}: ${Math.round(performance.now() - started)} ms, slowest /healthz ${Math.round(slowest)} ms`);
        // Let the subscribers catch up, then purge (memory freed with the events).
        await new Promise((r) => setTimeout(r, 1500));
        if (round % 2 === 1) {
          await grpc.purgeStream({ stream: topic }, { headers });
          await grpc.purgeStream({ stream: { kind: StreamKind.EXECUTION, key: "big-exec" } }, { headers });
          await grpc.purgeStream({ stream: { kind: StreamKind.TASK, key: task.id } }, { headers });
        }
      }
      const t = performance.now();
      expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
      const last = performance.now() - t;
      probing = false;
      await probe;
      abort.abort();
      await Promise.all(subs);
      for (const s of sse) await s.close();
      stopping = true;
      svc.child.kill("SIGTERM");
      await svc.exited;

      console.log(`${store.name}: acked ${JSON.stringify(Object.fromEntries(acked))}, refused ${refused.length} (${[...new Set(refused)].join(", ")}), slowest /healthz ${Math.round(slowest)} ms, last ${Math.round(last)} ms`);
      expect(died).toBe(false);
      // After the load a normal request is answered at once; during it, the slowest answer is
      // reported (on the shared 2-core CI machine a heavy event's parsing and conversions hold
      // the event loop for up to a few hundred ms each; see README "Bounds").
      expect(last).toBeLessThan(1000);
      expect(slowest).toBeLessThan(5000);
      expect(acked.get("big") ?? 0).toBeGreaterThan(0);
      // Every subscriber got events in order, without duplicates.
      for (const [label, seqs] of received) {
        expect(seqs.length, label).toBeGreaterThan(0);
        expect(seqs, label).toEqual([...seqs].sort((a, b) => a - b));
        expect(new Set(seqs).size, label).toBe(seqs.length);
      }
      for (const s of sse) expect(s.messages.length).toBeGreaterThan(0);
    }, 240_000);
  });
}
