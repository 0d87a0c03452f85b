/**
 * Consistency across dialects: publishers on every surface (Polos, Sailhouse, Kubiya, TerminalUse,
 * StreamService.Publish and PublishStream) write concurrently into a topic, an execution and a
 * task, while subscribers follow each stream over SSE (the dialect's own stream), gRPC (full and
 * compact views) and the Connect protocol. Every acknowledged event arrives exactly once, in
 * sequence order, at every subscriber, with the data it was published with; on both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { fromJson, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { EventView, StreamKind, StreamService, type SubscribeResponse } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const PER_PUBLISHER = Number(process.env["MIXED_EVENTS"] ?? 40);
const P = { "x-project-id": "mix", "content-type": "application/json" };

interface Seen {
  seq: number;
  marker: string;
}

for (const factory of storeFactories) {
  describe(`every dialect publishing and subscribing at once (${factory.name} store)`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make() });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("delivers every acknowledged event exactly once, in order, to SSE, gRPC and Connect subscribers", async () => {
      const headers = { "x-project-id": "mix" };
      const grpc = client(StreamService, app, "grpc");
      const connect = createClient(StreamService, createConnectTransport({ baseUrl: app.url, httpVersion: "1.1" }));
      const task = (await (await fetch(`${app.url}/tasks`, { method: "POST", headers: P, body: JSON.stringify({ agent_name: "mix/a" }) })).json()) as { id: string };
      const streams = {
        topic: { kind: StreamKind.TOPIC, key: "mixed" },
        exec: { kind: StreamKind.EXECUTION, key: "mixed-exec" },
        task: { kind: StreamKind.TASK, key: task.id },
      };

      // Subscribers first: from sequence 0, so they see everything however fast publishers are.
      const abort = new AbortController();
      const rpcSeen = new Map<string, Seen[]>();
      const markerOf = (json: unknown): string => {
        const d = json as { m?: string; value?: string; data?: { m?: string }; type?: string; text?: string };
        return d?.m ?? d?.data?.m ?? (d?.type === "text" ? String(d.text) : "") ?? "";
      };
      const follow = (label: string, it: AsyncIterable<SubscribeResponse>) => {
        const seen: Seen[] = [];
        rpcSeen.set(label, seen);
        return (async () => {
          try {
            for await (const r of it) {
              for (const e of r.events) seen.push({ seq: Number(e.sequence), marker: markerOf(e.content?.part.case === "text" ? { type: "text", text: e.content.part.value.text } : e.data ? toJson(ValueSchema, e.data) : null) });
              for (const e of r.compactEvents) seen.push({ seq: Number(e.sequence), marker: markerOf(JSON.parse(e.dataJson)) });
            }
          } catch (err) {
            if (!abort.signal.aborted) throw err;
          }
        })();
      };
      const subs: Promise<void>[] = [];
      for (const [name, stream] of Object.entries(streams)) {
        subs.push(follow(`grpc full ${name}`, grpc.subscribe({ stream }, { headers, signal: abort.signal })));
        subs.push(follow(`grpc compact ${name}`, grpc.subscribe({ stream, view: EventView.COMPACT }, { headers, signal: abort.signal })));
        subs.push(follow(`connect ${name}`, connect.subscribe({ stream }, { headers, signal: abort.signal })));
      }
      const sse = {
        topic: new SseReader(`${app.url}/api/v1/events/stream?topic=mixed&last_sequence_id=0&project_id=mix`),
        exec: new SseReader(`${app.url}/api/v1/executions/mixed-exec/stream?last_event_id=0`, headers),
        task: new SseReader(`${app.url}/tasks/${task.id}/stream?format=events`, { ...headers, "last-event-id": "0" }),
      };

      // Publishers, all at once. Each event carries a unique marker.
      const acked = { topic: new Set<string>(), exec: new Set<string>(), task: new Set<string>() };
      const post = async (path: string, body: unknown, expectStatus: number) => {
        const res = await fetch(app.url + path, { method: "POST", headers: P, body: JSON.stringify(body) });
        expect(res.status, `${path}: ${await res.clone().text()}`).toBe(expectStatus);
        return res.json();
      };
      const publishers: Promise<void>[] = [];
      const run = (fn: (i: number) => Promise<void>) =>
        publishers.push(
          (async () => {
            for (let i = 0; i < PER_PUBLISHER; i++) await fn(i);
          })(),
        );
      run(async (i) => {
        const m = `polos-${i}`;
        await post("/api/v1/events/publish", { topic: "mixed", events: [{ event_type: "p", data: { m } }] }, 200);
        acked.topic.add(m);
      });
      run(async (i) => {
        const m = `sailhouse-${i}`;
        await post("/topics/mixed/events", { data: { m } }, 201);
        acked.topic.add(m);
      });
      run(async (i) => {
        const m = `rpc-${i}`;
        const target = i % 3 === 0 ? "topic" : i % 3 === 1 ? "exec" : "task";
        await grpc.publish({ stream: streams[target], events: [{ eventType: "r", data: fromJson(ValueSchema, { m }) }] }, { headers });
        acked[target].add(m);
      });
      run(async (i) => {
        const m = `kubiya-${i}`;
        await post("/api/v1/executions/mixed-exec/events", { event_type: "k", data: { m } }, 202);
        acked.exec.add(m);
      });
      run(async (i) => {
        const m = `tu-${i}`;
        await post(`/tasks/${task.id}/events`, { content: { type: "data", data: { m } } }, 201);
        acked.task.add(m);
      });
      // PublishStream: many in flight on one call, into all three streams.
      publishers.push(
        (async () => {
          const targets = ["topic", "exec", "task"] as const;
          const sent = new Map<bigint, { target: (typeof targets)[number]; m: string }>();
          const reqs = (async function* () {
            for (let i = 0; i < PER_PUBLISHER * 2; i++) {
              const target = targets[i % 3]!;
              const m = `ps-${i}`;
              sent.set(BigInt(i), { target, m });
              yield { requestId: BigInt(i), stream: streams[target], events: [{ eventType: "s", data: fromJson(ValueSchema, { m }) }] };
            }
          })();
          for await (const ack of grpc.publishStream(reqs, { headers })) {
            expect(ack.error).toBeUndefined();
            const s = sent.get(ack.requestId)!;
            acked[s.target].add(s.m);
          }
        })(),
      );
      await Promise.all(publishers);

      const want = { topic: acked.topic.size, exec: acked.exec.size, task: acked.task.size };
      expect(want.topic + want.exec + want.task).toBe(PER_PUBLISHER * 7 + 0);
      const deadline = Date.now() + 60_000;
      const complete = () => [...rpcSeen].every(([label, seen]) => seen.length >= want[label.split(" ").pop() as keyof typeof want]);
      while (!complete() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      for (const [name, reader] of Object.entries(sse)) await reader.until((r) => r.messages.filter((m) => m.id).length >= want[name as keyof typeof want], 60_000);
      // A little longer: nothing more (no duplicates) may arrive.
      await new Promise((r) => setTimeout(r, 300));
      abort.abort();
      await Promise.all(subs);

      const check = (label: string, seen: Seen[], expected: Set<string>) => {
        expect(seen.map((s) => s.seq), `${label}: sequences 1..n once, in order`).toEqual(Array.from({ length: expected.size }, (_, i) => i + 1));
        expect(new Set(seen.map((s) => s.marker)), `${label}: exactly the acknowledged events`).toEqual(expected);
      };
      for (const [label, seen] of rpcSeen) check(label, seen, acked[label.split(" ").pop() as keyof typeof acked]);
      const sseSeen = (name: keyof typeof sse, marker: (d: any) => string): Seen[] =>
        sse[name].messages.filter((m) => m.id).map((m) => ({ seq: Number(m.id), marker: marker(JSON.parse(m.data)) }));
      check("sse polos", sseSeen("topic", (d) => d.data.m), acked.topic);
      check("sse kubiya", sseSeen("exec", (d) => d.data.m), acked.exec);
      check("sse terminaluse", sseSeen("task", (d) => d.content?.data?.m ?? d.data?.m), acked.task);
      for (const r of Object.values(sse)) await r.close();
    }, 300_000);
  });
}
