import { createHash, randomUUID } from "node:crypto";
import { create, fromJson, type JsonValue as PbJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ContentSchema } from "../../gen/events/v1/events_pb.js";
import {
  AgentSchema,
  CancelTaskRequestSchema,
  CreateTaskRequestSchema,
  GetTaskByNameRequestSchema,
  GetUiMessageRequestSchema,
  GetUiMessageResponseSchema,
  ListTasksRequestSchema,
  ListTasksResponseSchema,
  ListUiMessagesRequestSchema,
  ListUiMessagesResponseSchema,
  StreamTaskPartsRequestSchema,
  TaskStreamPartsSchema,
  UiMessageSchema,
  UpdateTaskRequestSchema,
  type CancelTaskRequest,
  type GetTaskByNameRequest,
  type GetUiMessageRequest,
  type GetUiMessageResponse,
  type ListTasksRequest,
  type ListTasksResponse,
  type ListUiMessagesRequest,
  type ListUiMessagesResponse,
  type StreamTaskPartsRequest,
  type TaskStreamParts,
  type UiMessage,
  type UpdateTaskRequest,
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
import { LRUCache } from "lru-cache";
import { streamName, type JsonObject, type StoredEvent, type StreamId } from "../core/types.js";
import { namespaceOf, taskBytes, type TaskPage, type TaskRecord, type TaskStore } from "../store/tasks.js";
import { contentOf } from "./mapping.js";
import { streamPartsOf } from "./terminaluse-parts.js";
import { checkRequired, DEFAULT_PROJECT, follow, headWithin, invalid, invalidField, jsonToValue, mapBatches, pageLimit, rfc3339, seqFromPb, type ApiDeps, type CallContext } from "./common.js";
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

/** Bytes of task references one process keeps (about 40,000 tasks). */
export const TASK_CACHE_BYTES = 8 * 1024 * 1024;

/** What a task's events need of it; none of it ever changes (tasks are never deleted, nor moved). */
interface TaskRef {
  id: string;
  project: string;
  agentId: string;
}

/**
 * A message record (`persist_message: true`): derived from the task event it was sent with (same
 * id), so it lives and goes with that event (expiry, PurgeStream) and costs no write of its own.
 */
export interface MessageRecord {
  id: string;
  taskId: string;
  /** TerminalUse's message content: {type, author, content?, format?, data?}. */
  content: JsonObject;
  createdAt: Date;
}

/** The message record of a task event sent with persist_message (true by default); undefined for others. */
export function messageOf(e: StoredEvent, taskId: string): MessageRecord | undefined {
  const c = e.extra?.["content"];
  if (e.void || e.extra?.["persist_message"] !== true || c === null || typeof c !== "object" || Array.isArray(c)) return undefined;
  const content: JsonObject =
    c["type"] === "text" ? { type: "text", author: "user", content: c["text"] ?? "", format: "plain" } : { type: "data", author: "user", data: c["data"] ?? {} };
  return { id: e.id, taskId, content, createdAt: e.createdAt };
}

export interface TerminalUseDeps extends ApiDeps {
  tasks: TaskStore;
  /** Most bytes of message content in one page of GET /v2/messages (RESPONSE_BATCH_BYTES). */
  responseBytes?: number;
}

/** TerminalUse: tasks of agents, each task one stream of events; idempotent sends; message records. */
export function terminalUseApi(deps: TerminalUseDeps) {
  const project = (ctx: CallContext): string => ctx.project ?? DEFAULT_PROJECT;
  const taskStream = (p: string, id: string): StreamId => ({ project: p, kind: "task", key: id });
  const responseBytes = deps.responseBytes ?? 1024 * 1024;

  async function task(ctx: CallContext, id: string): Promise<TaskRecord> {
    const t = await deps.tasks.getTask(project(ctx), id);
    if (!t) throw new ConnectError(`Task ${id} not found`, Code.NotFound);
    refs.set(`${t.project}\n${t.id}`, { id: t.id, project: t.project, agentId: t.agentId });
    return t;
  }

  // Publishing and reading a task's events need only what never changes of it: cached, so a send
  // costs no task read after the task's first on this instance. Only found tasks are cached.
  const refs = new LRUCache<string, TaskRef>({ maxSize: TASK_CACHE_BYTES, sizeCalculation: (r) => 2 * (2 * r.id.length + 2 * r.project.length + r.agentId.length) + 150 });
  async function taskRef(ctx: CallContext, id: string): Promise<TaskRef> {
    return refs.get(`${project(ctx)}\n${id}`) ?? task(ctx, id);
  }

  /**
   * A page of the task's messages from sequence `from` on, in `direction` ("newer": after it,
   * oldest first; "older": before it, newest first): at most `limit`, and at most responseBytes of
   * content (a larger message comes alone). Reads the task's events page by page (each page
   * bounded by the log in bytes) and stops with the page. `next` (the last message's sequence)
   * continues it; undefined when none follow.
   */
  async function messagePage(t: TaskRef, from: number, limit: number, direction: "newer" | "older" = "newer"): Promise<{ messages: MessageRecord[]; next?: number }> {
    const messages: MessageRecord[] = [];
    const stream = taskStream(t.project, t.id);
    let bytes = 0;
    let last = from;
    for (let cursor = from; ; ) {
      // list() names where it stopped; listBefore() continues before the oldest event it gave.
      const page: { events: StoredEvent[]; hasMore: boolean; next?: number } =
        direction === "newer" ? await deps.log.list(stream, cursor, 1000) : await deps.log.listBefore(stream, cursor, 1000);
      for (const e of page.events) {
        const m = messageOf(e, t.id);
        if (!m) continue;
        const b = Buffer.byteLength(JSON.stringify(m.content));
        if (messages.length === limit || (messages.length > 0 && bytes + b > responseBytes)) return { messages, next: last };
        messages.push(m);
        bytes += b;
        last = e.seq;
      }
      const next = direction === "newer" ? page.next : page.events.at(-1)?.seq;
      if (!page.hasMore || next === undefined || next === cursor) return { messages };
      cursor = next;
    }
  }

  /** The sequence of the task's message `id` (a UI message cursor), or a 422 on `loc`. */
  async function messageSeq(t: TaskRef, id: string, loc: string[]): Promise<number> {
    const e = await deps.log.store.getEvent(id);
    if (!e || e.stream !== streamName(taskStream(t.project, t.id)) || !messageOf(e, t.id)) throw invalidField(loc, "Invalid cursor", "value_error", id);
    return e.seq;
  }

  /**
   * GET /tasks pages by page_number: page n starts at task (n - 1) * limit, and TerminalUse's
   * clients take a short page for the last one. So a page cut short by bytes would make them skip
   * tasks, and one that does not fit in responseBytes is refused instead (422 on `limit`, naming
   * the limit that fits); a single task larger than responseBytes still comes alone (limit=1).
   */
  function refuseOverfullPage(tasks: TaskRecord[], limit: number): void {
    const fit = headWithin(tasks, taskBytes, responseBytes).length;
    if (fit === tasks.length) return;
    throw invalidField(
      ["query", "limit"],
      `a page of ${limit} tasks here is more than RESPONSE_BATCH_BYTES=${responseBytes} bytes; ask for at most ${fit} tasks per page (limit=${fit}) and page from page_number=1`,
      "value_error",
      limit,
    );
  }

  /** A task named by id or by name (the newest of that name, of that agent when given). */
  async function taskOf(ctx: CallContext, id: string | undefined, name: string | undefined, agentId: string | undefined): Promise<TaskRecord> {
    if (id !== undefined) return task(ctx, id);
    if (name === undefined) throw invalid([{ loc: ["path", "task_id"], msg: "Field required", type: "missing" }]);
    const t = await deps.tasks.getTaskByName(project(ctx), name, agentId);
    if (!t) throw new ConnectError(`Task ${name} not found`, Code.NotFound);
    return t;
  }

  // TerminalUse's SDK models require filesystem_id on tasks and description on agents: tasks
  // created without a filesystem have "", agents known here only by name or id have "".
  function toTask(t: TaskRecord): Task {
    const namespace = namespaceOf(t.agentName) ?? t.project;
    return create(TaskSchema, {
      id: t.id,
      name: t.name,
      params: t.params,
      status: t.status,
      statusReason: t.statusReason,
      filesystemId: t.filesystemId ?? "",
      namespaceId: namespace,
      agents: [create(AgentSchema, { id: t.agentId, name: t.agentName, namespaceId: namespace, status: "ACTIVE", description: "", createdAt: rfc3339(t.createdAt), updatedAt: rfc3339(t.createdAt) })],
      createdAt: rfc3339(t.createdAt),
      updatedAt: rfc3339(t.updatedAt),
      taskMetadata: t.taskMetadata ?? {},
    });
  }

  function toUiMessage(m: MessageRecord): UiMessage {
    const c = m.content;
    const part = c["type"] === "text" ? { type: "text", text: typeof c["content"] === "string" ? c["content"] : "" } : { type: "data", data: jsonToValue(c["data"] ?? null) };
    return create(UiMessageSchema, { id: m.id, role: typeof c["author"] === "string" && c["author"] !== "user" ? "assistant" : "user", parts: [part], createdAt: rfc3339(m.createdAt) });
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

  /** The task's stream positioned after `after`, each stored event mapped to its stream parts. */
  function partsAfter(t: TaskRef, after: number, signal: AbortSignal): AsyncIterable<TaskStreamParts[]> {
    return mapBatches(follow(deps, taskStream(t.project, t.id), after, signal), (e) => create(TaskStreamPartsSchema, { sequenceId: BigInt(e.seq), eventId: e.id, parts: streamPartsOf(e) }));
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
      const t = await taskRef(ctx, req.taskId);
      const content = messageToJson(ContentSchema, req.content!) as JsonObject;
      const persist = req.persistMessage ?? true;
      const [stored] = await deps.log.publish(
        taskStream(t.project, t.id),
        [{ id: randomUUID(), eventType: String(content["type"]), data: content, extra: { content, persist_message: persist }, ...(key !== undefined ? { idempotencyKey: key } : {}) }],
        { source: "terminaluse" },
      );
      // The message record is the event itself (messageOf): a retry (same idempotency key) returns
      // the original event, with the original's persist_message, whatever the retry says.
      return toEvent(stored!, t);
    },

    async listEvents(req: ListTaskEventsRequest, ctx: CallContext): Promise<ListTaskEventsResponse> {
      checkRequired(ListTaskEventsRequestSchema, req, ["query"]);
      const t = await taskRef(ctx, req.taskId);
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
      const t = await taskRef(ctx, decodeURIComponent(e.stream.slice(prefix.length)));
      return toEvent(e, t);
    },

    /** Validates and positions the subscription, then returns the live batches. */
    async streamTaskEvents(req: StreamTaskEventsRequest, ctx: CallContext): Promise<AsyncIterable<TaskEvent[]>> {
      checkRequired(StreamTaskEventsRequestSchema, req, ["path"]);
      const t = await taskRef(ctx, req.taskId);
      const after = seqFromPb(req.lastSequenceId, ["query", "last_sequence_id"]);
      return mapBatches(follow(deps, taskStream(t.project, t.id), after, ctx.signal), (e) => toEvent(e, t));
    },

    async listMessages(req: ListMessagesRequest, ctx: CallContext): Promise<ListMessagesResponse> {
      checkRequired(ListMessagesRequestSchema, req, ["path"]);
      const limit = req.limit === undefined ? 1000 : pageLimit(req.limit, ["query", "limit"]);
      let after = 0;
      if (req.cursor !== undefined && req.cursor !== "") {
        if (!/^\d{1,15}$/.test(req.cursor)) throw invalidField(["query", "cursor"], "Invalid cursor (pass next_cursor of the previous page)", "value_error", req.cursor);
        after = Number(req.cursor);
      }
      const { messages, next } = await messagePage(await taskRef(ctx, req.taskId), after, limit);
      return create(ListMessagesResponseSchema, {
        hasMore: next !== undefined,
        ...(next !== undefined ? { nextCursor: String(next) } : {}),
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

    async listTasks(req: ListTasksRequest, ctx: CallContext): Promise<ListTasksResponse> {
      checkRequired(ListTasksRequestSchema, req, ["query"]);
      const limit = pageLimit(req.limit, ["query", "limit"]);
      const pageNumber = req.pageNumber ?? 1;
      if (pageNumber < 1) throw invalidField(["query", "page_number"], "Input should be greater than or equal to 1", "greater_than_equal", pageNumber);
      const orderBy = req.orderBy ?? "created_at";
      if (orderBy !== "created_at" && orderBy !== "updated_at" && orderBy !== "name") throw invalidField(["query", "order_by"], "Input should be 'created_at', 'updated_at' or 'name'", "literal_error", orderBy);
      const direction = (req.orderDirection ?? "desc").toLowerCase();
      if (direction !== "asc" && direction !== "desc") throw invalidField(["query", "order_direction"], "Input should be 'asc' or 'desc'", "literal_error", req.orderDirection);
      const date = (v: string | undefined, field: string): Date | undefined => {
        if (v === undefined) return undefined;
        const d = new Date(v);
        if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(d.getTime())) throw invalidField(["query", field], "Input should be a valid datetime", "datetime_from_date_parsing", v);
        return d;
      };
      const createdAfter = date(req.createdAfter, "created_after");
      const createdBefore = date(req.createdBefore, "created_before");
      // Branches are not served here: no task is on one.
      if (req.branchId !== undefined) return create(ListTasksResponseSchema, { tasks: [] });
      const page: TaskPage = { orderBy, direction, limit, offset: (pageNumber - 1) * limit, maxBytes: responseBytes };
      const tasks = await deps.tasks.listTasks(
        project(ctx),
        {
          ...(req.agentId !== undefined ? { agentId: req.agentId } : {}),
          ...(req.agentName !== undefined ? { agentName: req.agentName } : {}),
          ...(req.namespaceId !== undefined ? { namespace: req.namespaceId } : {}),
          ...(req.status.length > 0 ? { statuses: req.status } : {}),
          ...(createdAfter ? { createdAfter } : {}),
          ...(createdBefore ? { createdBefore } : {}),
        },
        page,
      );
      refuseOverfullPage(tasks, limit);
      return create(ListTasksResponseSchema, { tasks: tasks.map(toTask) });
    },

    async getTaskByName(req: GetTaskByNameRequest, ctx: CallContext): Promise<Task> {
      checkRequired(GetTaskByNameRequestSchema, req, ["path"]);
      return toTask(await taskOf(ctx, undefined, req.taskName, req.agentId));
    },

    /** IDLE or RUNNING tasks become CANCELED; cancelling a CANCELED task returns it unchanged. */
    async cancelTask(req: CancelTaskRequest, ctx: CallContext): Promise<Task> {
      checkRequired(CancelTaskRequestSchema, req, ["path"]);
      const t = await task(ctx, req.taskId);
      if (t.status === "CANCELED") return toTask(t);
      const done = await deps.tasks.updateTask(t.project, t.id, { status: "CANCELED", statusReason: "Canceled by request", updatedAt: deps.now(), fromStatuses: ["IDLE", "RUNNING"] });
      if (done) return toTask(done);
      const now = await task(ctx, req.taskId);
      if (now.status === "CANCELED") return toTask(now);
      throw new ConnectError(`Task ${t.id} is ${now.status} and cannot be canceled`, Code.FailedPrecondition);
    },

    async updateTask(req: UpdateTaskRequest, ctx: CallContext): Promise<Task> {
      checkRequired(UpdateTaskRequestSchema, req);
      const t = await taskOf(ctx, req.taskId, req.taskName, req.agentId);
      const updated = await deps.tasks.updateTask(t.project, t.id, { updatedAt: deps.now(), ...(req.taskMetadata !== undefined ? { taskMetadata: req.taskMetadata } : {}) });
      if (!updated) throw new ConnectError(`Task ${t.id} not found`, Code.NotFound);
      return toTask(updated);
    },

    /** Validates and positions the subscription, then returns the live batches of stream parts. */
    async streamTaskParts(req: StreamTaskPartsRequest, ctx: CallContext): Promise<AsyncIterable<TaskStreamParts[]>> {
      checkRequired(StreamTaskPartsRequestSchema, req, ["path"]);
      if (req.format !== undefined && req.format !== "parts" && req.format !== "events") throw invalidField(["query", "format"], "Input should be 'parts' or 'events'", "literal_error", req.format);
      const t = await taskOf(ctx, req.taskId, req.taskName, req.agentId);
      return partsAfter(t, seqFromPb(req.lastSequenceId, ["query", "last_sequence_id"]), ctx.signal);
    },

    /**
     * Message records as Vercel AI SDK UIMessages. "older" (the default) pages from the newest
     * message back in time, "newer" from the oldest forward; each page is in time order, and its
     * cursor is the id of the message the next page continues from.
     */
    async listUiMessages(req: ListUiMessagesRequest, ctx: CallContext): Promise<ListUiMessagesResponse> {
      checkRequired(ListUiMessagesRequestSchema, req, ["query"]);
      if (req.limit === 0) throw invalidField(["query", "limit"], "Input should be greater than or equal to 1", "greater_than_equal", 0);
      const limit = req.limit === undefined ? 50 : pageLimit(req.limit, ["query", "limit"]);
      const direction = req.direction ?? "older";
      if (direction !== "older" && direction !== "newer") throw invalidField(["query", "direction"], "Input should be 'older' or 'newer'", "literal_error", direction);
      const t = await taskRef(ctx, req.taskId);
      // Messages written here belong to no tool use.
      if (req.parentToolUseId !== undefined) return create(ListUiMessagesResponseSchema, { data: [], hasMore: false });
      // The cursor is the id of the message the page continues from (not included).
      const from = req.cursor !== undefined && req.cursor !== "" ? await messageSeq(t, req.cursor, ["query", "cursor"]) : direction === "older" ? Number.MAX_SAFE_INTEGER : 0;
      const { messages, next } = await messagePage(t, from, limit, direction);
      const last = messages[messages.length - 1];
      if (direction === "older") messages.reverse();
      return create(ListUiMessagesResponseSchema, { data: messages.map(toUiMessage), hasMore: next !== undefined, ...(next !== undefined && last ? { nextCursor: last.id } : {}) });
    },

    async getUiMessage(req: GetUiMessageRequest, ctx: CallContext): Promise<GetUiMessageResponse> {
      checkRequired(GetUiMessageRequestSchema, req, ["query"]);
      // One read of the message's event (its id), not of the task's messages.
      const t = await taskRef(ctx, req.taskId);
      const e = await deps.log.store.getEvent(req.messageId);
      const m = e && e.stream === streamName(taskStream(t.project, t.id)) && !(e.expireAt && e.expireAt.getTime() <= deps.now().getTime()) ? messageOf(e, t.id) : undefined;
      return create(GetUiMessageResponseSchema, m ? { message: toUiMessage(m) } : {});
    },
  };
}

export type TerminalUseApi = ReturnType<typeof terminalUseApi>;
