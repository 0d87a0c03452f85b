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
import { parseRequest } from "../../api/common.js";
import { messageToJson } from "../../api/json.js";
import type { TerminalUseApi } from "../../api/terminaluse.js";
import { fromQuery, json, lastEventId, mapSse, type Route } from "../gateway.js";

/** TerminalUse's paths. Bad input is FastAPI's 422 `detail`; unknown tasks and events 404. */
export function terminalUseRoutes(tu: TerminalUseApi): Route[] {
  return [
    {
      method: "POST",
      path: "/tasks",
      dialect: "fastapi",
      async handle(r) {
        return json(TaskSchema, await tu.createTask(parseRequest(CreateTaskRequestSchema, r.body), r.ctx), 201);
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}",
      dialect: "fastapi",
      async handle(r) {
        return json(TaskSchema, await tu.getTask(parseRequest(GetTaskRequestSchema, r.params, ["path"]), r.ctx));
      },
    },
    {
      method: "POST",
      path: "/tasks/{task_id}/events",
      dialect: "fastapi",
      async handle(r) {
        const body = typeof r.body === "object" && r.body !== null && !Array.isArray(r.body) ? { ...r.body, task_id: r.params["task_id"] } : r.body;
        return json(TaskEventSchema, await tu.sendTaskEvent(parseRequest(SendTaskEventRequestSchema, body), r.ctx), 201);
      },
    },
    {
      method: "GET",
      path: "/events",
      dialect: "fastapi",
      async handle(r) {
        const res = await tu.listEvents(fromQuery(ListTaskEventsRequestSchema, r), r.ctx);
        return { status: 200, json: res.events.map((e) => messageToJson(TaskEventSchema, e)) };
      },
    },
    {
      method: "GET",
      path: "/events/{event_id}",
      dialect: "fastapi",
      async handle(r) {
        return json(TaskEventSchema, await tu.getEvent(parseRequest(GetTaskEventRequestSchema, r.params, ["path"]), r.ctx));
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}/stream",
      dialect: "fastapi",
      async handle(r) {
        const resume = lastEventId(r);
        const extra: Record<string, unknown> = { task_id: r.params["task_id"] };
        if (resume !== undefined) extra["last_sequence_id"] = resume;
        const source = await tu.streamTaskEvents(fromQuery(StreamTaskEventsRequestSchema, r, extra), r.ctx);
        return { sse: mapSse(source, (e) => ({ id: String(e.sequenceId), data: JSON.stringify(messageToJson(TaskEventSchema, e)) })), keepalive: ": keepalive\n\n" };
      },
    },
    {
      method: "GET",
      path: "/tasks/{task_id}/messages",
      dialect: "fastapi",
      async handle(r) {
        const res = await tu.listMessages(parseRequest(ListMessagesRequestSchema, r.params, ["path"]), r.ctx);
        return { status: 200, json: res.messages.map((m) => messageToJson(TaskMessageSchema, m)) };
      },
    },
  ];
}
