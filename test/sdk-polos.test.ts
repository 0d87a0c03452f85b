/**
 * Polos's own Python SDK (`polos-sdk` on PyPI, pinned in test/sdk/requirements.txt) against the
 * started service: auth off (the SDK's local mode: no key) and AUTH=required (the key as the SDK
 * sends it: `Authorization: Bearer`, with `X-Project-ID`). Assertions are on the SDK's own parsed
 * objects (StreamEvent, AgentResult) and their Python types.
 */
import { afterAll, beforeAll, describe, expect } from "vitest";
import type { App } from "../src/server/app.js";
import { getJson, startTestServer } from "./support/server.js";
import { itSdk, runPythonSdk } from "./support/python-sdk.js";

const MODES: { name: string; env: Record<string, string>; apiKey: string }[] = [
  { name: "auth off", env: { AUTH: "off" }, apiKey: "" },
  { name: "AUTH=required", env: { AUTH: "required", API_KEYS: "acme:polos-key-1" }, apiKey: "polos-key-1" },
];

const streamEvent = (seq: number, eventType: string | null, data: unknown, topic = "orders") => ({
  __class__: "StreamEvent",
  __types__: { id: "str", sequence_id: "int", topic: "str", event_type: eventType === null ? "NoneType" : "str", data: "dict", created_at: "str" },
  id: expect.stringMatching(/^[0-9a-f-]{36}$/),
  sequence_id: seq,
  topic,
  event_type: eventType,
  data,
  created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
});

for (const mode of MODES) {
  describe(`Polos Python SDK, ${mode.name}`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ env: mode.env });
    });
    afterAll(async () => app?.close());

    itSdk("publish, batch_publish, stream_topic (sequence, timestamp, now), resume, stream_workflow, agent result streams", async () => {
      const r = await runPythonSdk("polos_py.py", { baseUrl: app.url, apiKey: mode.apiKey, project: "acme", args: { topic: "orders", workflow_id: "review", run_id: "run-7" } });
      expect(r.publish).toEqual({ first: 1, batch: [2, 3], types: ["int", "int", "int"] });
      // The SDK sends event_type only when set: an event without one comes back with "" (Polos's own
      // server stores the type as given); the SDK's model takes str | None.
      expect(r.replay).toEqual([streamEvent(2, "updated", { n: 2 }), streamEvent(3, "", { n: 3 })]);
      expect(r.live).toEqual([streamEvent(4, "live", { n: 4 })]);
      expect(r.from_now).toEqual([5]);
      expect(r.from_timestamp).toEqual([6]);
      const wf = "workflow/review/run-7";
      expect(r.stream_workflow.map((e: any) => [e.sequence_id, e.topic, e.event_type])).toEqual([
        [1, wf, "resume_approval"],
        [2, wf, "resume_second"],
        [3, wf, "text_delta"],
        [4, wf, "text_delta"],
        [5, wf, "agent_finish"],
      ]);
      expect(r.stream_workflow[0]).toEqual(streamEvent(1, "resume_approval", { approved: true }, wf));
      expect(r.agent_text).toBe("Hello, world");
      expect(r.agent_result).toMatchObject({
        __class__: "AgentResult",
        __types__: { agent_run_id: "str", result: "str", tool_results: "list", total_steps: "int", usage: "Usage" },
        agent_run_id: "run-7",
        result: "Hello, world",
        total_steps: 2,
        usage: { __class__: "Usage", input_tokens: 3, output_tokens: 2, total_tokens: 5 },
      });
      expect(r.agent_events).toEqual(["resume_approval", "resume_second", "text_delta", "text_delta", "agent_finish"]);
      expect(r.agent_handle).toEqual(["resume_approval", "resume_second", "text_delta", "text_delta", "agent_finish"]);
      // Executions and workflows belong to Polos's orchestrator, not to this event service.
      expect(r.get_execution).toMatchObject({ error: "HTTPStatusError", status: 404 });
      expect(r.cancel_execution).toEqual({ returned: false }); // the SDK maps 404 to False
      expect(r.invoke).toMatchObject({ status: 404 });
      // The list takes the workflow run too (no SDK call lists; Polos's UI and curl do).
      const auth: Record<string, string> = mode.apiKey ? { authorization: `Bearer ${mode.apiKey}` } : {};
      const listed = await getJson(app, "/api/v1/events?workflow_id=review&workflow_run_id=run-7&project_id=acme", auth);
      expect(listed.json.events.map((e: any) => [e.sequence_id, e.topic])).toEqual([1, 2, 3, 4, 5].map((n) => [n, wf]));
      const half = await getJson(app, "/api/v1/events?workflow_run_id=run-7&project_id=acme", auth);
      expect([half.status, half.json.error]).toEqual([400, expect.stringMatching(/workflow_id/)]);
    });
  });
}
