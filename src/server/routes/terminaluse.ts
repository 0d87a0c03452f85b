import {
  CancelTaskRequestSchema,
  GetTaskByNameRequestSchema,
  GetUiMessageRequestSchema,
  ListTasksRequestSchema,
  ListUiMessagesRequestSchema,
  ListUiMessagesResponseSchema,
  StreamTaskPartsRequestSchema,
  TaskStreamPartsSchema,
  UiMessageSchema,
  UpdateTaskRequestSchema,
  CreateTaskRequestSchema,
  GetTaskEventRequestSchema,
  GetTaskRequestSchema,
  ListMessagesRequestSchema,
  ListTaskEventsRequestSchema,
  SendTaskEventRequestSchema,
  StreamTaskEventsRequestSchema,
  TaskEventSchema,
  TaskMessageSchema,
  TaskSchema,
} from "../../../gen/terminaluse/v1/terminaluse_pb.js";
import { mapBatches, parseRequest } from "../../api/common.js";
import { messageToJson } from "../../api/json.js";
import type { TerminalUseApi } from "../../api/terminaluse.js";
import { fromQuery, json, lastEventId, withParams, type Route, type RouteRequest, type RouteResult } from "../gateway.js";

/**
 * A task's stream over SSE. By default TerminalUse's stream parts (what its SDKs decode: each part
 * one `data:` frame, the event's sequence the `id:` of its last part); with `?format=events` the
 * service's own event JSON, one frame per event with `id:` = sequence_id.
 */
async function taskStream(tu: TerminalUseApi, r: RouteRequest): Promise<RouteResult> {
  const resume = lastEventId(r);
  const extra: Record<string, unknown> = { ...r.params };
  if (resume !== undefined) extra["last_sequence_id"] = resume;
  const req = fromQuery(StreamTaskPartsRequestSchema, r, extra);
  if (req.format === "events") {
    const taskId = req.taskId ?? (await tu.getTaskByName(parseRequest(GetTaskByNameRequestSchema, { task_name: req.taskName, agent_id: req.agentId }, ["path"]), r.ctx)).id;
    const source = await tu.streamTaskEvents(parseRequest(StreamTaskEventsRequestSchema, { task_id: taskId, ...(req.lastSequenceId !== undefined ? { last_sequence_id: Number(req.lastSequenceId) } : {}) }, ["query"]), r.ctx);
    return { sse: mapBatches(source, (e) => ({ id: String(e.sequenceId), data: JSON.stringify(messageToJson(TaskEventSchema, e)) })), keepalive: ": keepalive\n\n" };
  }
  const source = await tu.streamTaskParts(req, r.ctx);
  return {
    sse: (async function* () {
      for await (const batch of source) yield batch.flatMap((ev) => ev.parts.map((p, i) => ({ ...(i === ev.parts.length - 1 ? { id: String(ev.sequenceId) } : {}), data: JSON.stringify(p) })));
    })(),
    keepalive: ": keepalive\n\n",
  };
}


/** PUT /tasks/name/{name}?agent_id=: the agent narrows which task of that name. */
function withAgent(body: unknown, agent: string | null): unknown {
  return agent !== null && typeof body === "object" && body !== null && !Array.isArray(body) ? { ...body, agent_id: agent } : body;
}

/** TerminalUse's paths. Bad input is FastAPI's 422 `detail`; unknown tasks and events 404. */
export function terminalUseRoutes(tu: TerminalUseApi): Route[] {
  const streamDoc = (summary: string) => ({
    summary,
    query: StreamTaskPartsRequestSchema,
    responses: [{ status: 200, description: "SSE: TerminalUse stream parts (each `data:` one part; `id:` = sequence_id on an event's last part), or with format=events the event JSON", schema: TaskStreamPartsSchema, sse: true }],
  });
  return [
    // Before the /tasks/{task_id}/... routes: /tasks/name/stream is the task named "stream".
    {
      method: "GET",
      path: "/tasks/name/{task_name}",
      dialect: "fastapi",
      doc: { summary: "Get the newest task of a name (TerminalUse)", query: GetTaskByNameRequestSchema, responses: [{ status: 200, description: "The task", schema: TaskSchema }] },
      async handle(r) {
        return json(TaskSchema, await tu.getTaskByName(fromQuery(GetTaskByNameRequestSchema, r, r.params), r.ctx));
      },
    },
    {
      method: "PUT",
      path: "/tasks/name/{task_name}",
      dialect: "fastapi",
      doc: { summary: "Replace a task's task_metadata, by name (TerminalUse)", body: UpdateTaskRequestSchema, responses: [{ status: 200, description: "The task", schema: TaskSchema }] },
      async handle(r) {
        const agent = r.query.get("agent_id");
        return json(TaskSchema, await tu.updateTask(parseRequest(UpdateTaskRequestSchema, withParams(r, withAgent(r.body, agent))), r.ctx));
      },
    },
    {
      method: "GET",
      path: "/tasks/name/{task_name}/stream",
      dialect: "fastapi",
      doc: streamDoc("Stream the newest task of a name over SSE (TerminalUse)"),
      handle: (r) => taskStream(tu, r),
    },
    {
      method: "GET",
      path: "/tasks",
      dialect: "fastapi",
      doc: { summary: "List tasks (TerminalUse)", query: ListTasksRequestSchema, responses: [{ status: 200, description: "Tasks, newest first unless ordered otherwise", schema: TaskSchema, array: true }] },
      async handle(r) {
        const res = await tu.listTasks(fromQuery(ListTasksRequestSchema, r), r.ctx);
        return { status: 200, json: res.tasks.map((t) => messageToJson(TaskSchema, t)) };
      },
    },
    {
      method: "PUT",
      path: "/tasks/{task_id}",
      dialect: "fastapi",
      doc: { summary: "Replace a task's task_metadata (TerminalUse)", body: UpdateTaskRequestSchema, responses: [{ status: 200, description: "The task", schema: TaskSchema }] },
      async handle(r) {
        return json(TaskSchema, await tu.updateTask(parseRequest(UpdateTaskRequestSchema, withParams(r)), r.ctx));
      },
    },
    {
      method: "POST",
      path: "/tasks/{task_id}/cancel",
      dialect: "fastapi",
      doc: { summary: "Cancel a task (TerminalUse)", responses: [{ status: 200, description: "The task, CANCELED", schema: TaskSchema }] },
      async handle(r) {
        return json(TaskSchema, await tu.cancelTask(parseRequest(CancelTaskRequestSchema, r.params, ["path"]), r.ctx));
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}/stream",
      dialect: "fastapi",
      doc: streamDoc("Stream a task over SSE (TerminalUse)"),
      handle: (r) => taskStream(tu, r),
    },
    {
      method: "GET",
      path: "/v2/messages",
      dialect: "fastapi",
      doc: { summary: "List a task's messages as UIMessages (TerminalUse)", query: ListUiMessagesRequestSchema, responses: [{ status: 200, description: "A page of messages", schema: ListUiMessagesResponseSchema }] },
      async handle(r) {
        return json(ListUiMessagesResponseSchema, await tu.listUiMessages(fromQuery(ListUiMessagesRequestSchema, r), r.ctx));
      },
    },
    {
      method: "GET",
      path: "/v2/messages/{message_id}",
      dialect: "fastapi",
      doc: { summary: "Get one UIMessage of a task (TerminalUse)", query: GetUiMessageRequestSchema, responses: [{ status: 200, description: "The message, or null", schema: UiMessageSchema }] },
      async handle(r) {
        const res = await tu.getUiMessage(fromQuery(GetUiMessageRequestSchema, r, r.params), r.ctx);
        return { status: 200, json: res.message ? messageToJson(UiMessageSchema, res.message) : null };
      },
    },
    {
      method: "POST",
      path: "/tasks",
      dialect: "fastapi",
      doc: { summary: "Create a task (TerminalUse)", body: CreateTaskRequestSchema, responses: [{ status: 201, description: "Created", schema: TaskSchema }] },
      async handle(r) {
        return json(TaskSchema, await tu.createTask(parseRequest(CreateTaskRequestSchema, r.body), r.ctx), 201);
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}",
      dialect: "fastapi",
      doc: { summary: "Get a task (TerminalUse)", responses: [{ status: 200, description: "The task", schema: TaskSchema }] },
      async handle(r) {
        return json(TaskSchema, await tu.getTask(parseRequest(GetTaskRequestSchema, r.params, ["path"]), r.ctx));
      },
    },
    {
      method: "POST",
      path: "/tasks/{task_id}/events",
      dialect: "fastapi",
      doc: { summary: "Send an event to a task (TerminalUse)", body: SendTaskEventRequestSchema, responses: [{ status: 201, description: "Stored (or the original event for a repeated idempotency_key)", schema: TaskEventSchema }] },
      async handle(r) {
        return json(TaskEventSchema, await tu.sendTaskEvent(parseRequest(SendTaskEventRequestSchema, withParams(r)), r.ctx), 201);
      },
    },
    {
      method: "GET",
      path: "/events",
      dialect: "fastapi",
      doc: { summary: "List a task's events (TerminalUse)", query: ListTaskEventsRequestSchema, responses: [{ status: 200, description: "Events by sequence_id", schema: TaskEventSchema, array: true }] },
      async handle(r) {
        const res = await tu.listEvents(fromQuery(ListTaskEventsRequestSchema, r), r.ctx);
        return { status: 200, json: res.events.map((e) => messageToJson(TaskEventSchema, e)) };
      },
    },
    {
      method: "GET",
      path: "/events/{event_id}",
      dialect: "fastapi",
      doc: { summary: "Get an event (TerminalUse)", responses: [{ status: 200, description: "The event", schema: TaskEventSchema }] },
      async handle(r) {
        return json(TaskEventSchema, await tu.getEvent(parseRequest(GetTaskEventRequestSchema, r.params, ["path"]), r.ctx));
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}/messages",
      dialect: "fastapi",
      doc: { summary: "List a task's messages (TerminalUse)", responses: [{ status: 200, description: "Messages, oldest first", schema: TaskMessageSchema, array: true }] },
      async handle(r) {
        const res = await tu.listMessages(fromQuery(ListMessagesRequestSchema, r, r.params), r.ctx);
        // TerminalUse answers a bare array (no paging fields): a page cut at `limit` or
        // RESPONSE_BATCH_BYTES names the next one in a Link header (RFC 8288).
        const next = res.nextCursor === undefined ? undefined : `</tasks/${encodeURIComponent(r.params["task_id"] ?? "")}/messages?cursor=${res.nextCursor}${r.query.has("limit") ? `&limit=${encodeURIComponent(r.query.get("limit")!)}` : ""}>; rel="next"`;
        return { status: 200, json: res.messages.map((m) => messageToJson(TaskMessageSchema, m)), ...(next ? { headers: { link: next } } : {}) };
      },
    },
  ];
}
