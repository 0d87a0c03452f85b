/**
 * End to end: the real server on an ephemeral port, real clients (Connect over gRPC, the Connect
 * protocol and gRPC-Web; fetch on the documented JSON paths; an SSE reader), on every store adapter.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema, timestampDate } from "@bufbuild/protobuf/wkt";
import { EventView, StreamKind, StreamService, type CompactEvent } from "../gen/events/v1/events_pb.js";
import { EventsService } from "../gen/polos/v1/polos_pb.js";
import { ExecutionEventsService } from "../gen/kubiya/v1/kubiya_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, SseReader, startTestServer, type Protocol } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const PROJECT = { "X-Project-ID": "acme" };
let uniq = 0;
const name = (p: string) => `${p}-${++uniq}-${Date.now()}`;

async function listTopic(app: App, topic: string, project = "acme"): Promise<any[]> {
  const r = await getJson(app, `/api/v1/events?topic=${encodeURIComponent(topic)}&limit=1000&project_id=${project}`);
  expect(r.status).toBe(200);
  return r.json.events;
}

for (const factory of storeFactories) {
  describe(`service end to end on the ${factory.name} store`, () => {
    let app: App;
    let clock = 0; // ms added to the real time, to test expiry
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), now: () => Date.now() + clock });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    describe("Polos JSON paths", () => {
      it("publishes a batch: 200, int64 sequence_ids as numbers, RFC 3339 created_at, then lists it", async () => {
        const topic = name("orders");
        const r = await postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: "a", data: { n: 1 } }, { data: [1, 2] }, { data: "s", attempt_number: 3 }] }, PROJECT);
        expect(r.status).toBe(200);
        expect(r.json.sequence_ids).toEqual([1, 2, 3]);
        expect(new Date(r.json.created_at).toISOString()).toBe(r.json.created_at);
        const r2 = await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: null }] }, { "Project-ID": "acme" });
        expect(r2.json.sequence_ids).toEqual([4]);

        const page = await getJson(app, `/api/v1/events?topic=${topic}&limit=2`, PROJECT);
        expect(page.status).toBe(200);
        expect(page.json.has_more).toBe(true);
        expect(page.json.next_sequence_id).toBe(2);
        expect(page.json.events.map((e: any) => [e.sequence_id, e.topic, e.event_type, e.data])).toEqual([
          [1, topic, "a", { n: 1 }],
          [2, topic, "", [1, 2]],
        ]);
        expect(Object.keys(page.json.events[0]).sort()).toEqual(["created_at", "data", "event_type", "id", "sequence_id", "topic"]);
        const rest = await getJson(app, `/api/v1/events?topic=${topic}&last_sequence_id=2&project_id=acme`);
        expect(rest.json.events.map((e: any) => e.sequence_id)).toEqual([3, 4]);
        expect(rest.json.has_more).toBe(false);
        const desc = await getJson(app, `/api/v1/events?topic=${topic}&sort=desc&limit=3&project_id=acme`);
        expect(desc.json.events.map((e: any) => e.sequence_id)).toEqual([4, 3, 2]);
        // Another project sees nothing of it.
        expect(await listTopic(app, topic, "other")).toEqual([]);
      });

      it("lists events created after last_timestamp", async () => {
        const topic = name("ts");
        await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 1 }] }, PROJECT);
        await new Promise((r) => setTimeout(r, 20));
        const mark = new Date(Date.now() + clock).toISOString();
        await new Promise((r) => setTimeout(r, 20));
        await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 2 }] }, PROJECT);
        const r = await getJson(app, `/api/v1/events?topic=${topic}&last_timestamp=${encodeURIComponent(mark)}&project_id=acme`);
        expect(r.json.events.map((e: any) => e.data)).toEqual([2]);
      });

      it("takes the project from execution_id when X-Project-ID is absent", async () => {
        const topic = name("exec-topic");
        const execution = name("polos-exec");
        const first = await postJson(app, "/api/v1/events/publish", { topic, execution_id: execution, events: [{ data: 1 }] }, PROJECT);
        expect(first.status).toBe(200);
        const second = await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 2, execution_id: execution }] });
        expect(second.status).toBe(200);
        expect(second.json.sequence_ids).toEqual([2]);
        const unknown = await postJson(app, "/api/v1/events/publish", { topic, execution_id: "never-seen", events: [{ data: 3 }] });
        expect(unknown.status).toBe(400);
        expect((await listTopic(app, topic)).map((e) => e.data)).toEqual([1, 2]);
      });

      it("rejects bad input with 400 and stores nothing", async () => {
        const topic = name("bad");
        const cases: [unknown, RegExp][] = [
          ['{"topic": "x", "events": [', /not valid JSON/],
          [[1, 2], /body/],
          [{ topic, events: [] }, /events/],
          [{ events: [{ data: 1 }] }, /topic/],
          [{ topic: 5, events: [{ data: 1 }] }, /topic/],
          [{ topic, events: "nope" }, /events/],
          [{ topic, events: [{ event_type: "x" }] }, /data/],
          [{ topic, events: [{ data: 1, attempt_number: "3" }] }, /attempt_number/],
          [{ topic, events: [{ data: 1, event_type: 7 }] }, /event_type/],
        ];
        for (const [body, msg] of cases) {
          const r = await postJson(app, "/api/v1/events/publish", body, PROJECT);
          expect(r.status, JSON.stringify(body)).toBe(400);
          expect(r.json.error).toMatch(msg);
        }
        const noProject = await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: 1 }] });
        expect(noProject.status).toBe(400);
        expect(noProject.json.error).toMatch(/X-Project-ID/);
        expect(await listTopic(app, topic)).toEqual([]);
        const badQuery = await getJson(app, `/api/v1/events?topic=${topic}&limit=0x&project_id=acme`);
        expect(badQuery.status).toBe(400);
        expect((await getJson(app, `/api/v1/events?topic=${topic}`)).status).toBe(400);
      });

      it("streams over SSE: catch-up, live, id: = sequence, resume with Last-Event-ID", async () => {
        const topic = name("sse");
        await postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: "a", data: 1 }, { event_type: "b", data: 2 }] }, PROJECT);
        const sse = new SseReader(`${app.url}/api/v1/events/stream?topic=${topic}&project_id=acme`);
        await sse.until((s) => s.messages.length >= 2);
        expect(sse.status).toBe(200);
        expect(sse.headers?.get("content-type")).toMatch(/text\/event-stream/);
        await postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: "c", data: 3 }] }, PROJECT);
        await sse.until((s) => s.messages.length >= 3);
        await sse.close();
        expect(sse.messages.map((m) => m.id)).toEqual(["1", "2", "3"]);
        const payloads = sse.messages.map((m) => JSON.parse(m.data));
        expect(payloads.map((p) => [p.sequence_id, p.event_type, p.data, p.topic])).toEqual([
          [1, "a", 1, topic],
          [2, "b", 2, topic],
          [3, "c", 3, topic],
        ]);
        const resumed = new SseReader(`${app.url}/api/v1/events/stream?topic=${topic}`, { "Last-Event-ID": "2", ...PROJECT });
        await resumed.until((s) => s.messages.length >= 1);
        await new Promise((r) => setTimeout(r, 100));
        await resumed.close();
        expect(resumed.messages.map((m) => m.id)).toEqual(["3"]);
        const fromSeq = new SseReader(`${app.url}/api/v1/events/stream?topic=${topic}&last_sequence_id=1&project_id=acme`);
        await fromSeq.until((s) => s.messages.length >= 2);
        await fromSeq.close();
        expect(fromSeq.messages.map((m) => m.id)).toEqual(["2", "3"]);
      });
    });

    describe("Kubiya JSON paths", () => {
      it("accepts an event with 202 and the documented body; streams it with event:, id:, data:", async () => {
        const execution = name("exec");
        const r = await postJson(app, `/api/v1/executions/${execution}/events`, { event_type: "tool_started", data: { tool: "ls" }, timestamp: "2026-01-01T00:00:00Z" });
        expect(r.status).toBe(202);
        expect(r.json).toEqual({ success: true, execution_id: execution, event_type: "tool_started" });
        const sse = new SseReader(`${app.url}/api/v1/executions/${execution}/stream`);
        await sse.until((s) => s.messages.length >= 2);
        await postJson(app, `/api/v1/executions/${execution}/events`, { event_type: "done", data: {} });
        await sse.until((s) => s.messages.length >= 3);
        await sse.close();
        expect(sse.messages[0]!.event).toBe("connected");
        expect(sse.messages.slice(1).map((m) => [m.event, m.id])).toEqual([
          ["tool_started", "1"],
          ["done", "2"],
        ]);
        expect(JSON.parse(sse.messages[1]!.data)).toEqual({ event_type: "tool_started", data: { tool: "ls" }, timestamp: "2026-01-01T00:00:00Z", execution_id: execution });
        const second = JSON.parse(sse.messages[2]!.data);
        expect(second.execution_id).toBe(execution);
        expect(Date.parse(second.timestamp)).not.toBeNaN();

        const resumed = new SseReader(`${app.url}/api/v1/executions/${execution}/stream?last_event_id=1`);
        await resumed.until((s) => s.messages.length >= 2);
        await resumed.close();
        expect(resumed.messages.slice(1).map((m) => m.id)).toEqual(["2"]);
        const byHeader = new SseReader(`${app.url}/api/v1/executions/${execution}/stream`, { "Last-Event-ID": "2" });
        await byHeader.until((s) => s.messages.length >= 1);
        await new Promise((r) => setTimeout(r, 100));
        await byHeader.close();
        expect(byHeader.messages.map((m) => m.event)).toEqual(["connected"]);
      });

      it("answers bad bodies with FastAPI's 422 detail and stores nothing", async () => {
        const execution = name("exec-bad");
        const missing = await postJson(app, `/api/v1/executions/${execution}/events`, { data: {} });
        expect(missing.status).toBe(422);
        expect(missing.json.detail).toEqual([expect.objectContaining({ loc: ["body", "event_type"], msg: "Field required", type: "missing" })]);
        const wrong = await postJson(app, `/api/v1/executions/${execution}/events`, { event_type: ["x"], data: "str", timestamp: 5 });
        expect(wrong.status).toBe(422);
        expect(wrong.json.detail.map((d: any) => [d.loc, d.type])).toEqual([
          [["body", "event_type"], "string_type"],
          [["body", "data"], "dict_type"],
          [["body", "timestamp"], "string_type"],
        ]);
        const malformed = await postJson(app, `/api/v1/executions/${execution}/events`, "{nope");
        expect(malformed.status).toBe(422);
        expect(malformed.json.detail[0]).toMatchObject({ type: "json_invalid", msg: "JSON decode error" });
        for (const d of [...missing.json.detail, ...wrong.json.detail, ...malformed.json.detail]) {
          expect(Object.keys(d)).toEqual(expect.arrayContaining(["loc", "msg", "type"]));
        }
        const streams = client(StreamService, app, "connect");
        const page = await streams.listEvents({ stream: { kind: StreamKind.EXECUTION, key: execution } });
        expect(page.events).toEqual([]);
      });

      it("expires an execution's events one hour after its last event, never serving them after", async () => {
        const execution = name("exec-ttl");
        const streams = client(StreamService, app, "grpc");
        const list = async () => (await streams.listEvents({ stream: { kind: StreamKind.EXECUTION, key: execution } })).events.map((e) => e.eventType);
        await postJson(app, `/api/v1/executions/${execution}/events`, { event_type: "first", data: {} });
        clock += 50 * 60 * 1000; // 50 minutes later another event slides the expiry of both
        await postJson(app, `/api/v1/executions/${execution}/events`, { event_type: "second", data: {} });
        const events = (await streams.listEvents({ stream: { kind: StreamKind.EXECUTION, key: execution } })).events;
        expect(events.map((e) => e.eventType)).toEqual(["first", "second"]);
        const expireAt = Number(events[0]!.expireAt!.seconds) * 1000;
        expect(Math.abs(expireAt - (Date.now() + clock + 60 * 60 * 1000))).toBeLessThan(5000);
        clock += 30 * 60 * 1000; // 80 minutes after the first, 30 after the last: both live
        expect(await list()).toEqual(["first", "second"]);
        clock += 31 * 60 * 1000; // 61 minutes after the last event: gone
        expect(await list()).toEqual([]);
        const sse = new SseReader(`${app.url}/api/v1/executions/${execution}/stream`);
        await sse.until((s) => s.messages.length >= 1);
        await new Promise((r) => setTimeout(r, 150));
        await sse.close();
        expect(sse.messages.map((m) => m.event)).toEqual(["connected"]);
      });
    });

    describe.each<Protocol>(["grpc", "connect", "grpc-web"])("RPCs over %s", (protocol) => {
      it("publishes, lists and subscribes through the shared StreamService", async () => {
        const streams = client(StreamService, app, protocol);
        const key = name(`rpc-${protocol}`);
        const stream = { kind: StreamKind.TOPIC, key };
        const res = await streams.publish({ stream, events: [{ eventType: "a", data: { kind: { case: "numberValue", value: 1 } } }, { eventType: "b" }] }, { headers: { "x-project-id": "acme" } });
        expect(res.sequences).toEqual([1n, 2n]);
        expect(res.ids).toHaveLength(2);
        const page = await streams.listEvents({ stream, afterSequence: 1n }, { headers: { "x-project-id": "acme" } });
        expect(page.events.map((e) => [e.sequence, e.eventType])).toEqual([[2n, "b"]]);
        // The same stream is the Polos topic of that project.
        expect((await listTopic(app, key)).map((e) => e.sequence_id)).toEqual([1, 2]);
      });

      it("serves the Polos and Kubiya services", async () => {
        const polos = client(EventsService, app, protocol);
        const topic = name("polos-rpc");
        const r = await polos.publishEvents({ topic, events: [{ data: { kind: { case: "stringValue", value: "x" } }, eventType: "t" }] }, { headers: { "x-project-id": "acme" } });
        expect(r.sequenceIds).toEqual([1n]);
        const listed = await polos.listEvents({ topic }, { headers: { "x-project-id": "acme" } });
        expect(listed.events.map((e) => [e.sequenceId, e.eventType, e.topic])).toEqual([[1n, "t", topic]]);
        const kubiya = client(ExecutionEventsService, app, protocol);
        const execution = name("kubiya-rpc");
        const k = await kubiya.publishExecutionEvent({ executionId: execution, eventType: "status", data: { ok: true } });
        expect(k).toMatchObject({ success: true, executionId: execution, eventType: "status" });
        for await (const m of kubiya.streamExecutionEvents({ executionId: execution })) {
          expect(m.sequence).toBe(1n);
          expect(m.event?.data).toEqual({ ok: true });
          break;
        }
      });

      it("answers bad requests with invalid_argument and stores nothing", async () => {
        const streams = client(StreamService, app, protocol);
        const key = name("rpc-bad");
        await expect(streams.publish({ stream: { kind: StreamKind.TOPIC, key }, events: [] })).rejects.toMatchObject({ code: Code.InvalidArgument });
        await expect(streams.publish({ stream: { kind: StreamKind.UNSPECIFIED, key }, events: [{}] })).rejects.toMatchObject({ code: Code.InvalidArgument });
        await expect(streams.publish({ events: [{}] })).rejects.toMatchObject({ code: Code.InvalidArgument });
        await expect(streams.listEvents({ stream: { kind: StreamKind.TOPIC, key }, limit: 5000 })).rejects.toMatchObject({ code: Code.InvalidArgument });
        const polos = client(EventsService, app, protocol);
        await expect(polos.publishEvents({ topic: "", events: [{ data: {} }] }, { headers: { "x-project-id": "acme" } })).rejects.toMatchObject({ code: Code.InvalidArgument });
        await expect(polos.publishEvents({ topic: key, events: [{ data: {} }] })).rejects.toMatchObject({ code: Code.InvalidArgument });
        const kubiya = client(ExecutionEventsService, app, protocol);
        await expect(kubiya.publishExecutionEvent({ executionId: key, eventType: "x" })).rejects.toMatchObject({ code: Code.InvalidArgument });
        expect((await streams.listEvents({ stream: { kind: StreamKind.TOPIC, key } })).events).toEqual([]);
        expect((await streams.listEvents({ stream: { kind: StreamKind.EXECUTION, key } })).events).toEqual([]);
      });
    });

    it("delivers live to a server-streaming subscriber that started before the publish", async () => {
      const streams = client(StreamService, app, "grpc");
      const key = name("live");
      const abort = new AbortController();
      const got: bigint[] = [];
      const done = (async () => {
        for await (const res of streams.subscribe({ stream: { kind: StreamKind.TOPIC, key } }, { signal: abort.signal })) {
          got.push(...res.events.map((e) => e.sequence));
          if (got.length >= 3) abort.abort();
        }
      })().catch((e) => {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      });
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      await streams.publish({ stream: { kind: StreamKind.TOPIC, key }, events: [{ eventType: "x" }] });
      await streams.publish({ stream: { kind: StreamKind.TOPIC, key }, events: [{ eventType: "y" }, { eventType: "z" }] });
      await done;
      expect(got).toEqual([1n, 2n, 3n]);
      expect(Date.now() - t0).toBeLessThan(2000);
    });

    it("filters a subscription by event type and keeps sequence order", async () => {
      const streams = client(StreamService, app, "connect");
      const key = name("filter");
      const stream = { kind: StreamKind.TOPIC, key };
      await streams.publish({ stream, events: [{ eventType: "a" }, { eventType: "b" }, { eventType: "a" }] });
      const abort = new AbortController();
      const got: [bigint, string][] = [];
      try {
        for await (const res of streams.subscribe({ stream, eventTypes: ["a"] }, { signal: abort.signal })) {
          got.push(...res.events.map((e): [bigint, string] => [e.sequence, e.eventType]));
          if (got.length >= 2) abort.abort();
        }
      } catch (e) {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      }
      expect(got).toEqual([
        [1n, "a"],
        [3n, "a"],
      ]);
    });

    it("acks a PublishStream call in send order with gapless sequences", async () => {
      const streams = client(StreamService, app, "grpc");
      const key = name("pubstream");
      const N = 500;
      async function* requests() {
        for (let i = 0; i < N; i++) yield { requestId: BigInt(i), stream: { kind: StreamKind.TOPIC, key }, events: i === 7 ? [] : [{ eventType: String(i) }] };
      }
      const acks = [];
      for await (const ack of streams.publishStream(requests())) acks.push(ack);
      expect(acks.map((a) => a.requestId)).toEqual(Array.from({ length: N }, (_, i) => BigInt(i)));
      expect(acks[7]!.error?.code).toBe("invalid_argument");
      const seqs = acks.filter((a) => !a.error).map((a) => a.sequences[0]);
      expect(seqs).toEqual(Array.from({ length: N - 1 }, (_, i) => BigInt(i + 1)));
      const page = await streams.listEvents({ stream: { kind: StreamKind.TOPIC, key }, limit: 1000 });
      expect(page.events.map((e) => e.eventType)).toEqual(Array.from({ length: N }, (_, i) => String(i)).filter((s) => s !== "7"));
    });

    it("Subscribe with the COMPACT view sends flat events (data as JSON text), over binary and JSON codecs", async () => {
      const key = name("compact");
      const stream = { kind: StreamKind.TOPIC, key };
      const grpc = client(StreamService, app, "grpc");
      const json = createClient(StreamService, createConnectTransport({ baseUrl: app.url, httpVersion: "1.1", useBinaryFormat: false }));
      const first = await grpc.publish({ stream, events: [{ eventType: "a", data: { kind: { case: "stringValue", value: "text" } } }, { eventType: "b" }] });
      await grpc.publish({ stream, events: [{ eventType: "c", data: fromJson(ValueSchema, { n: 1, list: [true, null], s: "é" }) }] });
      for (const c of [grpc, json]) {
        const abort = new AbortController();
        const got: CompactEvent[] = [];
        try {
          for await (const res of c.subscribe({ stream, view: EventView.COMPACT }, { signal: abort.signal })) {
            expect(res.events).toEqual([]);
            got.push(...res.compactEvents);
            if (got.length >= 3) abort.abort();
          }
        } catch (e) {
          if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
        }
        expect(got.map((e) => [e.sequence, e.eventType, JSON.parse(e.dataJson)])).toEqual([
          [1n, "a", "text"],
          [2n, "b", null],
          [3n, "c", { n: 1, list: [true, null], s: "é" }],
        ]);
        expect(got[0]!.id).toBe(first.ids[0]);
        expect(Number(got[0]!.createdAtMs)).toBe(timestampDate(first.createdAt!).getTime());
      }
    });

    it("PublishStream: several publishes per request (`more`) and combined acks, each acked on its own, in order", async () => {
      const streams = client(StreamService, app, "grpc");
      const key = name("pubstream-more");
      const stream = { kind: StreamKind.TOPIC, key };
      const N = 300; // publishes, sent 10 per request message
      const pub = (i: number) => ({
        requestId: BigInt(i),
        stream,
        // 13 is empty (refused), 14 carries a `more` of its own (refused), 15 is too big (refused);
        // the rest go through.
        events: i === 13 ? [] : i === 15 ? Array.from({ length: 1001 }, () => ({ eventType: "big" })) : [{ eventType: String(i) }, ...(i % 5 === 0 ? [{ eventType: `${i}b` }] : [])],
        more: i === 14 ? [{ requestId: 9999n, stream, events: [{ eventType: "nested" }] }] : [],
      });
      async function* requests() {
        for (let i = 0; i < N; i += 10) yield { ...pub(i), more: Array.from({ length: 9 }, (_, k) => pub(i + k + 1)), combineAcks: true };
      }
      const responses = [];
      for await (const res of streams.publishStream(requests())) responses.push(res);
      const acks = responses.flatMap((r) => [r, ...r.more]);
      // Fewer responses than publishes: acks ready together came in one response.
      expect(responses.length).toBeLessThan(N);
      expect(acks.map((a) => a.requestId)).toEqual(Array.from({ length: N }, (_, i) => BigInt(i)));
      expect(acks[13]!.error?.code).toBe("invalid_argument");
      expect(acks[14]!.error?.message).toMatch(/more/);
      expect(acks[15]!.error?.code).toBe("resource_exhausted");
      const ok = acks.filter((a) => !a.error);
      expect(ok.length).toBe(N - 3);
      // Gapless sequences in send order; a two-event publish takes two.
      expect(ok.flatMap((a) => a.sequences)).toEqual(Array.from({ length: ok.flatMap((a) => a.sequences).length }, (_, i) => BigInt(i + 1)));
      expect(ok.find((a) => a.requestId === 10n)!.sequences.length).toBe(2);
      const page = await streams.listEvents({ stream, limit: 1000 });
      expect(page.events.map((e) => e.eventType)).toEqual(
        Array.from({ length: N }, (_, i) => i).filter((i) => i < 13 || i > 15).flatMap((i) => (i % 5 === 0 ? [String(i), `${i}b`] : [String(i)])),
      );
    });

    it("PurgeStream deletes a stream's events; the next publish continues after the last sequence", async () => {
      const streams = client(StreamService, app, "grpc");
      const stream = { kind: StreamKind.TOPIC, key: name("purge") };
      await streams.publish({ stream, events: [{ eventType: "a" }, { eventType: "b" }] });
      expect(await streams.purgeStream({ stream })).toMatchObject({ purged: 2n, lastSequence: 2n });
      expect((await streams.listEvents({ stream })).events).toEqual([]);
      const next = await streams.publish({ stream, events: [{ eventType: "c" }] });
      expect(next.sequences).toEqual([3n]);
      expect((await streams.listEvents({ stream })).events.map((e) => [e.sequence, e.eventType])).toEqual([[3n, "c"]]);
      await expect(streams.purgeStream({})).rejects.toMatchObject({ code: Code.InvalidArgument });
    });

    it("PublishStream without combine_acks answers every publish with a response of its own", async () => {
      const streams = client(StreamService, app, "grpc");
      const stream = { kind: StreamKind.TOPIC, key: name("pubstream-single") };
      async function* requests() {
        yield { requestId: 1n, stream, events: [{ eventType: "a" }], more: [{ requestId: 2n, stream, events: [{ eventType: "b" }] }] };
      }
      const responses = [];
      for await (const res of streams.publishStream(requests())) responses.push(res);
      expect(responses.map((r) => [r.requestId, r.sequences, r.more.length])).toEqual([
        [1n, [1n], 0],
        [2n, [2n], 0],
      ]);
    });

    it("64 concurrent publishers x 200 events while 3 subscribers follow: all 12,800 in order, once", async () => {
      const topic = name("load");
      const PUBLISHERS = 64;
      const PER = 200;
      const TOTAL = PUBLISHERS * PER;
      const grpc = client(StreamService, app, "grpc");
      const connect = client(StreamService, app, "connect");
      const stream = { kind: StreamKind.TOPIC, key: topic };
      const headers = { "x-project-id": "acme" };

      const abort = new AbortController();
      const follow = async (c: typeof grpc): Promise<number[]> => {
        const seqs: number[] = [];
        try {
          for await (const res of c.subscribe({ stream }, { signal: abort.signal, headers })) {
            for (const e of res.events) seqs.push(Number(e.sequence));
            if (seqs.length >= TOTAL) break;
          }
        } catch (e) {
          if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
        }
        return seqs;
      };
      const sse = new SseReader(`${app.url}/api/v1/events/stream?topic=${topic}&project_id=acme`);
      const subs = [follow(grpc), follow(connect)];
      await new Promise((r) => setTimeout(r, 200));

      // Half the publishers use gRPC, half the documented Polos JSON path; payloads say who sent what.
      const publishers = Array.from({ length: PUBLISHERS }, async (_, p) => {
        const acked: number[] = [];
        for (let i = 0; i < PER; i++) {
          if (p % 2 === 0) {
            const r = await grpc.publish({ stream, events: [{ eventType: `p${p}`, data: { kind: { case: "numberValue", value: i } } }] }, { headers });
            acked.push(Number(r.sequences[0]));
          } else {
            const r = await postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: `p${p}`, data: i }] }, PROJECT);
            expect(r.status).toBe(200);
            acked.push(r.json.sequence_ids[0]);
          }
        }
        return acked;
      });
      const acked = (await Promise.all(publishers)).flat();
      expect(new Set(acked).size).toBe(TOTAL);
      expect(Math.min(...acked)).toBe(1);
      expect(Math.max(...acked)).toBe(TOTAL);

      const expected = Array.from({ length: TOTAL }, (_, i) => i + 1);
      const [a, b] = await Promise.all(subs);
      await sse.until((s) => s.messages.length >= TOTAL, 60_000);
      abort.abort();
      await sse.close();
      expect(a).toEqual(expected);
      expect(b).toEqual(expected);
      expect(sse.messages.map((m) => Number(m.id))).toEqual(expected);
      // Each publisher's events are stored in its own send order.
      const events = (await getJson(app, `/api/v1/events?topic=${topic}&limit=1000&project_id=acme`)).json.events;
      expect(events).toHaveLength(1000);
      const perPublisher = new Map<string, number[]>();
      for (const m of sse.messages) {
        const e = JSON.parse(m.data);
        perPublisher.set(e.event_type, [...(perPublisher.get(e.event_type) ?? []), e.data]);
      }
      expect(perPublisher.size).toBe(PUBLISHERS);
      for (const [, values] of perPublisher) expect(values).toEqual(Array.from({ length: PER }, (_, i) => i));
    }, 180_000);

    it("serves gRPC health and server reflection (v1 and v1alpha)", async () => {
      const health = client(Health, app, "grpc");
      expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      expect((await health.check({ service: "events.v1.StreamService" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      await expect(health.check({ service: "nope.Service" })).rejects.toMatchObject({ code: Code.NotFound });

      for (const svc of [ServerReflection, ServerReflectionAlpha]) {
        const refl = client(svc as typeof ServerReflection, app, "grpc");
        async function* reqs() {
          yield { messageRequest: { case: "listServices" as const, value: "" } };
          yield { messageRequest: { case: "fileContainingSymbol" as const, value: "polos.v1.EventsService" } };
          yield { messageRequest: { case: "fileByFilename" as const, value: "nope.proto" } };
        }
        const out = [];
        for await (const r of refl.serverReflectionInfo(reqs())) out.push(r);
        const list = out[0]!.messageResponse;
        expect(list.case).toBe("listServicesResponse");
        const names = list.case === "listServicesResponse" ? list.value.service.map((s) => s.name) : [];
        expect(names).toEqual(expect.arrayContaining(["events.v1.StreamService", "polos.v1.EventsService", "kubiya.v1.ExecutionEventsService", "sailhouse.v1.SailhouseService", "terminaluse.v1.TaskEventsService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]));
        const file = out[1]!.messageResponse;
        expect(file.case).toBe("fileDescriptorResponse");
        // The file and its imports (options.proto, struct.proto, descriptor.proto).
        expect(file.case === "fileDescriptorResponse" ? file.value.fileDescriptorProto.length : 0).toBeGreaterThanOrEqual(3);
        expect(out[2]!.messageResponse.case).toBe("errorResponse");
      }
    });

    it("answers unknown paths with 404 and wrong methods with 405", async () => {
      expect((await getJson(app, "/nope")).status).toBe(404);
      const r = await fetch(`${app.url}/api/v1/events/publish`);
      expect(r.status).toBe(405);
    });
  });
}
