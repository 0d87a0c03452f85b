import {
  CreateWaitGroupInstanceRequestSchema,
  CreateWaitGroupInstanceResponseSchema,
  EventRefSchema,
  ListSubscriptionsRequestSchema,
  ListSubscriptionsResponseSchema,
  SubscriptionInfoSchema,
  ListSubscriptionEventsRequestSchema,
  ListSubscriptionEventsResponseSchema,
  PutSubscriptionRequestSchema,
  PutSubscriptionResponseSchema,
  SendEventRequestSchema,
  SendEventResponseSchema,
  StartWaitGroupInstanceRequestSchema,
  SubscriptionEventSchema,
  SubscriptionRefSchema,
} from "../../../gen/sailhouse/v1/sailhouse_pb.js";
import { parseRequest } from "../../api/common.js";
import { messageToJson } from "../../api/json.js";
import { MAX_EVENT_BYTES, type SailhouseApi } from "../../api/sailhouse.js";
import { fromQuery, json, withParams, type Route } from "../gateway.js";

const SUB = "/topics/{topic_slug}/subscriptions/{subscription_slug}";

/** Sailhouse's paths. Errors are `{"error": ...}` with 400/404/413; sends answer 201 (Sailhouse's SDKs accept only 201). */
export function sailhouseRoutes(sailhouse: SailhouseApi): Route[] {
  const putSubscription: Route["handle"] = async (r) => json(PutSubscriptionResponseSchema, await sailhouse.putSubscription(parseRequest(PutSubscriptionRequestSchema, withParams(r, r.body ?? {})), r.ctx));
  const putDoc = { summary: "Create or update a subscription (Sailhouse)", body: PutSubscriptionRequestSchema, responses: [{ status: 200, description: "Outcome (and the push secret)", schema: PutSubscriptionResponseSchema }] };
  const pull: Route["handle"] = async (r) => {
    const res = await sailhouse.pullEvent(parseRequest(SubscriptionRefSchema, r.params, ["path"]), r.ctx);
    return res.found && res.event ? { status: 200, json: messageToJson(SubscriptionEventSchema, res.event) } : { status: 204 };
  };
  const pullDoc = { summary: "Pull one event, locked for 30 s (Sailhouse)", responses: [{ status: 200, description: "An event", schema: SubscriptionEventSchema }, { status: 204, description: "Nothing due" }] };
  return [
    {
      method: "POST",
      path: "/topics/{topic_slug}/events",
      dialect: "error",
      doc: { summary: "Send an event (Sailhouse)", body: SendEventRequestSchema, responses: [{ status: 201, description: "Accepted (stored, or scheduled for send_at)", schema: SendEventResponseSchema }] },
      maxBodyBytes: MAX_EVENT_BYTES,
      async handle(r) {
        return json(SendEventResponseSchema, await sailhouse.sendEvent(parseRequest(SendEventRequestSchema, withParams(r)), r.ctx), 201);
      },
    },
    { method: "PUT", path: SUB, dialect: "error", handle: putSubscription, doc: putDoc },
    {
      method: "GET",
      path: "/topics/{topic_slug}/subscriptions",
      dialect: "error",
      doc: { summary: "List a topic's subscriptions, with each push endpoint's status", responses: [{ status: 200, description: "The subscriptions", schema: ListSubscriptionsResponseSchema }] },
      async handle(r) {
        return json(ListSubscriptionsResponseSchema, await sailhouse.listSubscriptions(fromQuery(ListSubscriptionsRequestSchema, r, r.params), r.ctx));
      },
    },
    {
      method: "GET",
      path: SUB,
      dialect: "error",
      doc: { summary: "A subscription, with its push endpoint's status", responses: [{ status: 200, description: "The subscription", schema: SubscriptionInfoSchema }] },
      async handle(r) {
        return json(SubscriptionInfoSchema, await sailhouse.getSubscription(parseRequest(SubscriptionRefSchema, r.params, ["path"]), r.ctx));
      },
    },
    {
      method: "DELETE",
      path: SUB,
      dialect: "error",
      doc: { summary: "Delete a subscription and its undelivered events", responses: [{ status: 204, description: "Deleted" }] },
      async handle(r) {
        await sailhouse.deleteSubscription(parseRequest(SubscriptionRefSchema, r.params, ["path"]), r.ctx);
        return { status: 204 };
      },
    },
    // The SDK's admin client registers subscriptions under /api/v1.
    { method: "PUT", path: `/api/v1${SUB}`, dialect: "error", handle: putSubscription, doc: putDoc },
    // Pull: Sailhouse's JS and Go SDKs send GET, its Python SDK sends POST; both pull. These
    // routes come before the ack route (`POST …/events/{event_id}`), which would otherwise take
    // the word `pull` for an event id: the first matching route wins.
    { method: "GET", path: `${SUB}/events/pull`, dialect: "error", handle: pull, doc: pullDoc },
    { method: "POST", path: `${SUB}/events/pull`, dialect: "error", handle: pull, doc: pullDoc },
    {
      method: "GET",
      path: `${SUB}/events`,
      dialect: "error",
      doc: { summary: "List a subscription's events (Sailhouse)", query: ListSubscriptionEventsRequestSchema, responses: [{ status: 200, description: "A page", schema: ListSubscriptionEventsResponseSchema }] },
      async handle(r) {
        return json(ListSubscriptionEventsResponseSchema, await sailhouse.listSubscriptionEvents(fromQuery(ListSubscriptionEventsRequestSchema, r, r.params), r.ctx));
      },
    },
    {
      method: "POST",
      path: `${SUB}/events/{event_id}`,
      dialect: "error",
      doc: { summary: "Acknowledge an event (Sailhouse)", responses: [{ status: 204, description: "Acknowledged" }] },
      async handle(r) {
        await sailhouse.ackEvent(parseRequest(EventRefSchema, r.params, ["path"]), r.ctx);
        return { status: 204 };
      },
    },
    {
      method: "POST",
      path: `${SUB}/events/{event_id}/nack`,
      dialect: "error",
      doc: { summary: "Return an event to the queue (Sailhouse)", responses: [{ status: 204, description: "Due again" }] },
      async handle(r) {
        await sailhouse.nackEvent(parseRequest(EventRefSchema, r.params, ["path"]), r.ctx);
        return { status: 204 };
      },
    },
    {
      method: "POST",
      path: "/waitgroups/instances",
      dialect: "error",
      doc: { summary: "Create a wait group instance (Sailhouse)", body: CreateWaitGroupInstanceRequestSchema, responses: [{ status: 200, description: "Created", schema: CreateWaitGroupInstanceResponseSchema }] },
      async handle(r) {
        return json(CreateWaitGroupInstanceResponseSchema, await sailhouse.createWaitGroupInstance(parseRequest(CreateWaitGroupInstanceRequestSchema, r.body), r.ctx));
      },
    },
    {
      method: "PUT",
      path: "/waitgroups/instances/{wait_group_instance_id}/events",
      dialect: "error",
      doc: { summary: "Mark a wait group instance in progress (Sailhouse)", responses: [{ status: 200, description: "In progress", empty: true }] },
      async handle(r) {
        await sailhouse.startWaitGroupInstance(parseRequest(StartWaitGroupInstanceRequestSchema, r.params, ["path"]), r.ctx);
        return { status: 200, json: {} };
      },
    },
  ];
}
