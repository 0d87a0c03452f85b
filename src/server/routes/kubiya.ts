import { ExecutionEventSchema, PublishExecutionEventResponseSchema, StreamExecutionEventsRequestSchema, StreamingEventRequestSchema } from "../../../gen/kubiya/v1/kubiya_pb.js";
import { mapBatches, parseRequest } from "../../api/common.js";
import { messageToJson } from "../../api/json.js";
import type { KubiyaApi } from "../../api/kubiya.js";
import { fromQuery, json, lastEventId, withParams, type Route } from "../gateway.js";

/** Kubiya's paths (`/api/v1/executions/{execution_id}/...`). */
export function kubiyaRoutes(kubiya: KubiyaApi): Route[] {
  const stream: Route["handle"] = async (r) => {
    const resume = lastEventId(r);
    const executionId = r.params["execution_id"]!;
    const extra: Record<string, unknown> = { execution_id: executionId };
    if (resume !== undefined) extra["last_event_id"] = resume;
    const source = await kubiya.streamExecutionEvents(fromQuery(StreamExecutionEventsRequestSchema, r, extra), r.ctx);
    return {
      hello: { event: "connected", data: JSON.stringify({ execution_id: executionId, status: "connected" }) },
      sse: mapBatches(source, (e) => ({ event: e.event?.eventType ?? "", id: String(e.sequence), data: JSON.stringify(e.event ? messageToJson(ExecutionEventSchema, e.event) : {}) })),
      keepalive: ": keepalive\n\n",
    };
  };
  const streamDoc = { summary: "Stream an execution's events over SSE (Kubiya)", query: StreamExecutionEventsRequestSchema, responses: [{ status: 200, description: "SSE: event = event_type, id = sequence", schema: ExecutionEventSchema, sse: true }] };
  return [
    {
      method: "POST",
      path: "/api/v1/executions/{execution_id}/events",
      dialect: "fastapi",
      doc: { summary: "Publish an execution event (Kubiya)", body: StreamingEventRequestSchema, responses: [{ status: 202, description: "Stored", schema: PublishExecutionEventResponseSchema }] },
      async handle(r) {
        const req = parseRequest(StreamingEventRequestSchema, withParams(r));
        return json(PublishExecutionEventResponseSchema, await kubiya.publishExecutionEvent(req, r.ctx), 202);
      },
    },
    { method: "GET", path: "/api/v1/executions/{execution_id}/stream", dialect: "fastapi", handle: stream, doc: streamDoc },
    // An earlier Kubiya CLI (StreamExecutionOutput) reads the same SSE stream with GET on the events path.
    { method: "GET", path: "/api/v1/executions/{execution_id}/events", dialect: "fastapi", handle: stream, doc: streamDoc },
  ];
}
