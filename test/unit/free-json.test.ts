import { describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ListValueSchema, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { freeJsonProblem, jsonDepth, jsonTextWithin, quoteInput, rawJson, rawValue, truncateUtf8, valueToJson, FreeJsonError, MAX_JSON_DEPTH } from "../../src/api/free-json.js";
import { boundedErrors, messageFromJson, messageToJson } from "../../src/api/json.js";
import { EventResponseSchema, PublishEventRequestSchema } from "../../gen/polos/v1/polos_pb.js";

const nest = (n: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};

describe("free-form JSON", () => {
  it("checks depth, numbers and Unicode iteratively, at any depth", () => {
    expect(freeJsonProblem(nest(MAX_JSON_DEPTH))).toBeUndefined();
    expect(freeJsonProblem(nest(MAX_JSON_DEPTH + 1))).toMatch(/deeper than 30/);
    expect(freeJsonProblem(JSON.parse("[".repeat(200_000) + "]".repeat(200_000)))).toMatch(/deeper/);
    expect(freeJsonProblem({ a: [1, Infinity] })).toMatch(/finite/);
    expect(freeJsonProblem({ a: "\ud800" })).toMatch(/Unicode/);
    expect(freeJsonProblem({ ["\udc00"]: 1 })).toMatch(/Unicode/);
    expect(freeJsonProblem({ "😀": "é" })).toBeUndefined();
  });

  it("quotes inputs within the byte bound, whatever their size or depth", () => {
    expect(quoteInput({ a: 1 }, 256)).toEqual({ a: 1 });
    const deep = JSON.parse("[".repeat(100_000) + "]".repeat(100_000));
    const q = quoteInput(deep, 256) as string;
    expect(typeof q).toBe("string");
    expect(Buffer.byteLength(q)).toBeLessThanOrEqual(256 + 3);
    expect(q.startsWith("[[[[")).toBe(true);
    const long = quoteInput("é".repeat(10_000), 100) as string;
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(103);
    expect(long.endsWith("…")).toBe(true);
    expect(jsonTextWithin({ a: [1, "x", null, { b: true }] }, 100)).toBe('{"a":[1,"x",null,{"b":true}]}');
    expect(jsonTextWithin({ a: "x".repeat(200) }, 100)).toBeUndefined();
    expect(truncateUtf8("a😀", 3)).toBe("a");
    const errs = boundedErrors(Array.from({ length: 80 }, (_, i) => ({ loc: ["body", i], msg: "m", type: "t", input: "y".repeat(10_000) })), 64);
    expect(errs).toHaveLength(51);
    expect(JSON.stringify(errs).length).toBeLessThan(51 * 200);
  });

  it("converts Values without recursion, keeps __proto__ keys and key order", () => {
    let v: Value = create(ValueSchema, { kind: { case: "numberValue", value: 1 } });
    for (let i = 0; i < 50_000; i++) v = create(ValueSchema, { kind: { case: "listValue", value: create(ListValueSchema, { values: [v] }) } });
    expect(() => valueToJson(v)).toThrow(FreeJsonError);
    expect(jsonDepth(valueToJson(v, Infinity))).toBe(50_000);
    const json = JSON.parse('{"z":1,"__proto__":{"a":[1,{"__proto__":2}]},"b":null}');
    const raw = rawValue(json);
    expect(rawJson(raw)).toBe(json);
    // Binary encoding builds the tree (lazily) and keeps the key (protobuf-es's decoder drops it
    // again, so the bytes are checked); the built tree converts back exactly.
    const bytes = toBinary(ValueSchema, raw);
    expect(Buffer.from(bytes).includes(Buffer.from("__proto__"))).toBe(true);
    expect(fromBinary(ValueSchema, bytes).kind.case).toBe("structValue");
    const tree = create(ValueSchema, { kind: raw.kind });
    expect(rawJson(tree)).toBeUndefined();
    expect(JSON.stringify(valueToJson(tree))).toBe(JSON.stringify(json));
  });

  it("keeps JSON bodies as sent through messageFromJson / messageToJson", () => {
    const data = JSON.parse('{"__proto__":{"x":1},"$k":[-0,5e-324]}');
    const msg = messageFromJson(PublishEventRequestSchema, { topic: "t", events: [{ data }] });
    expect(rawJson(msg.events[0]!.data!)).toBe(data);
    const out = messageToJson(EventResponseSchema, create(EventResponseSchema, { id: "i", sequenceId: 1n, data: rawValue(data) }));
    expect(JSON.stringify(out["data"])).toBe(JSON.stringify(data));
  });
});
