import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { messageFromJson, messageToJson, queryToJson, ValidationError } from "../../src/api/json.js";
import { PublishEventRequestSchema, PublishEventResponseSchema, ListEventsRequestSchema } from "../../gen/polos/v1/polos_pb.js";
import { StreamingEventRequestSchema } from "../../gen/kubiya/v1/kubiya_pb.js";
import { TaskEventSchema, SendTaskEventRequestSchema } from "../../gen/terminaluse/v1/terminaluse_pb.js";

function errorsOf(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    if (e instanceof ValidationError) return e.errors;
    throw e;
  }
  throw new Error("expected a ValidationError");
}

describe("documented JSON <-> messages", () => {
  it("reads a Polos publish body, int64 and Value included", () => {
    const msg = messageFromJson(PublishEventRequestSchema, {
      topic: "t",
      events: [{ data: { a: [1, "x", null] }, event_type: "k", attempt_number: 2, unknown_field: 1 }],
      execution_id: null,
    });
    expect(msg.topic).toBe("t");
    expect(msg.events[0]!.eventType).toBe("k");
    expect(msg.events[0]!.attemptNumber).toBe(2);
    expect(msg.executionId).toBeUndefined();
  });

  it("writes int64 as JSON numbers with OpenAPI names", () => {
    const json = messageToJson(PublishEventResponseSchema, create(PublishEventResponseSchema, { sequenceIds: [1n, 2n, 9007199254740991n], createdAt: "2026-01-01T00:00:00Z" }));
    expect(json).toEqual({ sequence_ids: [1, 2, 9007199254740991], created_at: "2026-01-01T00:00:00Z" });
  });

  it("reports every problem FastAPI-style, with locations", () => {
    const errs = errorsOf(() => messageFromJson(StreamingEventRequestSchema, { execution_id: "e", event_type: 5, data: "x" }));
    expect(errs).toEqual([
      { loc: ["body", "event_type"], msg: "Input should be a valid string", type: "string_type", input: 5 },
      { loc: ["body", "data"], msg: "Input should be a valid dictionary", type: "dict_type", input: "x" },
    ]);
    expect(errorsOf(() => messageFromJson(StreamingEventRequestSchema, [1]))[0]).toMatchObject({ loc: ["body"], type: "model_attributes_type" });
    expect(errorsOf(() => messageFromJson(PublishEventRequestSchema, { topic: "t", events: [{}] }))[0]).toMatchObject({ loc: ["body", "events", 0, "data"], type: "missing" });
    expect(errorsOf(() => messageFromJson(PublishEventRequestSchema, { topic: "t", events: [{ data: 1, attempt_number: 1.5 }] }))[0]).toMatchObject({ type: "int_from_float" });
    expect(errorsOf(() => messageFromJson(PublishEventRequestSchema, { topic: "t", events: [{ data: 1, attempt_number: 2 ** 40 }] }))[0]).toMatchObject({ type: "int_range" });
  });

  it("maps TextPart/DataPart as a discriminated union both ways", () => {
    const msg = messageFromJson(SendTaskEventRequestSchema, { task_id: "t", content: { type: "data", data: { k: 1 } } });
    expect(msg.content?.part.case).toBe("data");
    const out = messageToJson(TaskEventSchema, create(TaskEventSchema, { id: "i", sequenceId: 7n, content: { part: { case: "text", value: { text: "hi" } } } }));
    expect(out["content"]).toEqual({ type: "text", text: "hi" });
    expect(out["sequence_id"]).toBe(7);
    const errs = errorsOf(() => messageFromJson(SendTaskEventRequestSchema, { task_id: "t", content: { type: "tool_call" } }));
    expect(errs[0]).toMatchObject({ loc: ["body", "content"], type: "union_tag_invalid" });
  });

  it("parses query parameters by field type", () => {
    const q = queryToJson(ListEventsRequestSchema, new URLSearchParams("topic=t&last_sequence_id=5&limit=x"));
    expect(q).toEqual({ topic: "t", last_sequence_id: 5, limit: "x" });
    expect(errorsOf(() => messageFromJson(ListEventsRequestSchema, q, ["query"]))[0]).toMatchObject({ loc: ["query", "limit"], type: "int_type" });
  });
});
