import { EventResponseSchema, ListEventsRequestSchema, ListEventsResponseSchema, PublishEventRequestSchema, PublishEventResponseSchema, StreamEventsRequestSchema } from "../../../gen/polos/v1/polos_pb.js";
import { mapBatches, parseRequest } from "../../api/common.js";
import { messageToJson } from "../../api/json.js";
import type { PolosApi } from "../../api/polos.js";
import { fromQuery, json, lastEventId, type Route } from "../gateway.js";

/** Polos's paths (`/api/v1/events/...`). */
export function polosRoutes(polos: PolosApi): Route[] {
  return [
    {
      method: "POST",
      path: "/api/v1/events/publish",
      dialect: "error",
      doc: { summary: "Publish events to a topic (Polos)", body: PublishEventRequestSchema, responses: [{ status: 200, description: "Stored", schema: PublishEventResponseSchema }] },
      async handle(r) {
        const req = parseRequest(PublishEventRequestSchema, r.body);
        return json(PublishEventResponseSchema, await polos.publishEvents(req, r.ctx));
      },
    },
    {
      method: "GET",
      path: "/api/v1/events",
      dialect: "error",
      doc: { summary: "List a topic's events (Polos)", query: ListEventsRequestSchema, responses: [{ status: 200, description: "A page of events", schema: ListEventsResponseSchema }] },
      async handle(r) {
        return json(ListEventsResponseSchema, await polos.listEvents(fromQuery(ListEventsRequestSchema, r), r.ctx));
      },
    },
    {
      method: "GET",
      path: "/api/v1/events/stream",
      dialect: "error",
      doc: { summary: "Stream a topic's events over SSE (Polos)", query: StreamEventsRequestSchema, responses: [{ status: 200, description: "SSE: id = sequence, data = the event", schema: EventResponseSchema, sse: true }] },
      async handle(r) {
        const resume = lastEventId(r);
        const extra = resume !== undefined && !r.query.has("last_sequence_id") ? { last_sequence_id: resume } : {};
        const source = await polos.streamEvents(fromQuery(StreamEventsRequestSchema, r, extra), r.ctx);
        return {
          sse: mapBatches(source, (e) => ({ id: String(e.sequenceId), data: JSON.stringify(messageToJson(EventResponseSchema, e)) })),
          keepalive: "data: keepalive\n\n",
        };
      },
    },
  ];
}
