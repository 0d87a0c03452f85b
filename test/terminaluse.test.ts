/** TerminalUse end to end over the JSON paths and gRPC, on every store adapter. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { STREAM_CAPABILITIES } from "../src/api/terminaluse.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const H = { "X-Project-ID": "acme" };
const RPC = { headers: { "x-project-id": "acme" } };
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

async function rpcCode(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

for (const factory of storeFactories) {
  describe(`TerminalUse on the ${factory.name} store`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make() });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    async function newTask(body: unknown = { agent_name: "acme/helper", name: "t", params: { depth: 2 } }): Promise<any> {
      const r = await postJson(app, "/tasks", body, H);
      expect(r.status).toBe(201);
      return r.json;
    }

    it("creates and reads tasks of agents", async () => {
      const t = await newTask();
      expect(t).toMatchObject({ name: "t", params: { depth: 2 }, status: "IDLE", namespace_id: "acme" });
      expect(t.agents[0]).toMatchObject({ name: "acme/helper", status: "ACTIVE" });
      const again = await newTask({ agent_name: "acme/helper" });
      expect(again.agents[0].id).toBe(t.agents[0].id); // one agent, one id
      expect((await getJson(app, `/tasks/${t.id}`, H)).json).toEqual(t);
      expect((await getJson(app, `/tasks/${t.id}`, { "X-Project-ID": "other" })).status).toBe(404);
      const byId = await newTask({ agent_id: "agent-7" });
      expect(byId.agents[0].id).toBe("agent-7");
      const none = await postJson(app, "/tasks", { name: "x" }, H);
      expect(none.status).toBe(422);
      expect(none.json.detail[0].msg).toMatch(/agent_id or agent_name/);
    });

    it("sends text and data events: 201, sequence ids, content round trip, capabilities", async () => {
      const t = await newTask();
      const a = await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "hello" } }, H);
      expect(a.status).toBe(201);
      expect(a.json).toMatchObject({ sequence_id: 1, task_id: t.id, agent_id: t.agents[0].id, content: { type: "text", text: "hello" }, streamCapabilities: STREAM_CAPABILITIES });
      expect(new Date(a.json.created_at).toISOString()).toBe(a.json.created_at);
      const b = await postJson(app, `/tasks/${t.id}/events`, { content: { type: "data", data: { k: [1, 2] } }, persist_message: false }, H);
      expect(b.json).toMatchObject({ sequence_id: 2, content: { type: "data", data: { k: [1, 2] } } });
      expect((await getJson(app, `/events/${a.json.id}`, H)).json).toEqual(a.json);
      expect((await getJson(app, `/events/${a.json.id}`, { "X-Project-ID": "other" })).status).toBe(404);
      const list = await getJson(app, `/events?task_id=${t.id}`, H);
      expect(list.json.map((e: any) => e.sequence_id)).toEqual([1, 2]);
      const after = await getJson(app, `/events?task_id=${t.id}&last_processed_event_id=${a.json.id}&limit=10`, H);
      expect(after.json.map((e: any) => e.id)).toEqual([b.json.id]);
      // persist_message: true (default) wrote a message; false wrote none.
      const messages = await getJson(app, `/tasks/${t.id}/messages`, H);
      expect(messages.json).toHaveLength(1);
      expect(messages.json[0]).toMatchObject({ id: a.json.id, task_id: t.id, content: { type: "text", author: "user", content: "hello", format: "plain" }, streaming_status: "DONE" });
    });

    it("derives message records from the task's events: in order, only persist_message ones, gone with PurgeStream", async () => {
      const t = await newTask();
      const sent = [];
      for (const [i, persist] of [true, false, true].entries()) {
        sent.push((await postJson(app, `/tasks/${t.id}/events`, { content: { type: "data", data: { i } }, persist_message: persist }, H)).json);
      }
      // An event published to the task's stream through another surface is no message record.
      await client(StreamService, app, "grpc").publish({ stream: { kind: StreamKind.TASK, key: t.id }, events: [{ eventType: "raw" }] }, { headers: { "x-project-id": "acme" } });
      const listed = (await getJson(app, `/tasks/${t.id}/messages`, H)).json;
      expect(listed.map((m: any) => [m.id, m.content])).toEqual([
        [sent[0].id, { type: "data", author: "user", data: { i: 0 } }],
        [sent[2].id, { type: "data", author: "user", data: { i: 2 } }],
      ]);
      await client(StreamService, app, "grpc").purgeStream({ stream: { kind: StreamKind.TASK, key: t.id } }, { headers: { "x-project-id": "acme" } });
      expect((await getJson(app, `/tasks/${t.id}/messages`, H)).json).toEqual([]);
    });

    it("answers 32 concurrent retries with one idempotency key with the one original event", async () => {
      const t = await newTask();
      const send = () => postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "once" }, idempotency_key: "k-1" }, H);
      const results = await Promise.all(Array.from({ length: 32 }, send));
      expect(results.map((r) => r.status)).toEqual(Array(32).fill(201));
      expect(new Set(results.map((r) => r.json.id)).size).toBe(1);
      expect(new Set(results.map((r) => r.json.sequence_id))).toEqual(new Set([1]));
      const later = await send();
      expect(later.json.id).toBe(results[0]!.json.id);
      const next = await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "new" }, idempotency_key: "k-2" }, H);
      expect(next.json.sequence_id).toBe(2); // no sequence was consumed by the retries
      expect((await getJson(app, `/events?task_id=${t.id}`, H)).json).toHaveLength(2);
      expect((await getJson(app, `/tasks/${t.id}/messages`, H)).json).toHaveLength(2);
    });

    it("streams a task's event JSON over SSE (format=events), resuming with Last-Event-ID, and over gRPC", async () => {
      const t = await newTask();
      await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "1" } }, H);
      const sse = new SseReader(`${app.url}/tasks/${t.id}/stream?format=events`, H);
      await sse.until((s) => s.messages.length >= 1);
      await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "2" } }, H);
      await sse.until((s) => s.messages.length >= 2);
      await sse.close();
      expect(sse.messages.map((m) => [m.id, JSON.parse(m.data).content.text])).toEqual([
        ["1", "1"],
        ["2", "2"],
      ]);
      const resumed = new SseReader(`${app.url}/tasks/${t.id}/stream?format=events`, { ...H, "Last-Event-ID": "1" });
      await resumed.until((s) => s.messages.length >= 1);
      await new Promise((r) => setTimeout(r, 100));
      await resumed.close();
      expect(resumed.messages.map((m) => m.id)).toEqual(["2"]);

      const rpc = client(TaskEventsService, app, "grpc");
      const got: bigint[] = [];
      for await (const e of rpc.streamTaskEvents({ taskId: t.id }, { headers: { "x-project-id": "acme" } })) {
        got.push(e.sequenceId);
        if (got.length === 2) break;
      }
      expect(got).toEqual([1n, 2n]);
      const sent = await rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "text", value: { text: "rpc" } } }, idempotencyKey: "r" }, { headers: { "x-project-id": "acme" } });
      expect(sent.sequenceId).toBe(3n);
      expect((await rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "text", value: { text: "rpc" } } }, idempotencyKey: "r" }, { headers: { "x-project-id": "acme" } })).id).toBe(sent.id);
      await expect(rpc.getTask({ taskId: "nope" }, { headers: { "x-project-id": "acme" } })).rejects.toMatchObject({ code: Code.NotFound });
    });

    it("streams TerminalUse stream parts by default: text blocks, parts as they are, other surfaces' events; id: on an event's last part", async () => {
      const t = await newTask();
      const send = (content: unknown) => postJson(app, `/tasks/${t.id}/events`, { content }, H);
      const a = (await send({ type: "text", text: "hi" })).json;
      const b = (await send({ type: "data", data: { type: "tool-call", toolCallId: "c1", toolName: "ls", input: { dir: "/" } } })).json;
      const c = (await send({ type: "data", data: { type: "tool-call", toolName: "no id, no input" } })).json;
      // From the generic RPC: a part named by the event type, and plain data.
      const rpc = client(StreamService, app, "connect");
      const stream = { kind: StreamKind.TASK, key: t.id };
      await rpc.publish({ stream, events: [{ eventType: "reasoning-delta", data: fromJson(ValueSchema, { id: "r1", text: "hmm" }) }, { eventType: "note", data: fromJson(ValueSchema, "plain") }] }, RPC);
      const sse = new SseReader(`${app.url}/tasks/${t.id}/stream`, H);
      await sse.until((s) => s.messages.length >= 11);
      await sse.close();
      const frames = sse.messages.map((m) => [m.id, JSON.parse(m.data)]);
      const ev = (id: string, seq: number, type: string) => ({ event: { id, sequence_id: seq, event_type: type } });
      const [, , , d, e] = (await rpc.listEvents({ stream }, RPC)).events.map((x) => x.id) as [string, string, string, string, string];
      expect(frames).toEqual([
        [undefined, { type: "text-start", id: a.id, ...ev(a.id, 1, "text") }],
        [undefined, { type: "text-delta", id: a.id, text: "hi", ...ev(a.id, 1, "text") }],
        ["1", { type: "text-end", id: a.id, ...ev(a.id, 1, "text") }],
        ["2", { type: "tool-call", toolCallId: "c1", toolName: "ls", input: { dir: "/" }, ...ev(b.id, 2, "data") }],
        // Not a valid part (required fields missing): shown as its JSON text.
        [undefined, { type: "text-start", id: c.id, ...ev(c.id, 3, "data") }],
        [undefined, { type: "text-delta", id: c.id, text: JSON.stringify({ type: "tool-call", toolName: "no id, no input" }), ...ev(c.id, 3, "data") }],
        ["3", { type: "text-end", id: c.id, ...ev(c.id, 3, "data") }],
        ["4", { type: "reasoning-delta", id: "r1", text: "hmm", ...ev(d, 4, "reasoning-delta") }],
        [undefined, { type: "text-start", id: e, ...ev(e, 5, "note") }],
        [undefined, { type: "text-delta", id: e, text: "plain", ...ev(e, 5, "note") }],
        ["5", { type: "text-end", id: e, ...ev(e, 5, "note") }],
      ]);
      // Resuming after an event never starts inside another event's parts.
      const resumed = new SseReader(`${app.url}/tasks/${t.id}/stream`, { ...H, "Last-Event-ID": "2" });
      await resumed.until((s) => s.messages.length >= 7);
      await new Promise((r) => setTimeout(r, 100));
      await resumed.close();
      expect(resumed.messages.map((m) => [m.id, JSON.parse(m.data)])).toEqual(frames.slice(4));
      // The same mapping over the RPC, one message per event.
      const tu = client(TaskEventsService, app, "grpc");
      const got: { seq: bigint; types: string[] }[] = [];
      for await (const m of tu.streamTaskParts({ taskId: t.id, lastSequenceId: 1n }, RPC)) {
        got.push({ seq: m.sequenceId, types: m.parts.map((p) => String(p["type"])) });
        if (got.length === 4) break;
      }
      expect(got).toEqual([
        { seq: 2n, types: ["tool-call"] },
        { seq: 3n, types: ["text-start", "text-delta", "text-end"] },
        { seq: 4n, types: ["reasoning-delta"] },
        { seq: 5n, types: ["text-start", "text-delta", "text-end"] },
      ]);
      expect((await fetch(`${app.url}/tasks/${t.id}/stream?format=xml`, { headers: H })).status).toBe(422);
    });

    it("keeps retries with one key to one event: no sequence taken, the original's persist_message, pydantic length rules", async () => {
      const t = await newTask();
      const stream = { project: "acme", kind: "task" as const, key: t.id };
      const send = (body: object) => postJson(app, `/tasks/${t.id}/events`, body, H);
      const quiet = await send({ content: { type: "data", data: { n: 1 } }, idempotency_key: "quiet", persist_message: false });
      expect(quiet.status).toBe(201);
      const retried = await send({ content: { type: "text", text: "different body" }, idempotency_key: "quiet", persist_message: true });
      expect(retried).toEqual(quiet); // the original event, as it was answered the first time
      expect(await app.store.head(stream)).toBe(1);
      expect((await getJson(app, `/tasks/${t.id}/messages`, H)).json).toEqual([]);
      // Boundaries: 1 and 256 characters are keys; 256 code points of a 2-unit character too.
      for (const key of ["k", "x".repeat(256), "😀".repeat(256)]) expect((await send({ content: { type: "text", text: key.slice(0, 4) }, idempotency_key: key })).status).toBe(201);
      const long = await send({ content: { type: "text", text: "x" }, idempotency_key: "😀".repeat(257) });
      expect(long.status).toBe(422);
      expect(long.json.detail).toEqual([{ loc: ["body", "idempotency_key"], msg: "String should have at most 256 characters", type: "string_too_long", input: "😀".repeat(257), ctx: { max_length: 256 } }]);
      const empty = await send({ content: { type: "text", text: "x" }, idempotency_key: "" });
      expect(empty.json.detail).toEqual([{ loc: ["body", "idempotency_key"], msg: "String should have at least 1 character", type: "string_too_short", input: "", ctx: { min_length: 1 } }]);
      // Like FastAPI, every problem of a body is reported at once.
      const both = await send({ content: { type: "tool_call", name: "ls" }, idempotency_key: "" });
      expect(both.json.detail.map((d: any) => [d.loc.join("."), d.type])).toEqual([
        ["body.content", "union_tag_invalid"],
        ["body.idempotency_key", "string_too_short"],
      ]);
      expect(await app.store.head(stream)).toBe(4);
      expect((await getJson(app, `/events?task_id=${t.id}`, H)).json.map((e: any) => e.sequence_id)).toEqual([1, 2, 3, 4]);
      expect((await getJson(app, `/tasks/${t.id}/messages`, H)).json.map((m: any) => m.content.content)).toEqual(["k", "xxxx", "😀😀"]);
    });

    it("coalesces publishes without keys and retries with one key into one commit", async () => {
      const t = await newTask();
      const stream = { project: "acme", kind: "task" as const, key: t.id };
      const commits = app.log.stats.commits;
      const draft = (i: number, key?: string) => ({ id: `g-${t.id}-${i}`, eventType: "text", data: { i }, extra: { content: { type: "text", text: String(i) } }, ...(key ? { idempotencyKey: key } : {}) });
      // Same tick: 10 without a key and 10 copies of one keyed publish.
      const all = await Promise.all(Array.from({ length: 20 }, (_, i) => app.log.publish(stream, [draft(i, i % 2 ? "same" : undefined)])));
      expect(app.log.stats.commits - commits).toBe(1);
      const keyed = all.filter((_e, i) => i % 2).map(([e]) => e!);
      expect(new Set(keyed.map((e) => e.id))).toEqual(new Set([`g-${t.id}-1`]));
      expect(all.filter((_e, i) => i % 2 === 0).map(([e]) => e!.seq)).toEqual([1, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(keyed[0]!.seq).toBe(2); // the first copy leads; the others follow it
      expect(await app.store.head(stream)).toBe(11);
      const listed = (await getJson(app, `/events?task_id=${t.id}&limit=1000`, H)).json;
      expect(listed.map((e: any) => e.sequence_id)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    });

    it("lists with the cursor, limit and agent_id; 404/422 for unknown tasks, cursors and bad limits", async () => {
      const t = await newTask({ agent_id: "agent-list" });
      const ids: string[] = [];
      for (const text of ["a", "b", "c"]) ids.push((await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text } }, H)).json.id);
      const q = (query: string) => getJson(app, `/events?${query}`, H);
      expect((await q(`task_id=${t.id}&limit=2`)).json.map((e: any) => e.content.text)).toEqual(["a", "b"]);
      expect((await q(`task_id=${t.id}&last_processed_event_id=${ids[1]}`)).json.map((e: any) => e.id)).toEqual([ids[2]]);
      expect((await q(`task_id=${t.id}&last_processed_event_id=${ids[2]}`)).json).toEqual([]);
      expect((await q(`task_id=${t.id}&agent_id=agent-list`)).json).toHaveLength(3);
      expect((await q(`task_id=${t.id}&agent_id=someone-else`)).json).toEqual([]);
      for (const bad of ["limit=0", "limit=1001", "limit=two"]) {
        const r = await q(`task_id=${t.id}&${bad}`);
        expect(r.status, bad).toBe(422);
        expect(r.json.detail[0].loc, bad).toEqual(["query", "limit"]);
      }
      const missing = await q("limit=1");
      expect(missing.status).toBe(422);
      expect(missing.json.detail[0]).toMatchObject({ loc: ["query", "task_id"], type: "missing" });
      // Another task's event is no cursor for this one.
      const other = await newTask();
      const foreign = (await postJson(app, `/tasks/${other.id}/events`, { content: { type: "text", text: "x" } }, H)).json.id;
      expect((await q(`task_id=${t.id}&last_processed_event_id=${foreign}`)).status).toBe(404);
      expect((await q(`task_id=no-such-task`)).status).toBe(404);
      expect((await getJson(app, `/tasks/no-such-task/messages`, H)).status).toBe(404);
      expect((await getJson(app, `/tasks/no-such-task`, H)).json).toEqual({ detail: "Task no-such-task not found" });
      const sse = await fetch(`${app.url}/tasks/no-such-task/stream`, { headers: H });
      expect(sse.status).toBe(404);
      expect(await sse.json()).toEqual({ detail: "Task no-such-task not found" });
    });

    it("serves every TaskEventsService RPC over gRPC, with Connect error codes", async () => {
      const rpc = client(TaskEventsService, app, "grpc");
      const t = await rpc.createTask({ agentName: "acme/rpc", name: "via-rpc", params: { depth: 3, tags: ["x"] } }, RPC);
      expect(t).toMatchObject({ name: "via-rpc", status: "IDLE", namespaceId: "acme", params: { depth: 3, tags: ["x"] } });
      expect(t.createdAt).toMatch(RFC3339);
      expect((await rpc.getTask({ taskId: t.id }, RPC)).agents[0]!.id).toBe(t.agents[0]!.id);
      // The JSON path sees the same task.
      expect((await getJson(app, `/tasks/${t.id}`, H)).json).toMatchObject({ id: t.id, name: "via-rpc", params: { depth: 3, tags: ["x"] } });

      const text = await rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "text", value: { text: "hi" } } } }, RPC);
      const data = await rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "data", value: { data: { k: { nested: [1, "2"] } } } } }, persistMessage: false }, RPC);
      expect([text.sequenceId, data.sequenceId]).toEqual([1n, 2n]);
      expect(text).toMatchObject({ taskId: t.id, agentId: t.agents[0]!.id, streamCapabilities: STREAM_CAPABILITIES });
      expect(data.content?.part).toEqual({ case: "data", value: expect.objectContaining({ data: { k: { nested: [1, "2"] } } }) });
      expect(text.createdAt).toMatch(RFC3339);
      const viaJson = (await getJson(app, `/events/${data.id}`, H)).json;
      expect(viaJson).toMatchObject({ id: data.id, sequence_id: 2, content: { type: "data", data: { k: { nested: [1, "2"] } } } });

      expect((await rpc.listEvents({ taskId: t.id }, RPC)).events.map((e) => e.id)).toEqual([text.id, data.id]);
      expect((await rpc.listEvents({ taskId: t.id, lastProcessedEventId: text.id, limit: 5 }, RPC)).events.map((e) => e.id)).toEqual([data.id]);
      expect((await rpc.getEvent({ eventId: text.id }, RPC)).content?.part).toEqual({ case: "text", value: expect.objectContaining({ text: "hi" }) });
      const messages = (await rpc.listMessages({ taskId: t.id }, RPC)).messages;
      expect(messages.map((m) => [m.id, m.content?.type, m.content?.author, m.content?.content])).toEqual([[text.id, "text", "user", "hi"]]);

      const resumed: bigint[] = [];
      for await (const e of rpc.streamTaskEvents({ taskId: t.id, lastSequenceId: 1n }, RPC)) {
        resumed.push(e.sequenceId);
        break;
      }
      expect(resumed).toEqual([2n]);

      const codes = {
        noAgent: await rpcCode(rpc.createTask({ name: "x" }, RPC)),
        unknownTask: await rpcCode(rpc.sendTaskEvent({ taskId: "nope", content: { part: { case: "text", value: { text: "x" } } } }, RPC)),
        noContent: await rpcCode(rpc.sendTaskEvent({ taskId: t.id }, RPC)),
        emptyContent: await rpcCode(rpc.sendTaskEvent({ taskId: t.id, content: {} }, RPC)),
        dataWithoutData: await rpcCode(rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "data", value: {} } } }, RPC)),
        emptyKey: await rpcCode(rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "text", value: { text: "x" } } }, idempotencyKey: "" }, RPC)),
        longKey: await rpcCode(rpc.sendTaskEvent({ taskId: t.id, content: { part: { case: "text", value: { text: "x" } } }, idempotencyKey: "k".repeat(257) }, RPC)),
        unknownEvent: await rpcCode(rpc.getEvent({ eventId: "nope" }, RPC)),
        otherProject: await rpcCode(rpc.getEvent({ eventId: text.id }, { headers: { "x-project-id": "other" } })),
        unknownCursor: await rpcCode(rpc.listEvents({ taskId: t.id, lastProcessedEventId: "nope" }, RPC)),
        badLimit: await rpcCode(rpc.listEvents({ taskId: t.id, limit: 1001 }, RPC)),
        streamUnknown: await rpcCode((async () => {
          for await (const _e of rpc.streamTaskEvents({ taskId: "nope" }, RPC)) break;
        })()),
        messagesUnknown: await rpcCode(rpc.listMessages({ taskId: "nope" }, RPC)),
      };
      expect(codes).toEqual({
        noAgent: Code.InvalidArgument,
        unknownTask: Code.NotFound,
        noContent: Code.InvalidArgument,
        emptyContent: Code.InvalidArgument,
        dataWithoutData: Code.InvalidArgument,
        emptyKey: Code.InvalidArgument,
        longKey: Code.InvalidArgument,
        unknownEvent: Code.NotFound,
        otherProject: Code.NotFound,
        unknownCursor: Code.NotFound,
        badLimit: Code.InvalidArgument,
        streamUnknown: Code.NotFound,
        messagesUnknown: Code.NotFound,
      });
      // None of the refused calls stored anything.
      expect((await rpc.listEvents({ taskId: t.id }, RPC)).events).toHaveLength(2);
      expect(await app.store.head({ project: "acme", kind: "task", key: t.id })).toBe(2);
    });

    it("rejects bad sends (404 unknown task, 422 FastAPI detail) and stores nothing", async () => {
      const t = await newTask();
      const unknown = await postJson(app, "/tasks/no-such-task/events", { content: { type: "text", text: "x" } }, H);
      expect(unknown.status).toBe(404);
      expect(unknown.json.detail).toMatch(/not found/);
      const cases: [unknown, string][] = [
        [{ content: { type: "tool_call", name: "x" } }, "union_tag_invalid"],
        [{ content: { text: "no type" } }, "union_tag_not_found"],
        [{ content: { type: "text" } }, "missing"],
        [{ content: { type: "data", data: "not an object" } }, "dict_type"],
        [{}, "missing"],
        [{ content: { type: "text", text: "x" }, idempotency_key: "" }, "string_too_short"],
        [{ content: { type: "text", text: "x" }, idempotency_key: "k".repeat(257) }, "string_too_long"],
        [{ content: { type: "text", text: "x" }, persist_message: "yes" }, "bool_type"],
        ["{broken", "json_invalid"],
      ];
      for (const [body, type] of cases) {
        const r = await postJson(app, `/tasks/${t.id}/events`, body, H);
        expect(r.status, JSON.stringify(body)).toBe(422);
        expect(r.json.detail.map((d: any) => d.type), JSON.stringify(body)).toContain(type);
      }
      expect((await getJson(app, `/events?task_id=${t.id}`, H)).json).toEqual([]);
      expect((await getJson(app, `/tasks/${t.id}/messages`, H)).json).toEqual([]);
      expect((await getJson(app, `/events/nope`, H)).status).toBe(404);
      expect((await getJson(app, `/events?task_id=${t.id}&last_processed_event_id=nope`, H)).status).toBe(404);
    });
  });
}

describe("TerminalUse: two instances on one MongoDB race with the same idempotency keys", () => {
  const mongo = storeFactories.find((f) => f.name === "mongo")!;
  const apps: App[] = [];
  afterAll(async () => {
    for (const a of apps) await a.close();
    await mongo.teardown();
  });

  it("answers every retry with the one stored event, and never refuses the publishes written alongside", async () => {
    const dbName = `tu_race_${Date.now()}`;
    for (let i = 0; i < 2; i++) apps.push(await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }) }));
    const [one, two] = apps as [App, App];
    const t = (await postJson(one, "/tasks", { agent_name: "acme/racer" }, H)).json;
    // The stream's counter exists before the race: mongo-java-server's upsert is not atomic, so two
    // first reservations racing there can leave a sequence unused (a real MongoDB retries the upsert).
    const first = await postJson(two, `/tasks/${t.id}/events`, { content: { type: "text", text: "first" } }, H);
    expect(first.json.sequence_id).toBe(1);
    const plainIds: string[] = [first.json.id];
    const keyedIds: string[] = [];
    const ROUNDS = 6;
    for (let round = 0; round < ROUNDS; round++) {
      const keyed: Promise<{ status: number; json: any }>[] = [];
      const plain: Promise<{ status: number; json: any }>[] = [];
      for (let i = 0; i < 16; i++) {
        for (const app of [one, two]) {
          if (i % 4 === 0) plain.push(postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: `plain ${round}.${i}` } }, H));
          keyed.push(postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: `once ${round}` }, idempotency_key: `round-${round}` }, H));
        }
      }
      const k = await Promise.all(keyed);
      const p = await Promise.all(plain);
      expect(k.map((r) => r.status)).toEqual(Array(32).fill(201));
      expect(new Set(k.map((r) => JSON.stringify(r.json))).size).toBe(1); // 32 identical bodies
      expect(p.map((r) => r.status)).toEqual(Array(8).fill(201));
      keyedIds.push(k[0]!.json.id);
      plainIds.push(...p.map((r) => r.json.id));
    }
    expect(new Set(plainIds).size).toBe(plainIds.length);
    // A listing stops at a sequence that was taken but is not stored yet (the fake's counter is not
    // atomic across instances, so one can appear); such a hole is skipped after HOLE_TIMEOUT_MS.
    const expectedIds = [...keyedIds, ...plainIds].sort();
    let listed: any[] = [];
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      listed = (await getJson(two, `/events?task_id=${t.id}&limit=1000`, H)).json as any[];
      if (listed.length >= expectedIds.length) break;
    }
    expect(listed.map((e) => e.id).sort()).toEqual(expectedIds);
    const seqs = listed.map((e) => e.sequence_id);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(listed.filter((e) => e.content.text.startsWith("once")).map((e) => e.content.text)).toEqual(Array.from({ length: ROUNDS }, (_, r) => `once ${r}`));
    // A subscriber sees each stored event once, in order (sequences of lost races are void, skipped).
    const sse = new SseReader(`${one.url}/tasks/${t.id}/stream?format=events`, H);
    await sse.until((s) => s.messages.length >= listed.length);
    await new Promise((r) => setTimeout(r, 100));
    await sse.close();
    expect(sse.messages.map((m) => JSON.parse(m.data).id)).toEqual(listed.map((e) => e.id));
    const messages = (await getJson(one, `/tasks/${t.id}/messages`, H)).json as any[];
    expect(messages.map((m) => m.id).sort()).toEqual(listed.map((e) => e.id).sort());
  }, 60_000);
});

describe("TerminalUse v2 messages under RESPONSE_BATCH_BYTES", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { RESPONSE_BATCH_BYTES: "1024" } });
  });
  afterAll(async () => app?.close());

  it("ends a page at the byte budget (a larger message alone) and continues it with nextCursor, in both directions", async () => {
    const t = (await postJson(app, "/tasks", { agent_name: "acme/helper" }, H)).json;
    const texts = ["a".repeat(600), "b".repeat(600), "c".repeat(3000), "d", "e"];
    const ids: string[] = [];
    for (const text of texts) ids.push((await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text } }, H)).json.id);
    const pages = async (direction: string): Promise<string[][]> => {
      const out: string[][] = [];
      let cursor = "";
      for (let i = 0; i < 10; i++) {
        const r = await getJson(app, `/v2/messages?task_id=${t.id}&limit=10&direction=${direction}${cursor ? `&cursor=${cursor}` : ""}`, H);
        expect(r.status).toBe(200);
        out.push(r.json.data.map((m: any) => m.id));
        if (!r.json.hasMore) {
          expect(r.json.nextCursor).toBeUndefined();
          return out;
        }
        cursor = r.json.nextCursor;
      }
      throw new Error("no last page");
    };
    const [a, b, c, d, e] = ids as [string, string, string, string, string];
    expect(await pages("newer")).toEqual([[a], [b], [c], [d, e]]);
    expect(await pages("older")).toEqual([[d, e], [c], [b], [a]]);
    expect((await getJson(app, `/v2/messages?task_id=${t.id}&cursor=nope`, H)).status).toBe(422);
    expect((await getJson(app, `/v2/messages?task_id=${t.id}&limit=0`, H)).status).toBe(422);
    expect((await getJson(app, `/v2/messages?task_id=${t.id}&direction=sideways`, H)).status).toBe(422);
  });
});
