import { create } from "@bufbuild/protobuf";
import {
  ExecutionEventSchema,
  PublishExecutionEventResponseSchema,
  StreamExecutionEventsRequestSchema,
  StreamExecutionEventsResponseSchema,
  StreamingEventRequestSchema,
  type PublishExecutionEventResponse,
  type StreamExecutionEventsRequest,
  type StreamExecutionEventsResponse,
  type StreamingEventRequest,
} from "../../gen/kubiya/v1/kubiya_pb.js";
import type { JsonObject, StreamId } from "../core/types.js";
import { executionBindings } from "../core/bindings.js";
import { asObject } from "./mapping.js";
import { checkRequired, DEFAULT_PROJECT, follow, mapBatches, rfc3339, seqFromPb, type ApiDeps, type CallContext } from "./common.js";

/** Events of an execution live this long after the execution's last event (Kubiya: "TTL: 1 hour"). */
export const EXECUTION_EVENT_TTL_MS = 60 * 60 * 1000;

/** Kubiya (`/api/v1/executions/{execution_id}/...`): one stream per execution, sliding one-hour expiry. */
export function kubiyaApi(deps: ApiDeps) {
  const bindings = executionBindings(deps.log.store);
  function execution(ctx: CallContext, id: string): StreamId {
    return { project: ctx.project ?? DEFAULT_PROJECT, kind: "execution", key: id };
  }

  return {
    async publishExecutionEvent(req: StreamingEventRequest, ctx: CallContext): Promise<PublishExecutionEventResponse> {
      checkRequired(StreamingEventRequestSchema, req);
      const stream = execution(ctx, req.executionId);
      // Cached once the store confirmed it: later publishes of the execution cost no command for it.
      await bindings.bind(req.executionId, stream.project);
      const now = deps.now();
      const expireAt = new Date(now.getTime() + EXECUTION_EVENT_TTL_MS);
      const extra: JsonObject = { execution_id: req.executionId, timestamp: req.timestamp ?? rfc3339(now) };
      // The execution's expiry slides on its stream record (one update, no rewrite of earlier events).
      await deps.log.publish(stream, [{ eventType: req.eventType, data: req.data ?? {}, extra }], { extendExpiryTo: expireAt, source: "kubiya" });
      return create(PublishExecutionEventResponseSchema, { success: true, executionId: req.executionId, eventType: req.eventType });
    },

    /** Validates and positions the subscription, then returns the live batches. */
    async streamExecutionEvents(req: StreamExecutionEventsRequest, ctx: CallContext): Promise<AsyncIterable<StreamExecutionEventsResponse[]>> {
      checkRequired(StreamExecutionEventsRequestSchema, req);
      const stream = execution(ctx, req.executionId);
      const after = seqFromPb(req.lastEventId, ["query", "last_event_id"]);
      return mapBatches(follow(deps, stream, after, ctx.signal), (e) =>
        create(StreamExecutionEventsResponseSchema, {
          sequence: BigInt(e.seq),
          event: create(ExecutionEventSchema, {
            eventType: e.eventType,
            data: asObject(e.data),
            timestamp: typeof e.extra?.["timestamp"] === "string" ? e.extra["timestamp"] : rfc3339(e.createdAt),
            executionId: req.executionId,
          }),
        }),
      );
    },
  };
}

export type KubiyaApi = ReturnType<typeof kubiyaApi>;
