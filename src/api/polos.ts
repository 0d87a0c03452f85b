import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  EventResponseSchema,
  ListEventsRequestSchema,
  ListEventsResponseSchema,
  PublishEventRequestSchema,
  PublishEventResponseSchema,
  StreamEventsRequestSchema,
  type EventResponse,
  type ListEventsRequest,
  type ListEventsResponse,
  type PublishEventRequest,
  type PublishEventResponse,
  type StreamEventsRequest,
} from "../../gen/polos/v1/polos_pb.js";
import type { EventDraft, JsonObject, StoredEvent, StreamId } from "../core/types.js";
import { executionBindings } from "../core/bindings.js";
import { checkRequired, follow, mapBatches, invalidField, jsonToValue, pageLimit, rfc3339, seqFromPb, valueToJson, type ApiDeps, type CallContext } from "./common.js";

/** Polos (`/api/v1/events/...`): topics inside a project; batches are stored atomically. */
export function polosApi(deps: ApiDeps) {
  const bindings = executionBindings(deps.log.store);
  function topic(project: string, name: string): StreamId {
    return { project, kind: "topic", key: name };
  }

  /** Reads need a project: the header, or `?project_id=` on the JSON paths. */
  function readProject(ctx: CallContext): string {
    if (!ctx.project) throw new ConnectError("X-Project-ID header (or project_id query parameter) is required", Code.InvalidArgument);
    return ctx.project;
  }

  /** Publishing: the header, else the project of `execution_id`, else of `events[0].execution_id`. */
  async function publishProject(ctx: CallContext, req: PublishEventRequest): Promise<string> {
    const executionId = req.executionId ?? req.events[0]?.executionId;
    if (ctx.project) {
      if (executionId) await bindings.bind(executionId, ctx.project);
      return ctx.project;
    }
    if (!executionId) throw new ConnectError("X-Project-ID header is required when execution_id is not given", Code.InvalidArgument);
    const project = await bindings.projectOf(executionId);
    if (!project) throw new ConnectError(`unknown execution_id ${JSON.stringify(executionId)}: send X-Project-ID`, Code.InvalidArgument);
    return project;
  }

  /**
   * The topic a read names: `topic`, or a workflow run's topic `workflow/{workflow_id}/{workflow_run_id}`
   * (what Polos's `stream_workflow` sends; its workers and `resume()` publish there).
   */
  function readTopic(req: { topic: string; workflowId?: string; workflowRunId?: string }): string {
    if (req.workflowRunId !== undefined) {
      if (req.workflowId === undefined) throw invalidField(["query", "workflow_id"], "workflow_id must be provided when workflow_run_id is provided", "missing");
      return `workflow/${req.workflowId}/${req.workflowRunId}`;
    }
    if (req.topic === "") throw invalidField(["query", "topic"], "Field required: topic (or workflow_id and workflow_run_id)", "missing");
    return req.topic;
  }

  async function cursor(stream: StreamId, lastSequenceId: bigint | undefined, lastTimestamp: string | undefined): Promise<number> {
    if (lastSequenceId !== undefined) return seqFromPb(lastSequenceId, ["query", "last_sequence_id"]);
    if (lastTimestamp !== undefined) {
      const at = Date.parse(lastTimestamp);
      if (Number.isNaN(at)) throw invalidField(["query", "last_timestamp"], "must be an RFC 3339 timestamp", "value_error", lastTimestamp);
      return deps.log.store.cursorAt(stream, new Date(at));
    }
    return 0;
  }

  function toEventResponse(e: StoredEvent, topicName: string): EventResponse {
    return create(EventResponseSchema, {
      id: e.id,
      sequenceId: BigInt(e.seq),
      topic: topicName,
      eventType: e.eventType,
      data: jsonToValue(e.data),
      createdAt: rfc3339(e.createdAt),
    });
  }

  return {
    async publishEvents(req: PublishEventRequest, ctx: CallContext): Promise<PublishEventResponse> {
      checkRequired(PublishEventRequestSchema, req);
      const project = await publishProject(ctx, req);
      const drafts = req.events.map((ev, i): EventDraft => {
        if (!ev.data) throw invalidField(["body", "events", i, "data"], "Field required", "missing");
        const extra: JsonObject = {};
        const executionId = ev.executionId ?? req.executionId;
        if (executionId !== undefined) extra["execution_id"] = executionId;
        if (req.rootExecutionId !== undefined) extra["root_execution_id"] = req.rootExecutionId;
        if (ev.attemptNumber !== undefined) extra["attempt_number"] = ev.attemptNumber;
        return { eventType: ev.eventType ?? "", data: valueToJson(ev.data, ["body", "events", i, "data"]), extra };
      });
      const stored = await deps.log.publish(topic(project, req.topic), drafts, { source: "polos" });
      return create(PublishEventResponseSchema, {
        sequenceIds: stored.map((e) => BigInt(e.seq)),
        createdAt: rfc3339(stored[0]?.createdAt ?? deps.now()),
      });
    },

    async listEvents(req: ListEventsRequest, ctx: CallContext): Promise<ListEventsResponse> {
      checkRequired(ListEventsRequestSchema, req);
      const name = readTopic(req);
      const stream = topic(readProject(ctx), name);
      const limit = pageLimit(req.limit, ["query", "limit"]);
      const sort = req.sort ?? "asc";
      if (sort !== "asc" && sort !== "desc") throw invalidField(["query", "sort"], "Input should be 'asc' or 'desc'", "literal_error", sort);
      if (sort === "desc") {
        // Newest first: the cursor is exclusive from above (events before last_sequence_id).
        const before = req.lastSequenceId !== undefined ? seqFromPb(req.lastSequenceId, ["query", "last_sequence_id"]) : Number.MAX_SAFE_INTEGER;
        const page = await deps.log.listBefore(stream, before, limit);
        return create(ListEventsResponseSchema, {
          events: page.events.map((e) => toEventResponse(e, name)),
          nextSequenceId: BigInt(page.events[page.events.length - 1]?.seq ?? 0),
          hasMore: page.hasMore,
        });
      }
      const after = await cursor(stream, req.lastSequenceId, req.lastTimestamp);
      const page = await deps.log.list(stream, after, limit);
      return create(ListEventsResponseSchema, {
        events: page.events.map((e) => toEventResponse(e, name)),
        nextSequenceId: BigInt(page.next),
        hasMore: page.hasMore,
      });
    },

    /** Validates and positions the subscription, then returns the live batches. */
    async streamEvents(req: StreamEventsRequest, ctx: CallContext): Promise<AsyncIterable<EventResponse[]>> {
      checkRequired(StreamEventsRequestSchema, req);
      const name = readTopic(req);
      const stream = topic(readProject(ctx), name);
      const after = await cursor(stream, req.lastSequenceId, req.lastTimestamp);
      return mapBatches(follow(deps, stream, after, ctx.signal), (e) => toEventResponse(e, name));
    },
  };
}

export type PolosApi = ReturnType<typeof polosApi>;
