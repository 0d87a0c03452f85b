/**
 * One log underneath: a durable stream is a stream of the service like any other (Subscribe and
 * ListEvents follow it; JSON messages come back equal in value, other content types byte-exact as
 * `payload`), every other stream can be read and written as a durable JSON stream at
 * /v1/log/{kind}/{key}, a closed stream refuses appends from every surface in that surface's
 * conflict form, and a deleted and re-created durable stream is a new stream. Both store adapters.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { StreamKind, StreamService, EventView } from "../gen/events/v1/events_pb.js";
import { storeFactories } from "./support/stores.js";
import { client, getJson, postJson, startTestServer } from "./support/server.js";
import type { App } from "../src/server/app.js";

const P = { "X-Project-ID": "one-log" };
const value = (v: Value | undefined): unknown => (v ? toJson(ValueSchema, v) : null);

async function firstEvents(app: App, kind: StreamKind, key: string, count: number, view = EventView.FULL) {
  const streams = client(StreamService, app, "connect");
  const abort = new AbortController();
  const got: { seq: bigint; type: string; data: unknown; payload?: Uint8Array | undefined }[] = [];
  try {
    for await (const res of streams.subscribe({ stream: { kind, key }, view }, { signal: abort.signal, headers: { "x-project-id": "one-log" } })) {
      for (const e of res.events) got.push({ seq: e.sequence, type: e.eventType, data: value(e.data), payload: e.payload });
      for (const e of res.compactEvents) got.push({ seq: e.sequence, type: e.eventType, data: JSON.parse(e.dataJson), payload: e.payload });
      if (got.length >= count) abort.abort();
    }
  } catch (err) {
    if (!(err instanceof ConnectError && err.code === Code.Canceled)) throw err;
  }
  return got;
}

describe.each(storeFactories)("Durable Streams on the one log ($name store)", (factory) => {
  let app: App;
  let n = 0;
  beforeAll(async () => {
    app = await startTestServer({ store: await factory.make() });
  });
  afterAll(async () => {
    await app.close();
    await factory.teardown();
  });
  const put = (path: string, headers: Record<string, string>, body?: string | Uint8Array) => fetch(app.url + path, { method: "PUT", headers: { ...P, ...headers }, ...(body === undefined ? {} : { body }) });
  const post = (path: string, headers: Record<string, string>, body?: string | Uint8Array) => fetch(app.url + path, { method: "POST", headers: { ...P, ...headers }, ...(body === undefined ? {} : { body }) });

  it("a JSON durable stream is followed with Subscribe: one event per message, equal in value", async () => {
    const name = `json-${++n}`;
    const messages = [{ b: 1, a: [1.5, "x", null, { z: true }] }, "text", 42, [1, 2], { "ü nicode": "✓", nested: { deep: [[]] } }];
    expect((await put(`/v1/stream/${name}`, { "content-type": "application/json" }, JSON.stringify(messages.slice(0, 2)))).status).toBe(201);
    expect((await post(`/v1/stream/${name}`, { "content-type": "application/json" }, JSON.stringify(messages.slice(2)))).status).toBe(204);
    const streams = client(StreamService, app, "connect");
    const page = await streams.listEvents({ stream: { kind: StreamKind.DURABLE, key: name } }, { headers: { "x-project-id": "one-log" } });
    expect(page.events.map((e) => e.eventType)).toEqual(Array(5).fill("application/json"));
    expect(page.events.map((e) => e.sequence)).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(page.events.map((e) => value(e.data))).toEqual(messages);
    const live = await firstEvents(app, StreamKind.DURABLE, name, 5, EventView.COMPACT);
    expect(live.map((e) => e.data)).toEqual(messages);
    // And back over HTTP, the same values.
    expect(await (await fetch(`${app.url}/v1/stream/${name}`, { headers: P })).json()).toEqual(messages);
  });

  it("a raw-byte durable stream carries every byte value as the events' opaque payload, both ways", async () => {
    const name = `bytes-${++n}`;
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const invalidUtf8 = Uint8Array.from([0xff, 0xfe, 0xc3, 0x28, 0x00, 0x0a, 0x0d]);
    await put(`/v1/stream/${name}`, { "content-type": "application/octet-stream" }, all);
    await post(`/v1/stream/${name}`, { "content-type": "application/octet-stream" }, invalidUtf8);
    const got = await firstEvents(app, StreamKind.DURABLE, name, 2);
    expect(got.map((e) => e.type)).toEqual(["application/octet-stream", "application/octet-stream"]);
    expect(Buffer.from(got[0]!.payload!).equals(Buffer.from(all))).toBe(true);
    expect(Buffer.from(got[1]!.payload!).equals(Buffer.from(invalidUtf8))).toBe(true);
    // An RPC publish with an opaque payload lands byte-exact in the same stream.
    const streams = client(StreamService, app, "grpc");
    const rpcBytes = Uint8Array.from([0, 1, 2, 250, 251, 252]);
    await streams.publish({ stream: { kind: StreamKind.DURABLE, key: name }, events: [{ eventType: "application/octet-stream", payload: rpcBytes }] }, { headers: { "x-project-id": "one-log" } });
    const body = Buffer.from(await (await fetch(`${app.url}/v1/stream/${name}`, { headers: P })).arrayBuffer());
    expect(body.equals(Buffer.concat([all, invalidUtf8, rpcBytes]))).toBe(true);
  });

  it("topics, executions and tasks read and append as durable JSON streams at /v1/log/{kind}/{key}", async () => {
    const topic = `orders-${++n}`;
    await postJson(app, "/api/v1/events/publish", { topic, events: [{ event_type: "created", data: { id: 1 } }] }, P);
    const res = await fetch(`${app.url}/v1/log/topic/${topic}?offset=-1`, { headers: P });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const [first] = (await res.json()) as Record<string, unknown>[];
    expect(first).toMatchObject({ sequence: 1, type: "created", data: { id: 1 }, metadata: {} });
    expect(typeof first!["id"]).toBe("string");
    // Append through the view: an envelope {type, data, metadata} becomes an event of the topic.
    const appended = await post(`/v1/log/topic/${topic}`, { "content-type": "application/json" }, JSON.stringify({ type: "paid", data: { id: 1, amount: 5 }, metadata: { via: "durable" } }));
    expect(appended.status).toBe(204);
    const listed = await getJson(app, `/api/v1/events?topic=${topic}&project_id=one-log`);
    expect(listed.json.events.map((e: { event_type: string; data: unknown }) => [e.event_type, e.data])).toEqual([
      ["created", { id: 1 }],
      ["paid", { id: 1, amount: 5 }],
    ]);
    // Resuming from an offset, and a long-poll woken by a Kubiya publish on an execution.
    const offset = appended.headers.get("stream-next-offset")!;
    expect((await (await fetch(`${app.url}/v1/log/topic/${topic}?offset=${offset}`, { headers: P })).json())).toEqual([]);
    const exec = `exec-${n}`;
    const poll = fetch(`${app.url}/v1/log/execution/${exec}?offset=now&live=long-poll`, { headers: P });
    await new Promise((r) => setTimeout(r, 100));
    await postJson(app, `/api/v1/executions/${exec}/events`, { event_type: "tool_started", data: { tool: "ls" } }, P);
    const polled = await poll;
    expect(polled.status).toBe(200);
    expect(((await polled.json()) as Record<string, unknown>[]).map((e) => [e["type"], e["data"]])).toEqual([["tool_started", { tool: "ls" }]]);
    expect((await fetch(`${app.url}/v1/log/queue/x`, { headers: P })).status).toBe(404);
    expect((await fetch(`${app.url}/v1/log/topic/${topic}`, { method: "DELETE", headers: P })).status).toBe(405);
  });

  it("a closed stream refuses appends from every surface, each in its own conflict form", async () => {
    const k = `closed-${++n}`;
    const task = await postJson(app, "/tasks", { agent_name: "acme/agent" }, P);
    expect(task.status).toBeLessThan(300);
    const taskId = task.json.id as string;
    for (const path of [`/v1/log/topic/${k}`, `/v1/log/execution/${k}`, `/v1/log/task/${taskId}`]) {
      const closed = await post(path, { "stream-closed": "true" });
      expect(closed.status).toBe(204);
      expect(closed.headers.get("stream-closed")).toBe("true");
    }
    // Polos and Sailhouse: 409 {"error"}.
    const polos = await postJson(app, "/api/v1/events/publish", { topic: k, events: [{ event_type: "x", data: {} }] }, P);
    expect(polos.status).toBe(409);
    expect(typeof polos.json.error).toBe("string");
    const sailhouse = await postJson(app, `/topics/${k}/events`, { data: { n: 1 } }, P);
    expect(sailhouse.status).toBe(409);
    expect(typeof sailhouse.json.error).toBe("string");
    // Kubiya and TerminalUse: 409 FastAPI {"detail"}.
    const kubiya = await postJson(app, `/api/v1/executions/${k}/events`, { event_type: "x", data: {} }, P);
    expect(kubiya.status).toBe(409);
    expect(typeof kubiya.json.detail).toBe("string");
    const tu = await postJson(app, `/tasks/${taskId}/events`, { content: { type: "text", text: "hi" } }, P);
    expect(tu.status).toBe(409);
    expect(typeof tu.json.detail).toBe("string");
    // RPCs: failed_precondition; PublishStream answers with an error ack.
    const streams = client(StreamService, app, "grpc");
    await expect(streams.publish({ stream: { kind: StreamKind.TOPIC, key: k }, events: [{ eventType: "x" }] }, { headers: { "x-project-id": "one-log" } })).rejects.toMatchObject({ code: Code.FailedPrecondition });
    async function* one() {
      yield { requestId: 7n, stream: { kind: StreamKind.EXECUTION, key: k }, events: [{ eventType: "x" }] };
    }
    const acks = [];
    for await (const ack of streams.publishStream(one(), { headers: { "x-project-id": "one-log" } })) acks.push(ack);
    expect(acks.map((a) => [a.requestId, a.error?.code])).toEqual([[7n, "failed_precondition"]]);
    // The durable surface itself: 409 with Stream-Closed and the final offset.
    const again = await post(`/v1/log/topic/${k}`, { "content-type": "application/json" }, JSON.stringify({ type: "x" }));
    expect(again.status).toBe(409);
    expect(again.headers.get("stream-closed")).toBe("true");
    // Nothing was stored by any of them.
    expect(await (await fetch(`${app.url}/v1/log/topic/${k}`, { headers: P })).json()).toEqual([]);
  });

  it("a deleted and re-created stream is a new stream: sequences continue, old offsets are refused", async () => {
    const name = `again-${++n}`;
    const created = await put(`/v1/stream/${name}`, { "content-type": "text/plain" }, "old");
    const oldTail = (await post(`/v1/stream/${name}`, { "content-type": "text/plain" }, " data")).headers.get("stream-next-offset")!;
    expect((await fetch(`${app.url}/v1/stream/${name}`, { method: "DELETE", headers: P })).status).toBe(204);
    expect((await fetch(`${app.url}/v1/stream/${name}`, { headers: P })).status).toBe(404);
    expect((await put(`/v1/stream/${name}`, { "content-type": "text/plain" }, "new")).status).toBe(201);
    for (const old of [created.headers.get("stream-next-offset")!, oldTail]) {
      expect((await fetch(`${app.url}/v1/stream/${name}?offset=${old}`, { headers: P })).status).toBe(400);
    }
    expect(await (await fetch(`${app.url}/v1/stream/${name}`, { headers: P })).text()).toBe("new");
    const page = await client(StreamService, app, "connect").listEvents({ stream: { kind: StreamKind.DURABLE, key: name } }, { headers: { "x-project-id": "one-log" } });
    expect(page.events.map((e) => Buffer.from(e.payload!).toString())).toEqual(["new"]);
    expect(page.events[0]!.sequence).toBeGreaterThan(2n);
  });
});
