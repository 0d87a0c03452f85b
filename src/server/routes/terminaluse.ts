import {
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
import { fromQuery, json, lastEventId, withParams, type Route } from "../gateway.js";

/** TerminalUse's paths. Bad input is FastAPI's 422 `detail`; unknown tasks and events 404. */
export function terminalUseRoutes(tu: TerminalUseApi): Route[] {
  return [
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
      path: "/tasks/{task_id}/stream",
      dialect: "fastapi",
      doc: { summary: "Stream a task's events over SSE (TerminalUse)", query: StreamTaskEventsRequestSchema, responses: [{ status: 200, description: "SSE: id = sequence_id, data = the event", schema: TaskEventSchema, sse: true }] },
      async handle(r) {
        const resume = lastEventId(r);
        const extra: Record<string, unknown> = { task_id: r.params["task_id"] };
        if (resume !== undefined) extra["last_sequence_id"] = resume;
        const source = await tu.streamTaskEvents(fromQuery(StreamTaskEventsRequestSchema, r, extra), r.ctx);
        return { sse: mapBatches(source, (e) => ({ id: String(e.sequenceId), data: JSON.stringify(messageToJson(TaskEventSchema, e)) })), keepalive: ": keepalive\n\n" };
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}/messages",
      dialect: "fastapi",
      doc: { summary: "List a task's messages (TerminalUse)", responses: [{ status: 200, description: "Messages, oldest first", schema: TaskMessageSchema, array: true }] },
      async handle(r) {
        const res = await tu.listMessages(parseRequest(ListMessagesRequestSchema, r.params, ["path"]), r.ctx);
        return { status: 200, json: res.messages.map((m) => messageToJson(TaskMessageSchema, m)) };
      },
    },
  ];
}
