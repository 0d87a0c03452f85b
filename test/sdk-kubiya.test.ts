/**
 * Kubiya's Python clients (pinned in test/sdk/requirements*.txt) against the started service: the
 * worker's control-plane client publishes execution events (`Authorization: UserKey <key>` when
 * AUTH=required); the stream is read as Kubiya's CLI reads it (Go, not installable here: the same
 * SSE request with `Authorization: Bearer` and Last-Event-ID), on /stream and on the /events alias.
 */
import { afterAll, beforeAll, describe, expect } from "vitest";
import type { App } from "../src/server/app.js";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { client, SseReader, startTestServer } from "./support/server.js";
import { itSdk, runPythonSdk } from "./support/python-sdk.js";

const MODES: { name: string; env: Record<string, string>; apiKey: string; read: Record<string, string> }[] = [
  { name: "auth off", env: { AUTH: "off" }, apiKey: "unused", read: {} },
  { name: "AUTH=required", env: { AUTH: "required", API_KEYS: "acme:kb-key-1" }, apiKey: "kb-key-1", read: { authorization: "Bearer kb-key-1" } },
];

const EVENTS: [string, Record<string, unknown>][] = [
  ["tool_started", { data: { tool_name: "ls", tool_execution_id: "t1", tool_input: { path: "/" } } }],
  ["message_chunk", { data: { content: "Hello", message_id: "m1" } }],
  ["tool_completed", { data: { tool_name: "ls", tool_execution_id: "t1", tool_output: { files: 3 }, tool_status: "completed" } }],
  ["done", {}],
];

for (const mode of MODES) {
  describe(`Kubiya Python clients, ${mode.name}`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ env: mode.env });
    });
    afterAll(async () => app?.close());

    itSdk("the worker's ControlPlaneClient publishes (sync and async); the stream carries what Kubiya's CLI decodes", async () => {
      const execution = `exec-${mode.env["AUTH"]}`;
      const live = new SseReader(`${app.url}/api/v1/executions/${execution}/stream`, mode.read);
      try {
        await live.until((r) => r.messages.length >= 1);
        const r = await runPythonSdk("kubiya_py.py", { baseUrl: app.url, apiKey: mode.apiKey, args: { execution_id: execution, events: EVENTS } });
        expect(r.published).toEqual([true, true, true, true]);
        expect(r.types).toEqual(["bool", "bool", "bool", "bool"]);
        // The worker's session calls belong to Kubiya's control plane: the client reports nothing found / not persisted.
        expect(r.get_session).toBeNull();
        expect(r.persist_session).toBe(false);
        await live.until((s) => s.messages.length >= 5);
        expect(live.messages[0]).toMatchObject({ event: "connected", data: JSON.stringify({ execution_id: execution, status: "connected" }) });
        const frames = live.messages.slice(1);
        expect(frames.map((m) => [m.event, m.id])).toEqual(EVENTS.map(([t], i) => [t, String(i + 1)]));
        frames.forEach((m, i) => {
          const body = JSON.parse(m.data);
          expect(body).toEqual({ event_type: EVENTS[i]![0], data: EVENTS[i]![1], timestamp: expect.any(String), execution_id: execution });
          // The worker sends its own timestamp (RFC 3339 with an offset); the CLI parses it with time.RFC3339.
          expect(body.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/);
        });
      } finally {
        await live.close();
      }
      // Resume as the CLI does after a disconnect (Last-Event-ID), on the earlier CLI's GET …/events path.
      const resumed = new SseReader(`${app.url}/api/v1/executions/${execution}/events`, { ...mode.read, "last-event-id": "2" });
      try {
        await resumed.until((s) => s.messages.length >= 3);
        expect(resumed.messages.map((m) => [m.event, m.id ?? null])).toEqual([["connected", null], ["tool_completed", "3"], ["done", "4"]]);
      } finally {
        await resumed.close();
      }
    });

    itSdk("kubiya-sdk's clients are for Kubiya's own APIs: the call fails with the 404 it gets", async () => {
      const r = await runPythonSdk("kubiya_py.py", { baseUrl: app.url, apiKey: mode.apiKey, args: { mode: "out_of_scope" } });
      expect(r["agents.list"]).toMatchObject({ error: "AgentError", message: expect.stringMatching(/404/) });
    });

    if (mode.env["AUTH"] === "required") {
      itSdk("a wrong key: the worker's publish_event reports False and nothing is stored", async () => {
        const r = await runPythonSdk("kubiya_py.py", { baseUrl: app.url, apiKey: "wrong", args: { execution_id: "exec-denied", events: [["x", {}]] } });
        expect(r.published).toEqual([false]);
        const page = await client(StreamService, app, "grpc").listEvents({ stream: { kind: StreamKind.EXECUTION, key: "exec-denied" } }, { headers: { authorization: "UserKey kb-key-1" } });
        expect(page.events).toEqual([]);
      });
    }
  });
}
