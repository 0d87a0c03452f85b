/**
 * The documented JSON paths speak each platform's OpenAPI shapes, not raw proto JSON. This module
 * maps between the two from the message descriptors, so no dialect hand-writes a serializer:
 *
 * - names are the proto field names, which mirror the OpenAPI (snake_case, or camelCase where the
 *   platform uses it);
 * - int64 values are JSON numbers (proto JSON would write strings);
 * - a message that is a single oneof of messages (events.v1.Content) is a discriminated union:
 *   the chosen member's object plus `"type": "<member name>"`;
 * - `null` means absent; fields marked `(events.v1.required)` must be present.
 *
 * Validation errors come out as FastAPI/pydantic `{loc, msg, type, input}` items, which the
 * FastAPI dialects return as is and the others turn into a message.
 */
import { fromJson, getOption, toJson, type DescField, type DescMessage, type JsonValue as PbJson, type MessageShape } from "@bufbuild/protobuf";
import { identifier, max_length, min_length, required } from "../../gen/events/v1/options_pb.js";

export interface FieldError {
  loc: (string | number)[];
  msg: string;
  type: string;
  input?: unknown;
  /** pydantic's error context, e.g. {max_length: 256}. */
  ctx?: Record<string, unknown>;
}

export class ValidationError extends Error {
  constructor(readonly errors: FieldError[]) {
    super(errors.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("; "));
    this.name = "ValidationError";
  }
}

const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };
/** Free-form JSON (data, metadata) may nest this deep at most. */
export const MAX_JSON_DEPTH = 64;

/** Why a free-form JSON value cannot be kept: too deep, or a number JSON cannot represent. */
function freeJsonProblem(value: unknown): string | undefined {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v === "number" && !Number.isFinite(v)) return "numbers must be finite";
    if (v === null || typeof v !== "object") continue;
    if (depth > MAX_JSON_DEPTH) return `nested deeper than ${MAX_JSON_DEPTH} levels`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return undefined;
}
const INT64_SAFE = { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isUnion(schema: DescMessage): boolean {
  return schema.oneofs.length === 1 && schema.fields.length > 0 && schema.fields.every((f) => f.oneof !== undefined && f.message !== undefined);
}

function wktKind(schema: DescMessage): "value" | "struct" | "timestamp" | undefined {
  switch (schema.typeName) {
    case "google.protobuf.Value":
      return "value";
    case "google.protobuf.Struct":
      return "struct";
    case "google.protobuf.Timestamp":
      return "timestamp";
    default:
      return undefined;
  }
}

/**
 * Checks `input` against the message and returns it in proto JSON form (ready for fromJson).
 * Unknown fields are ignored, as FastAPI and Go's encoding/json do.
 */
function checkMessage(schema: DescMessage, input: unknown, loc: (string | number)[], errors: FieldError[]): Record<string, PbJson> | undefined {
  if (!isObject(input)) {
    errors.push({ loc, msg: "Input should be a valid dictionary or object to extract fields from", type: "model_attributes_type", input });
    return undefined;
  }
  if (isUnion(schema)) return checkUnion(schema, input, loc, errors);
  const out: Record<string, PbJson> = {};
  for (const field of schema.fields) {
    const value = input[field.name];
    // null means "absent", except where the field holds any JSON value (google.protobuf.Value).
    const isAnyValue = field.fieldKind === "message" && wktKind(field.message) === "value";
    if (value === undefined || (value === null && !isAnyValue)) {
      if (fieldRules(field).required) errors.push({ loc: [...loc, field.name], msg: "Field required", type: "missing", input });
      continue;
    }
    const v = checkField(field, value, [...loc, field.name], errors);
    if (v !== undefined) out[field.jsonName] = v;
  }
  return out;
}

function checkUnion(schema: DescMessage, input: Record<string, unknown>, loc: (string | number)[], errors: FieldError[]): Record<string, PbJson> | undefined {
  const tags = schema.fields.map((f) => f.name);
  const tag = input["type"];
  if (typeof tag !== "string") {
    errors.push({ loc, msg: "Unable to extract tag using discriminator 'type'", type: "union_tag_not_found", input });
    return undefined;
  }
  const member = schema.fields.find((f) => f.name === tag);
  if (!member?.message) {
    errors.push({
      loc,
      msg: `Input tag '${tag}' found using 'type' does not match any of the expected tags: ${tags.map((t) => `'${t}'`).join(", ")}`,
      type: "union_tag_invalid",
      input,
    });
    return undefined;
  }
  const { type: _type, ...rest } = input;
  const inner = checkMessage(member.message, rest, [...loc, tag], errors);
  return inner === undefined ? undefined : { [member.jsonName]: inner };
}

/** A field's rules from events/v1/options.proto. */
export interface FieldRules {
  required: boolean;
  identifier: boolean;
  minLength: number;
  maxLength: number;
}

const rulesCache = new WeakMap<DescField, FieldRules>();

/**
 * The field's rules, read from its options once (getOption decodes the options on every call,
 * which showed up at ~17 % of server CPU on the publish path).
 */
export function fieldRules(field: DescField): FieldRules {
  let r = rulesCache.get(field);
  if (!r) {
    r = { required: getOption(field, required), identifier: getOption(field, identifier), minLength: getOption(field, min_length), maxLength: getOption(field, max_length) };
    rulesCache.set(field, r);
  }
  return r;
}

/** pydantic's string_too_short / string_too_long for a string field with `(events.v1.min_length)` / `(events.v1.max_length)`. */
export function lengthError(field: DescField, value: string, loc: (string | number)[]): FieldError | undefined {
  const { minLength: min, maxLength: max } = fieldRules(field);
  if (min === 0 && max === 0) return undefined;
  const chars = [...value].length; // code points, as pydantic counts
  if (min > 0 && chars < min) return { loc, msg: `String should have at least ${min} character${min === 1 ? "" : "s"}`, type: "string_too_short", input: value, ctx: { min_length: min } };
  if (max > 0 && chars > max) return { loc, msg: `String should have at most ${max} character${max === 1 ? "" : "s"}`, type: "string_too_long", input: value, ctx: { max_length: max } };
  return undefined;
}

function checkField(field: DescField, value: unknown, loc: (string | number)[], errors: FieldError[]): PbJson | undefined {
  switch (field.fieldKind) {
    case "scalar": {
      const v = checkScalar(field.scalar, value, loc, errors);
      const tooLong = typeof v === "string" ? lengthError(field, v, loc) : undefined;
      if (tooLong) errors.push(tooLong);
      return tooLong ? undefined : v;
    }
    case "enum":
      if (typeof value === "string" || typeof value === "number") return value;
      errors.push({ loc, msg: "Input should be a valid enumeration member", type: "enum", input: value });
      return undefined;
    case "message":
      return checkMessageValue(field.message, value, loc, errors);
    case "list": {
      if (!Array.isArray(value)) {
        errors.push({ loc, msg: "Input should be a valid list", type: "list_type", input: value });
        return undefined;
      }
      const out: PbJson[] = [];
      value.forEach((item, i) => {
        const v =
          field.listKind === "message"
            ? checkMessageValue(field.message, item, [...loc, i], errors)
            : field.listKind === "scalar"
              ? checkScalar(field.scalar, item, [...loc, i], errors)
              : (item as PbJson);
        if (v !== undefined) out.push(v);
      });
      return out;
    }
    case "map":
      if (!isObject(value)) {
        errors.push({ loc, msg: "Input should be a valid dictionary", type: "dict_type", input: value });
        return undefined;
      }
      return value as PbJson;
  }
}

function checkMessageValue(schema: DescMessage, value: unknown, loc: (string | number)[], errors: FieldError[]): PbJson | undefined {
  const kind = wktKind(schema);
  if (kind === "value" || kind === "struct") {
    const problem = freeJsonProblem(value);
    if (problem) {
      errors.push({ loc, msg: `Input is not storable JSON: ${problem}`, type: "value_error" });
      return undefined;
    }
  }
  switch (kind) {
    case "value":
      return value as PbJson;
    case "struct":
      if (!isObject(value)) {
        errors.push({ loc, msg: "Input should be a valid dictionary", type: "dict_type", input: value });
        return undefined;
      }
      return value as PbJson;
    case "timestamp":
      if (typeof value !== "string" || Number.isNaN(Date.parse(value))) {
        errors.push({ loc, msg: "Input should be a valid datetime", type: "datetime_type", input: value });
        return undefined;
      }
      return value;
    default:
      return checkMessage(schema, value, loc, errors);
  }
}

// ScalarType numbers from descriptor.proto: 1 double, 2 float, 3 int64, 4 uint64, 5 int32, 6 fixed64,
// 7 fixed32, 8 bool, 9 string, 12 bytes, 13 uint32, 15 sfixed32, 16 sfixed64, 17 sint32, 18 sint64.
function checkScalar(scalar: number, value: unknown, loc: (string | number)[], errors: FieldError[]): PbJson | undefined {
  switch (scalar) {
    case 9:
      if (typeof value === "string") return value;
      errors.push({ loc, msg: "Input should be a valid string", type: "string_type", input: value });
      return undefined;
    case 8:
      if (typeof value === "boolean") return value;
      errors.push({ loc, msg: "Input should be a valid boolean", type: "bool_type", input: value });
      return undefined;
    case 1:
    case 2:
      if (typeof value === "number" && Number.isFinite(value)) return value;
      errors.push({ loc, msg: "Input should be a valid number", type: "float_type", input: value });
      return undefined;
    case 12:
      if (typeof value === "string") return value;
      errors.push({ loc, msg: "Input should be a valid string", type: "string_type", input: value });
      return undefined;
    default: {
      const range = scalar === 5 || scalar === 15 || scalar === 17 ? INT32 : scalar === 7 || scalar === 13 ? { min: 0, max: 2 ** 32 - 1 } : INT64_SAFE;
      const unsigned = scalar === 4 || scalar === 6 || scalar === 7 || scalar === 13;
      if (typeof value !== "number" || !Number.isFinite(value)) {
        errors.push({ loc, msg: "Input should be a valid integer", type: "int_type", input: value });
        return undefined;
      }
      if (!Number.isInteger(value)) {
        errors.push({ loc, msg: "Input should be a valid integer, got a number with a fractional part", type: "int_from_float", input: value });
        return undefined;
      }
      const min = unsigned ? 0 : range.min;
      if (value < min || value > range.max) {
        errors.push({ loc, msg: `Input should be between ${min} and ${range.max}`, type: "int_range", input: value });
        return undefined;
      }
      return value;
    }
  }
}

/**
 * Builds a message from a documented JSON body. `loc` is the FastAPI location prefix (["body"]).
 * Throws ValidationError listing every problem.
 */
export function messageFromJson<Desc extends DescMessage>(schema: Desc, input: unknown, loc: (string | number)[] = ["body"]): MessageShape<Desc> {
  const errors: FieldError[] = [];
  const json = checkMessage(schema, input, loc, errors);
  if (errors.length > 0 || json === undefined) throw new ValidationError(errors);
  return fromJson(schema, json, { ignoreUnknownFields: true });
}

/** Serializes a message in the documented JSON shape (see the module comment). */
export function messageToJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Record<string, unknown> {
  const json = toJson(schema, message, { useProtoFieldName: true, alwaysEmitImplicit: true }) as Record<string, unknown>;
  return fixUp(schema, json) as Record<string, unknown>;
}

function fixUp(schema: DescMessage, json: unknown): unknown {
  if (!isObject(json)) return json;
  if (wktKind(schema)) return json;
  if (isUnion(schema)) {
    for (const field of schema.fields) {
      const v = json[field.name];
      if (v !== undefined && field.message) return { type: field.name, ...(fixUp(field.message, v) as Record<string, unknown>) };
    }
    return null;
  }
  for (const field of schema.fields) {
    const v = json[field.name];
    if (v === undefined) continue;
    if (field.fieldKind === "scalar" && isInt64(field.scalar)) json[field.name] = Number(v);
    else if (field.fieldKind === "list" && field.listKind === "scalar" && isInt64(field.scalar)) json[field.name] = (v as string[]).map(Number);
    else if (field.fieldKind === "list" && field.listKind === "message") json[field.name] = (v as unknown[]).map((x) => fixUp(field.message, x));
    else if (field.fieldKind === "message") json[field.name] = fixUp(field.message, v);
  }
  return json;
}

function isInt64(scalar: number): boolean {
  return scalar === 3 || scalar === 4 || scalar === 6 || scalar === 16 || scalar === 18;
}


/**
 * Turns query parameters into a JSON object for messageFromJson: numbers and booleans are parsed
 * where the field wants them (anything unparsable is left as a string, which then fails validation).
 */
export function queryToJson(schema: DescMessage, params: URLSearchParams): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of schema.fields) {
    const raw = params.get(field.name);
    if (raw === null || field.fieldKind !== "scalar") {
      if (raw !== null) out[field.name] = raw;
      continue;
    }
    if (field.scalar === 8) out[field.name] = raw === "true" ? true : raw === "false" ? false : raw;
    else if (field.scalar !== 9 && field.scalar !== 12 && /^-?\d+(\.\d+)?$/.test(raw)) out[field.name] = Number(raw);
    else out[field.name] = raw;
  }
  return out;
}
