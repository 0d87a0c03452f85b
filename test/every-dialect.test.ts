/**
 * One event, every dialect: whatever one surface stores, every surface that reads the stream
 * serves (mapped where its shape is narrower, see src/api/mapping.ts), on every store. Also: data
 * round-trips exactly (`__proto__` keys included), deep input never crashes, and error replies
 * quote a bounded part of the input.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { EventView, ListEventsRequestSchema, StreamKind, StreamService, SubscribeResponseSchema } from "../gen/events/v1/events_pb.js";
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const P = { "X-Project-ID": "acme" };
let uniq = 0;
const name = (p: string) => `${p}-${++uniq}-${Date.now()}`;
const nest = (n: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
};

for (const factory of storeFactories) {
  describe(`one event, every dialect (${factory.name} store)`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { AUTH: "off" } });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("non-object data published through Polos is served by Sailhouse pull and list as {value}", async () => {
      const pulled: unknown[] = [];
      const t2 = name("mixed");
      // The pull subscription is created by the first pull, so it sees what is published after it.
      expect((await fetch(`${app.url}/topics/${t2}/subscriptions/s/events/pull`, { headers: P })).status).toBe(204);
      await postJson(app, "/api/v1/events/publish", { topic: t2, events: [{ data: "text" }, { data: [1, 2] }, { data: 7 }, { data: null }, { data: { k: 1 } }] }, P);
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${app.url}/topics/${t2}/subscriptions/s/events/pull`, { headers: P });
        expect(res.status).toBe(200);
        const ev = (await res.json()) as { id: string; data: unknown };
        pulled.push(ev.data);
        expect((await fetch(`${app.url}/topics/${t2}/subscriptions/s/events/${ev.id}`, { method: "POST", headers: P })).status).toBeLessThan(300);
      }
      expect(pulled).toEqual([{ value: "text" }, { value: [1, 2] }, { value: 7 }, { value: null }, { k: 1 }]);
      const listed = await getJson(app, `/topics/${t2}/subscriptions/s/events?limit=10`, P);
      expect(listed.status).toBe(200);
      expect(listed.json.events.map((e: { data: unknown }) => e.data)).toEqual([{ value: "text" }, { value: [1, 2] }, { value: 7 }, { value: null }, { k: 1 }]);
    });

    it("StreamService.Publish into an execution and a task is served by Kubiya SSE and TerminalUse (list, get, SSE, RPC)", async () => {
      const rpc = client(StreamService, app, "grpc");
      const exec = name("exec");
      const kubiya = new SseReader(`${app.url}/api/v1/executions/${exec}/stream`, P);
      await rpc.publish({ stream: { kind: StreamKind.EXECUTION, key: exec }, events: [{ eventType: "raw", data: { kind: { case: "stringValue", value: "hello" } } }] }, { headers: { "x-project-id": "acme" } });
      expect((await postJson(app, `/api/v1/executions/${exec}/events`, { event_type: "after", data: { n: 2 } }, P)).status).toBe(202);
      await kubiya.until((r) => r.messages.filter((m) => m.event !== "connected").length >= 2);
      const got = kubiya.messages.filter((m) => m.event !== "connected").map((m) => JSON.parse(m.data).data);
      expect(got).toEqual([{ value: "hello" }, { n: 2 }]);
      await kubiya.close();

      const task = await postJson(app, "/tasks", { agent_name: "acme/a" }, P);
      expect(task.status).toBe(201);
      const id = task.json.id as string;
      const tuSse = new SseReader(`${app.url}/tasks/${id}/stream?format=events`, P);
      const parts = new SseReader(`${app.url}/tasks/${id}/stream`, P); // TerminalUse stream parts (the default)
      await rpc.publish({ stream: { kind: StreamKind.TASK, key: id }, events: [{ eventType: "x", data: { kind: { case: "stringValue", value: "hi" } } }, { eventType: "y", data: { kind: { case: "numberValue", value: 5 } } }] }, { headers: { "x-project-id": "acme" } });
      expect((await postJson(app, `/tasks/${id}/events`, { content: { type: "text", text: "own" } }, P)).status).toBe(201);
      const list = await getJson(app, `/events?task_id=${id}`, P);
      expect(list.status).toBe(200);
      expect(list.json.map((e: { content: unknown }) => e.content)).toEqual([{ type: "text", text: "hi" }, { type: "data", data: { value: 5 } }, { type: "text", text: "own" }]);
      const one = await getJson(app, `/events/${list.json[1].id}`, P);
      expect(one.status).toBe(200);
      await tuSse.until((r) => r.messages.length >= 3);
      expect(tuSse.messages.map((m) => JSON.parse(m.data).content.type)).toEqual(["text", "data", "text"]);
      await tuSse.close();
      await parts.until((r) => r.messages.length >= 9);
      await parts.close();
      expect(parts.messages.filter((m) => JSON.parse(m.data).type === "text-delta").map((m) => JSON.parse(m.data).text)).toEqual(["hi", "5", "own"]);
      const tu = client(TaskEventsService, app, "grpc");
      const viaRpc = await tu.listEvents({ taskId: id }, { headers: { "x-project-id": "acme" } });
      expect(viaRpc.events.map((e) => e.content?.part.case)).toEqual(["text", "data", "text"]);
    });

    it("an event stored before the nesting limit (60 levels) is served to gRPC, Connect and the JSON paths, and the stream goes on", async () => {
      const topic = name("legacy");
      const stream = { project: "acme", kind: "topic" as const, key: topic };
      // Written to the store directly, as the previous version (64-level limit) would have.
      const seq = await app.store.reserve(stream, 1);
      const deep = nest(60);
      await app.store.append([{ id: `legacy-${topic}`, stream: `acme/topic/${encodeURIComponent(topic)}`, seq, eventType: "old", data: deep as never, metadata: {}, createdAt: new Date() }]);
      expect((await postJson(app, "/api/v1/events/publish", { topic, events: [{ data: { fresh: true } }] }, P)).status).toBe(200);
      for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
        const rpc = client(StreamService, app, protocol);
        const page = await rpc.listEvents({ stream: { kind: StreamKind.TOPIC, key: topic } }, { headers: { "x-project-id": "acme" } });
        expect(page.events.map((e) => Number(e.sequence))).toEqual([1, 2]);
        const first = page.events[0]!.data!;
        // Binary protobuf carries the too-deep data as its JSON text; Connect JSON as it is.
        if (first.kind.case === "stringValue") expect(JSON.parse(first.kind.value)).toEqual(deep);
        else expect(first.kind.case).toBe("structValue");
        // The encoded response decodes with a protobuf-style recursion limit of 100.
        expect(() => fromBinary(SubscribeResponseSchema, toBinary(SubscribeResponseSchema, { $typeName: "events.v1.SubscribeResponse", events: page.events, compactEvents: [] } as never))).not.toThrow();
      }
      const rpc = client(StreamService, app, "grpc");
      const abort = new AbortController();
      const seen: number[] = [];
      let compactData = "";
      for await (const res of rpc.subscribe({ stream: { kind: StreamKind.TOPIC, key: topic }, view: EventView.COMPACT }, { headers: { "x-project-id": "acme" }, signal: abort.signal })) {
        for (const e of res.compactEvents) {
          seen.push(Number(e.sequence));
          if (e.sequence === 1n) compactData = e.dataJson;
        }
        if (seen.length >= 2) break;
      }
      abort.abort();
      expect(seen).toEqual([1, 2]);
      expect(JSON.parse(compactData)).toEqual(deep);
      const list = await getJson(app, `/api/v1/events?topic=${topic}&project_id=acme`);
      expect(list.status).toBe(200);
      expect(list.json.events[0].data).toEqual(deep);
      const pulled = await fetch(`${app.url}/topics/${topic}/subscriptions/sub/events?limit=5`, { headers: P });
      expect(pulled.status).toBeLessThan(500);
    });

    it("data round-trips exactly through every publish surface: __proto__, $-keys, unicode, edge numbers", async () => {
      const data = JSON.parse('{"__proto__":{"x":1},"$set":{"a.b":2},"constructor":"c","u":"\\u00e9\\ud83d\\ude00\\u0000","n":[1.7976931348623157e308,-0,5e-324,9007199254740993],"nested":[{"__proto__":[]}]}');
      const expected = JSON.parse(JSON.stringify(data));
      const topic = name("rt");
      expect((await postJson(app, "/api/v1/events/publish", { topic, events: [{ data }] }, P)).status).toBe(200);
      expect((await postJson(app, `/topics/${topic}/events`, { data, metadata: data }, P)).status).toBe(201);
      const list = await getJson(app, `/api/v1/events?topic=${topic}&project_id=acme`);
      expect(list.json.events.map((e: { data: unknown }) => JSON.stringify(e.data))).toEqual([JSON.stringify(expected), JSON.stringify(expected)]);
      // Protobuf binary (Connect protocol, raw bytes): the key is on the wire. (protobuf-es's own
      // decoder then drops a "__proto__" map key on the client side; other languages keep it.)
      const req = toBinary(ListEventsRequestSchema, create(ListEventsRequestSchema, { stream: { kind: StreamKind.TOPIC, key: topic } }));
      const raw = await fetch(`${app.url}/events.v1.StreamService/ListEvents`, { method: "POST", headers: { ...P, "content-type": "application/proto" }, body: req });
      expect(raw.status).toBe(200);
      expect(Buffer.from(await raw.arrayBuffer()).includes(Buffer.from("__proto__"))).toBe(true);
      const exec = name("rt");
      expect((await postJson(app, `/api/v1/executions/${exec}/events`, { event_type: "t", data }, P)).status).toBe(202);
      const sse = new SseReader(`${app.url}/api/v1/executions/${exec}/stream?last_event_id=0`, P);
      await sse.until((r) => r.messages.some((m) => m.event === "t"));
      expect(JSON.stringify(JSON.parse(sse.messages.find((m) => m.event === "t")!.data).data)).toBe(JSON.stringify(expected));
      await sse.close();
      const task = await postJson(app, "/tasks", { agent_name: "acme/a", params: data }, P);
      expect(JSON.stringify(task.json.params)).toBe(JSON.stringify(expected));
      const sent = await postJson(app, `/tasks/${task.json.id}/events`, { content: { type: "data", data } }, P);
      expect(sent.status).toBe(201);
      expect(JSON.stringify(sent.json.content.data)).toBe(JSON.stringify(expected));
    });

    it("deep bodies on every JSON write route get a bounded 4xx and the server keeps serving", async () => {
      const deepArr = "[".repeat(5000) + "]".repeat(5000);
      const deepObj = '{"a":'.repeat(5000) + "1" + "}".repeat(5000);
      const task = await postJson(app, "/tasks", { agent_name: "acme/a" }, P);
      const routes: [string, string, string][] = [
        ["POST", "/api/v1/events/publish", `{"events":[{"data":1}],"x":${deepArr}}`],
        ["POST", "/api/v1/events/publish", `{"topic":"t","events":[{"data":${deepObj}}]}`],
        ["POST", "/api/v1/executions/e-deep/events", `{"data":{},"x":${deepObj}}`],
        ["POST", "/api/v1/executions/e-deep/events", `{"event_type":"x","data":${deepObj}}`],
        ["POST", "/topics/deep/events", `{"metadata":${deepObj}}`],
        ["PUT", "/topics/deep/subscriptions/s", `{"x":${deepArr}}`],
        ["PUT", "/topics/deep/subscriptions/s", `{"type":"pull","filter":${deepObj}}`],
        ["POST", "/tasks", `{"params":${deepObj}}`],
        ["POST", "/tasks", `{"x":${deepArr}}`],
        ["POST", `/tasks/${task.json.id}/events`, `{"content":{"type":"data","data":${deepObj}}}`],
        ["POST", "/waitgroups/instances", `{"x":${deepObj}}`],
        ["POST", `/tasks/${task.json.id}/events`, JSON.stringify({ content: { type: "x".repeat(100_000) } })],
        ["POST", "/api/v1/executions/e-deep/events", JSON.stringify({ data: {}, event_type: ["y".repeat(500_000)] })],
      ];
      for (const [method, path, body] of routes) {
        const res = await fetch(app.url + path, { method, headers: { ...P, "content-type": "application/json" }, body });
        const text = await res.text();
        expect(res.status, `${method} ${path}`).toBeGreaterThanOrEqual(400);
        expect(res.status, `${method} ${path}`).toBeLessThan(500);
        expect(text.length, `${method} ${path} reply size`).toBeLessThan(16_384);
        JSON.parse(text);
      }
      expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
    });
  });
}
