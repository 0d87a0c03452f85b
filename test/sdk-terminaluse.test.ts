/**
 * TerminalUse's own Python SDK (`terminaluse` on PyPI, pinned in test/sdk/requirements.txt; its
 * TerminalUse and AsyncTerminalUse clients) against the started service, with auth off and with
 * AUTH=required, the key handed to the SDK both ways it takes one (token= → `Authorization: Bearer`,
 * agent_api_key= → `x-agent-api-key`). Every task/event/message/stream call, asserted on the SDK's
 * own parsed objects (class, required fields, their Python types); every other call of the client
 * is checked to get the status the README's matrix names.
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect } from "vitest";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { STREAM_CAPABILITIES } from "../src/api/terminaluse.js";
import type { App } from "../src/server/app.js";
import { itSdk, runPythonSdk, startPythonSdk } from "./support/python-sdk.js";
import { client, startTestServer } from "./support/server.js";

const PROJECT = "acme";
const MODES: { name: string; env: Record<string, string>; apiKey: string; credential: "token" | "agent_api_key" }[] = [
  { name: "auth off", env: { AUTH: "off" }, apiKey: "", credential: "token" },
  { name: "AUTH=required, token (Bearer)", env: { AUTH: "required", API_KEYS: `${PROJECT}:tu-key-1` }, apiKey: "tu-key-1", credential: "token" },
  { name: "AUTH=required, agent_api_key (x-agent-api-key)", env: { AUTH: "required", API_KEYS: `${PROJECT}:tu-key-1` }, apiKey: "tu-key-1", credential: "agent_api_key" },
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?\+00:00$/;

/** The SDK's TaskResponse as the harness dumps it: required fields present and typed as pydantic requires. */
function expectTask(t: any, name: string | null, model: "TaskResponse" | "Task" = "TaskResponse"): void {
  expect(t.__class__).toBe(model);
  expect(t.__types__).toMatchObject({ id: "str", filesystem_id: "str", namespace_id: "str", created_at: "datetime", updated_at: "datetime", params: "dict", task_metadata: "dict" });
  if (model === "TaskResponse") expect(t.__types__.agents).toBe("list");
  expect(t.id).toMatch(UUID);
  expect(t.name).toBe(name);
  expect(t.created_at).toMatch(ISO);
  for (const a of t.agents ?? []) {
    expect(a.__class__).toBe("Agent");
    expect(a.__types__).toMatchObject({ id: "str", name: "str", namespace_id: "str", description: "str", created_at: "datetime", updated_at: "datetime" });
  }
}

function expectEvent(e: any): void {
  expect(e.__class__).toBe("Event");
  expect(e.__types__).toMatchObject({ id: "str", agent_id: "str", task_id: "str", sequence_id: "int", created_at: "datetime", stream_capabilities: "list" });
  expect(e.stream_capabilities).toEqual(STREAM_CAPABILITIES);
}

/** Which parts (class, type) the SDK yielded. */
const kinds = (parts: any[]) => parts.map((p) => `${p.__class__}:${p.type}`);

for (const mode of MODES) {
  describe(`TerminalUse Python SDK, ${mode.name}`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ env: mode.env });
    });
    afterAll(async () => app?.close());
    const project = mode.env["AUTH"] === "required" ? PROJECT : "default";
    const target = () => ({ baseUrl: app.url, apiKey: mode.apiKey, args: { credential: mode.credential } });

    itSdk("tasks, events, v2 messages and the stream parts, through TerminalUse (sync)", async () => {
      const suffix = `-${mode.credential}`;
      const py = startPythonSdk("terminaluse_py.py", { ...target(), args: { credential: mode.credential, suffix, history_parts: 11 } });
      const [{ task }] = await py.waitForLines(1);
      // Meanwhile, two events reach the task through another surface (the shared StreamService).
      const rpc = client(StreamService, app, "connect");
      await rpc.publish(
        { stream: { kind: StreamKind.TASK, key: task.id }, events: [{ eventType: "tool-result", data: fromJson(ValueSchema, { toolCallId: "c0", toolName: "ls", output: ["a", "b"] }) }, { eventType: "progress", data: fromJson(ValueSchema, { pct: 50 }) }] },
        { headers: mode.apiKey ? { authorization: `Bearer ${mode.apiKey}` } : { "x-project-id": project } },
      );
      py.send({ go: true });
      const r = await py.result();

      expectTask(r.created, `triage${suffix}`);
      expect(r.created).toMatchObject({ params: { repo: "x", depth: 2 }, status: "IDLE", namespace_id: "acme", filesystem_id: "", task_metadata: {} });
      expect(r.created.agents[0]).toMatchObject({ name: "acme/helper", namespace_id: "acme", description: "", status: "ACTIVE" });
      expectTask(r.retrieved, `triage${suffix}`);
      expect(r.retrieved).toEqual(r.created);
      expect(r.by_name.id).toBe(task.id);
      expect(r.listed).toEqual([r.other_id, task.id]);
      expect(r.listed_by_agent).toEqual([task.id]);
      expect(r.listed_namespace).toEqual([task.id]);
      expect(r.listed_page2).toEqual([r.other_id]);

      for (const e of r.sent) expectEvent(e);
      expect(r.sent.map((e: any) => [e.sequence_id, e.content])).toEqual([
        [3, { __class__: "TextPart", __types__: { text: "str", type: "str" }, text: "hello", type: "text" }],
        [4, { __class__: "DataPart", __types__: { data: "dict", type: "str" }, data: { type: "tool-call", toolCallId: "c1", toolName: "ls", input: { dir: "/" } }, type: "data" }],
        [5, { __class__: "DataPart", __types__: { data: "dict", type: "str" }, data: { step: 2 }, type: "data" }],
      ]);
      expect(r.retry_is_original).toBe(true);
      expect(r.bad_send.status).toBe(422);
      expect(r.bad_send.detail.__class__).toBe("HttpValidationError");
      expect(r.bad_send.detail.detail[0]).toMatchObject({ __class__: "ValidationError", loc: ["body", "idempotency_key"], type: "string_too_short" });

      // events.list parses every event of the task, the foreign ones included (sequence 1 and 2).
      expect(r.events.map((e: any) => e.sequence_id)).toEqual([1, 2, 3, 4, 5]);
      for (const e of r.events) expectEvent(e);
      expect(r.events_after_first).toEqual([4, 5]);
      expect(r.events_other_agent).toEqual([]);
      expectEvent(r.event);
      expect(r.event.sequence_id).toBe(4);

      // v2 messages: UIMessages, newest first, one per page, the pager following nextCursor.
      expect(r.messages_first_page).toMatchObject({ __class__: "ListMessagesV2Response", has_more: true, next_cursor: r.sent[1].id });
      expect(r.messages_all.map((m: any) => [m.__class__, m.role, m.parts[0].__class__])).toEqual([
        ["UiMessage", "user", "UiMessagePartWrapper_Data"],
        ["UiMessage", "user", "UiMessagePartWrapper_Text"],
      ]);
      expect(r.messages_all.map((m: any) => m.id)).toEqual([r.sent[1].id, r.sent[0].id]); // persist_message=False wrote none
      expect(r.messages_all[1]).toMatchObject({ __types__: { id: "str", role: "str", parts: "list", created_at: "str" }, parts: [{ type: "text", text: "hello" }] });
      expect(r.messages_newer).toEqual([r.sent[0].id, r.sent[1].id]);
      expect(r.message).toMatchObject({ __class__: "UiMessage", id: r.sent[0].id, role: "user" });
      expect(r.message_missing).toBeNull();

      // The stream: the SDK's own TextStreamPart classes, for every event whatever surface wrote it, then live.
      expect(kinds(r.stream)).toEqual([
        "TextStreamPartWrapper_ToolResult:tool-result", // seq 1, from StreamService.Publish (event type names the part)
        "TextStreamPartWrapper_TextStart:text-start", // seq 2, plain data from another surface: its JSON as text
        "TextStreamPartWrapper_TextDelta:text-delta",
        "TextStreamPartWrapper_TextEnd:text-end",
        "TextStreamPartWrapper_TextStart:text-start", // seq 3, the text event "hello"
        "TextStreamPartWrapper_TextDelta:text-delta",
        "TextStreamPartWrapper_TextEnd:text-end",
        "TextStreamPartWrapper_ToolCall:tool-call", // seq 4, a data event that is a part
        "TextStreamPartWrapper_TextStart:text-start", // seq 5, plain data
        "TextStreamPartWrapper_TextDelta:text-delta",
        "TextStreamPartWrapper_TextEnd:text-end",
        "TextStreamPartWrapper_TextStart:text-start", // seq 6, sent while the stream was open
        "TextStreamPartWrapper_TextDelta:text-delta",
        "TextStreamPartWrapper_TextEnd:text-end",
      ]);
      expect(r.stream[0]).toMatchObject({ __types__: { tool_call_id: "str", tool_name: "str" }, tool_call_id: "c0", tool_name: "ls", output: ["a", "b"], event: { sequence_id: 1, event_type: "tool-result" } });
      expect(r.stream[2]).toMatchObject({ __types__: { id: "str", text: "str" }, text: '{"pct":50}', event: { sequence_id: 2, event_type: "progress" } });
      expect(r.stream[5]).toMatchObject({ text: "hello", id: r.sent[0].id, event: { id: r.sent[0].id, sequence_id: 3 } });
      expect(r.stream[7]).toMatchObject({ __types__: { input: "dict", tool_call_id: "str", tool_name: "str" }, input: { dir: "/" }, tool_call_id: "c1" });
      expect(r.stream[9].text).toBe('{"step":2}');
      expect(r.stream[12]).toMatchObject({ text: "live", id: r.live_id, event: { id: r.live_id, sequence_id: 6 } });
      expect(r.stream_by_name).toEqual(["tool-result", "text-start", "text-delta"]);

      expectTask(r.updated, `triage${suffix}`, "Task"); // tasks.update parses the plain Task model
      expect(r.updated.task_metadata).toEqual({ owner: "py" });
      expect(r.updated_by_name.task_metadata).toEqual({ n: 1 });
      expect(r.canceled).toMatchObject({ __class__: "TaskResponse", status: "CANCELED", status_reason: "Canceled by request", task_metadata: { owner: "py" } });
      expect(r.canceled_again).toBe("CANCELED");
      for (const k of ["retrieve_unknown", "cancel_unknown", "stream_unknown", "messages_unknown"]) expect(r[k], k).toMatchObject({ class: "ApiError", status: 404, body: { detail: expect.stringContaining("not found") } });
    });

    itSdk("the same through AsyncTerminalUse; without a valid key the SDK gets 401", async () => {
      const r = await runPythonSdk("terminaluse_async.py", target());
      expectTask(r.created, "async-task");
      expectTask(r.retrieved, "async-task");
      expect(r.listed).toEqual([r.created.id]);
      expectEvent(r.sent);
      expectEvent(r.event);
      expect(r.events).toEqual([1]);
      expect(r.messages.map((m: any) => [m.__class__, m.parts[0].text])).toEqual([["UiMessage", "from async"]]);
      expect(kinds(r.stream)).toEqual([
        "TextStreamPartWrapper_TextStart:text-start",
        "TextStreamPartWrapper_TextDelta:text-delta",
        "TextStreamPartWrapper_TextEnd:text-end",
        "TextStreamPartWrapper_Finish:finish",
        "TextStreamPartWrapper_ReasoningStart:reasoning-start",
      ]);
      expect(r.stream[3]).toMatchObject({ finish_reason: "stop", total_usage: { __class__: "StreamUsage", input_tokens: 3, output_tokens: 5 } });
      expect(r.canceled).toBe("CANCELED");
      if (mode.env["AUTH"] === "required") {
        expect(r.wrong_key).toEqual({ status: 401, body: { detail: "invalid, revoked or expired API key" } });
        expect(r.no_key).toMatchObject({ status: 401 });
      } else {
        expect([r.wrong_key, r.no_key]).toEqual([null, null]); // auth off: keys are not looked at
      }
    });

    if (mode.credential === "token") {
      itSdk("every other call of the client gets 404 or 405 (out of scope: see the README's matrix)", async () => {
        const r = await runPythonSdk("terminaluse_unserved.py", { ...target(), args: { served: SERVED } });
        const statuses = Object.fromEntries(Object.entries(r).map(([k, v]: [string, any]) => [k, v.status ?? v.error]));
        expect(statuses).toEqual(UNSERVED);
      });
    }
  });
}

/** The calls the tests above drive (the README's matrix lists them as served). */
const SERVED = [
  "tasks.create", "tasks.retrieve", "tasks.retrieve_by_name", "tasks.list", "tasks.cancel", "tasks.update", "tasks.update_by_name",
  "tasks.send_event", "tasks.stream", "tasks.stream_by_name", "events.list", "events.retrieve", "messages_v2.list", "messages_v2.retrieve",
];

/** Every other call of terminaluse 0.35.0's client, by resource ("(root)": methods of the client itself). */
const OUT_OF_SCOPE: Record<string, string[]> = {
  "(root)": ["search"],
  "agent_api_keys": ["agent_api_keys_create", "agent_api_keys_delete", "agent_api_keys_list", "agent_api_keys_name_delete", "agent_api_keys_name_retrieve", "agent_api_keys_retrieve"],
  "agents": ["delete", "delete_by_name", "deploy", "forward_get_by_name", "list", "retrieve", "retrieve_by_name", "retrieve_metrics", "rpc_by_name"],
  "api_keys": ["create", "delete", "list", "retrieve", "update_scopes", "update_sharing_groups"],
  "authentication": ["authenticate"],
  "branches": ["agents_environments_rollback_create", "redeploy", "retrieve", "rollback"],
  "builds": ["prepare", "retrieve", "submit"],
  "cli_authentication": ["exchange_cli_token", "refresh_cli_token"],
  "filesystems": ["create", "download_file", "get_download_url", "get_file", "get_upload_url", "list", "list_files", "retrieve", "sync_complete", "upload_file"],
  "groups": ["create", "delete", "list", "managers_delete", "managers_list", "managers_upsert", "members_delete", "members_list", "members_upsert", "retrieve", "update", "visible_orgs_delete", "visible_orgs_list", "visible_orgs_upsert"],
  "logs": ["ingest_otlp", "list", "stream"],
  "namespaces": ["check_slug_availability", "create", "delete", "list", "retrieve", "retrieve_by_slug", "retry_provisioning", "update"],
  "o_auth": ["exchange_token", "initiate_oauth"],
  "organizations": ["create_invitation", "list", "list_invitations", "list_members", "remove_member", "resend_invitation", "retrieve_current", "revoke_invitation", "update_member"],
  "projects": ["create", "delete", "list", "list_collaborators", "remove_collaborator", "retrieve", "update", "upsert_collaborator"],
  "raw_events": ["publish_raw_event"],
  "registry": ["auth"],
  "schedules": ["agents_schedules_create", "agents_schedules_delete", "agents_schedules_list", "agents_schedules_pause", "agents_schedules_retrieve", "agents_schedules_trigger", "agents_schedules_unpause"],
  "spans": ["create", "list", "retrieve", "update"],
  "states": ["create", "delete", "list", "retrieve", "update"],
  "tasks": ["delete", "delete_by_name", "get_system_folder", "get_system_folder_download_url", "get_system_folder_upload_url", "handler_end", "list_system_folder_types", "migrate", "system_folder_sync_complete"],
  "telemetry": ["agent_metrics_ingest", "traces_ingest"],
  "tracker": ["list", "retrieve", "update"],
  "version_events": ["versions_events_list"],
  "versions": ["deploy_stream", "metrics", "pod_logs", "pod_metrics", "register", "retrieve"],
};

/** What they get: 405 where the path is served for other methods (DELETE /tasks/{id}, POST /tasks/migrate matches /tasks/{id}), else 404. */
const METHOD_NOT_ALLOWED = new Set(["tasks.delete", "tasks.delete_by_name", "tasks.migrate"]);
const UNSERVED: Record<string, number> = Object.fromEntries(
  Object.entries(OUT_OF_SCOPE).flatMap(([res, ms]) => ms.map((m) => (res === "(root)" ? m : `${res}.${m}`))).map((n) => [n, METHOD_NOT_ALLOWED.has(n) ? 405 : 404]),
);
