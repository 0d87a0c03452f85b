/** TerminalUse end to end over the JSON paths and gRPC, on every store adapter. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import { STREAM_CAPABILITIES } from "../src/api/terminaluse.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const H = { "X-Project-ID": "acme" };

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

    it("streams a task over SSE, resuming with Last-Event-ID, and over gRPC", async () => {
      const t = await newTask();
      await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "1" } }, H);
      const sse = new SseReader(`${app.url}/tasks/${t.id}/stream`, H);
      await sse.until((s) => s.messages.length >= 1);
      await postJson(app, `/tasks/${t.id}/events`, { content: { type: "text", text: "2" } }, H);
      await sse.until((s) => s.messages.length >= 2);
      await sse.close();
      expect(sse.messages.map((m) => [m.id, JSON.parse(m.data).content.text])).toEqual([
        ["1", "1"],
        ["2", "2"],
      ]);
      const resumed = new SseReader(`${app.url}/tasks/${t.id}/stream`, { ...H, "Last-Event-ID": "1" });
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
