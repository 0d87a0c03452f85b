import { createHash, randomUUID } from "node:crypto";
import { create, fromJson, type JsonValue as PbJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ContentSchema } from "../../gen/events/v1/events_pb.js";
import {
  AgentSchema,
  CreateTaskRequestSchema,
  GetTaskEventRequestSchema,
  GetTaskRequestSchema,
  ListMessagesRequestSchema,
  ListMessagesResponseSchema,
  ListTaskEventsRequestSchema,
  ListTaskEventsResponseSchema,
  MessageContentSchema,
  SendTaskEventRequestSchema,
  StreamTaskEventsRequestSchema,
  TaskEventSchema,
  TaskMessageSchema,
  TaskSchema,
  type CreateTaskRequest,
  type GetTaskEventRequest,
  type GetTaskRequest,
  type ListMessagesRequest,
  type ListMessagesResponse,
  type ListTaskEventsRequest,
  type ListTaskEventsResponse,
  type SendTaskEventRequest,
  type StreamTaskEventsRequest,
  type Task,
  type TaskEvent,
} from "../../gen/terminaluse/v1/terminaluse_pb.js";
import { streamName, type JsonObject, type StoredEvent, type StreamId } from "../core/types.js";
import type { TaskRecord, TaskStore } from "../store/tasks.js";
import { contentOf } from "./mapping.js";
import { checkRequired, DEFAULT_PROJECT, follow, invalid, invalidField, mapBatches, pageLimit, rfc3339, seqFromPb, type ApiDeps, type CallContext } from "./common.js";
import { messageToJson } from "./json.js";

/**
 * What a subscriber of a task can use here, advertised on every event: SSE with Last-Event-ID
 * resume, the gRPC/Connect server stream, resuming from any sequence, and idempotent sends.
 */
export const STREAM_CAPABILITIES = ["sse", "sse_last_event_id_resume", "grpc_server_stream", "resume_by_sequence_id", "idempotent_send"];

/** A stable agent id for an agent known by name: a name-based UUID (SHA-1, as UUID v5) within the project. */
function agentIdFor(project: string, name: string): string {
  const h = createHash("sha1").update(`${project}\n${name}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString("hex");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

export interface TerminalUseDeps extends ApiDeps {
  tasks: TaskStore;
}

/** TerminalUse: tasks of agents, each task one stream of events; idempotent sends; message records. */
export function terminalUseApi(deps: TerminalUseDeps) {
  const project = (ctx: CallContext): string => ctx.project ?? DEFAULT_PROJECT;
  const taskStream = (p: string, id: string): StreamId => ({ project: p, kind: "task", key: id });

  async function task(ctx: CallContext, id: string): Promise<TaskRecord> {
    const t = await deps.tasks.getTask(project(ctx), id);
    if (!t) throw new ConnectError(`Task ${id} not found`, Code.NotFound);
    return t;
  }

  function toTask(t: TaskRecord): Task {
    const [namespace] = t.agentName.includes("/") ? t.agentName.split("/") : [t.project];
    return create(TaskSchema, {
      id: t.id,
      name: t.name,
      params: t.params,
      status: t.status,
      filesystemId: t.filesystemId,
      namespaceId: namespace ?? t.project,
      agents: [create(AgentSchema, { id: t.agentId, name: t.agentName, namespaceId: namespace ?? t.project, status: "ACTIVE", createdAt: rfc3339(t.createdAt), updatedAt: rfc3339(t.createdAt) })],
      createdAt: rfc3339(t.createdAt),
      updatedAt: rfc3339(t.updatedAt),
      taskMetadata: {},
    });
  }

  function toEvent(e: StoredEvent, t: { id: string; agentId: string }): TaskEvent {
    return create(TaskEventSchema, {
      agentId: t.agentId,
      id: e.id,
      sequenceId: BigInt(e.seq),
      taskId: t.id,
      content: contentOf(e),
      createdAt: rfc3339(e.createdAt),
      streamCapabilities: STREAM_CAPABILITIES,
    });
  }

  return {
    async createTask(req: CreateTaskRequest, ctx: CallContext): Promise<Task> {
      checkRequired(CreateTaskRequestSchema, req);
      if (!req.agentId && !req.agentName) {
        throw invalid([{ loc: ["body"], msg: "Provide agent_id or agent_name", type: "value_error" }]);
      }
      const p = project(ctx);
      const now = deps.now();
      const t: TaskRecord = {
        id: randomUUID(),
        project: p,
        params: (req.params ?? {}) as JsonObject,
        agentId: req.agentId ?? agentIdFor(p, req.agentName!),
        agentName: req.agentName ?? req.agentId!,
        status: "IDLE",
        createdAt: now,
        updatedAt: now,
        ...(req.name !== undefined ? { name: req.name } : {}),
        ...(req.filesystemId !== undefined ? { filesystemId: req.filesystemId } : {}),
      };
      await deps.tasks.createTask(t);
      return toTask(t);
    },

    async getTask(req: GetTaskRequest, ctx: CallContext): Promise<Task> {
      checkRequired(GetTaskRequestSchema, req, ["path"]);
      return toTask(await task(ctx, req.taskId));
    },

    async sendTaskEvent(req: SendTaskEventRequest, ctx: CallContext): Promise<TaskEvent> {
      // Field rules (required content, idempotency_key 1-256 characters) come from the proto options.
      checkRequired(SendTaskEventRequestSchema, req);
      // RPC callers may send a Content with no part, or a DataPart without data (JSON bodies
      // cannot: json.ts checks the union and its required fields).
      const part = req.content!.part;
      if (part.case === undefined) throw invalid([{ loc: ["body", "content"], msg: "Unable to extract tag using discriminator 'type'", type: "union_tag_not_found" }]);
      if (part.case === "data" && part.value.data === undefined) throw invalid([{ loc: ["body", "content", "data", "data"], msg: "Field required", type: "missing" }]);
      const key = req.idempotencyKey;
      const t = await task(ctx, req.taskId);
      const content = messageToJson(ContentSchema, req.content!) as JsonObject;
      const persist = req.persistMessage ?? true;
      const [stored] = await deps.log.publish(
        taskStream(t.project, t.id),
        [{ id: randomUUID(), eventType: String(content["type"]), data: content, extra: { content, persist_message: persist }, ...(key !== undefined ? { idempotencyKey: key } : {}) }],
        { source: "terminaluse" },
      );
      const event = stored!;
      // A retry (same idempotency key) returns the original event and follows the original's
      // persist_message, whatever the retry says: it writes nothing new. Message records are keyed
      // by the event id, so a retry after a crash between the event and its message completes it.
      if (event.extra?.["persist_message"] !== false) {
        const c = event.extra?.["content"] as JsonObject;
        const body: JsonObject =
          c["type"] === "text" ? { type: "text", author: "user", content: c["text"] ?? "", format: "plain" } : { type: "data", author: "user", data: c["data"] ?? {} };
        await deps.tasks.addMessage({ id: event.id, project: t.project, taskId: t.id, content: body, createdAt: event.createdAt, seq: event.seq });
      }
      return toEvent(event, t);
    },

    async listEvents(req: ListTaskEventsRequest, ctx: CallContext): Promise<ListTaskEventsResponse> {
      checkRequired(ListTaskEventsRequestSchema, req, ["query"]);
      const t = await task(ctx, req.taskId);
      const stream = taskStream(t.project, t.id);
      let after = 0;
      if (req.lastProcessedEventId !== undefined) {
        const e = await deps.log.store.getEvent(req.lastProcessedEventId);
        if (!e || e.stream !== streamName(stream)) throw new ConnectError(`event ${req.lastProcessedEventId} not found in task ${t.id}`, Code.NotFound);
        after = e.seq;
      }
      // FastAPI's 1 <= limit <= 1000 (pageLimit alone would read 0 as "default").
      if (req.limit === 0) throw invalidField(["query", "limit"], "Input should be greater than or equal to 1", "greater_than_equal", 0);
      const limit = pageLimit(req.limit, ["query", "limit"]);
      if (req.agentId !== undefined && req.agentId !== t.agentId) return create(ListTaskEventsResponseSchema, { events: [] });
      const page = await deps.log.list(stream, after, limit);
      return create(ListTaskEventsResponseSchema, { events: page.events.map((e) => toEvent(e, t)) });
    },

    async getEvent(req: GetTaskEventRequest, ctx: CallContext): Promise<TaskEvent> {
      checkRequired(GetTaskEventRequestSchema, req, ["path"]);
      const p = project(ctx);
      const e = await deps.log.store.getEvent(req.eventId);
      const prefix = `${encodeURIComponent(p)}/task/`;
      if (!e || !e.stream.startsWith(prefix) || (e.expireAt && e.expireAt.getTime() <= deps.now().getTime())) throw new ConnectError(`event ${req.eventId} not found`, Code.NotFound);
      const t = await task(ctx, decodeURIComponent(e.stream.slice(prefix.length)));
      return toEvent(e, t);
    },

    /** Validates and positions the subscription, then returns the live batches. */
    async streamTaskEvents(req: StreamTaskEventsRequest, ctx: CallContext): Promise<AsyncIterable<TaskEvent[]>> {
      checkRequired(StreamTaskEventsRequestSchema, req, ["path"]);
      const t = await task(ctx, req.taskId);
      const after = seqFromPb(req.lastSequenceId, ["query", "last_sequence_id"]);
      return mapBatches(follow(deps, taskStream(t.project, t.id), after, ctx.signal), (e) => toEvent(e, t));
    },

    async listMessages(req: ListMessagesRequest, ctx: CallContext): Promise<ListMessagesResponse> {
      checkRequired(ListMessagesRequestSchema, req, ["path"]);
      const t = await task(ctx, req.taskId);
      const messages = await deps.tasks.listMessages(t.project, t.id);
      return create(ListMessagesResponseSchema, {
        messages: messages.map((m) =>
          create(TaskMessageSchema, {
            id: m.id,
            taskId: m.taskId,
            content: fromJson(MessageContentSchema, m.content as PbJson),
            streamingStatus: "DONE",
            createdAt: rfc3339(m.createdAt),
            updatedAt: rfc3339(m.createdAt),
          }),
        ),
      });
    },
  };
}

export type TerminalUseApi = ReturnType<typeof terminalUseApi>;
