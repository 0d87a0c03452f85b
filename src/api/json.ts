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
import { freeJsonProblem, quoteInput, rawValue, truncateUtf8, valueToJson, wellFormed } from "./free-json.js";
import type { Value } from "@bufbuild/protobuf/wkt";
import type { JsonValue } from "../core/types.js";

export interface FieldError {
  loc: (string | number)[];
  msg: string;
  type: string;
  input?: unknown;
  /** pydantic's error context, e.g. {max_length: 256}. */
  ctx?: Record<string, unknown>;
}

/** What an error reply quotes of the caller's input, at most (ERROR_QUOTE_BYTES sets the gateway's). */
export const DEFAULT_QUOTE_BYTES = 2048;
/** Problems listed in one error reply, at most; the rest are counted. */
export const MAX_REPORTED_ERRORS = 50;

export class ValidationError extends Error {
  constructor(readonly errors: FieldError[]) {
    // The message (RPC errors carry it) names the first few problems, never the input.
    const shown = errors.slice(0, 5).map((e) => `${e.loc.join(".")}: ${e.msg}`);
    if (errors.length > 5) shown.push(`and ${errors.length - 5} more`);
    super(truncateUtf8(shown.join("; "), 2048));
    this.name = "ValidationError";
  }
}

/**
 * Field errors as an error reply may carry them: inputs quoted within quoteBytes (see quoteInput),
 * messages and locations bounded, at most MAX_REPORTED_ERRORS entries (a last one counts the rest).
 */
export function boundedErrors(errors: FieldError[], quoteBytes = DEFAULT_QUOTE_BYTES): FieldError[] {
  const out = errors.slice(0, MAX_REPORTED_ERRORS).map((e) => {
    const b: FieldError = { loc: e.loc.map((l) => (typeof l === "string" ? truncateUtf8(l, quoteBytes) : l)), msg: truncateUtf8(e.msg, 1024), type: e.type };
    if ("input" in e) b.input = quoteInput(e.input, quoteBytes);
    if (e.ctx) b.ctx = e.ctx;
    return b;
  });
  if (errors.length > MAX_REPORTED_ERRORS) out.push({ loc: [], msg: `${errors.length - MAX_REPORTED_ERRORS} more problems not listed`, type: "too_many_errors" });
  return out;
}

const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };
export { MAX_JSON_DEPTH } from "./free-json.js";
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
 * A free-form JSON field (google.protobuf.Value or Struct) found while checking a body: it is left
 * out of the proto JSON handed to fromJson and set on the built message afterwards (`path` leads
 * from the message to the one that holds the field), so its JSON is kept as sent: never copied
 * into a Value tree, `__proto__` keys included.
 */
interface FreeField {
  path: (string | number)[];
  field: DescField;
  value: JsonValue;
}

/** What checking a body collects: the problems, and the free-form fields to set afterwards. */
interface Check {
  errors: FieldError[];
  free: FreeField[];
}

/**
 * Checks `input` against the message and returns it in proto JSON form (ready for fromJson).
 * Unknown fields are ignored, as FastAPI and Go's encoding/json do.
 */
function checkMessage(schema: DescMessage, input: unknown, loc: (string | number)[], c: Check, path: (string | number)[]): Record<string, PbJson> | undefined {
  const errors = c.errors;
  if (!isObject(input)) {
    errors.push({ loc, msg: "Input should be a valid dictionary or object to extract fields from", type: "model_attributes_type", input });
    return undefined;
  }
  if (isUnion(schema)) return checkUnion(schema, input, loc, c, path);
  const out: Record<string, PbJson> = {};
  for (const field of schema.fields) {
    const value = input[field.name];
    // null means "absent", except where the field holds any JSON value (google.protobuf.Value).
    const isAnyValue = field.fieldKind === "message" && wktKind(field.message) === "value";
    if (value === undefined || (value === null && !isAnyValue)) {
      if (fieldRules(field).required) errors.push({ loc: [...loc, field.name], msg: "Field required", type: "missing", input });
      continue;
    }
    if (field.fieldKind === "message" && (wktKind(field.message) === "value" || wktKind(field.message) === "struct")) {
      if (checkFree(field.message, value, [...loc, field.name], errors)) c.free.push({ path, field, value: value as JsonValue });
      continue;
    }
    const v = checkField(field, value, [...loc, field.name], c, [...path, field.localName]);
    if (v !== undefined) out[field.jsonName] = v;
  }
  return out;
}

function checkUnion(schema: DescMessage, input: Record<string, unknown>, loc: (string | number)[], c: Check, path: (string | number)[]): Record<string, PbJson> | undefined {
  const errors = c.errors;
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
      msg: `Input tag '${truncateUtf8(tag, 64)}' found using 'type' does not match any of the expected tags: ${tags.map((t) => `'${t}'`).join(", ")}`,
      type: "union_tag_invalid",
      input,
    });
    return undefined;
  }
  const { type: _type, ...rest } = input;
  const inner = checkMessage(member.message, rest, [...loc, tag], c, [...path, member.oneof!.localName, "value"]);
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

function checkField(field: DescField, value: unknown, loc: (string | number)[], c: Check, path: (string | number)[]): PbJson | undefined {
  const errors = c.errors;
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
      return checkMessageValue(field.message, value, loc, c, path);
    case "list": {
      if (!Array.isArray(value)) {
        errors.push({ loc, msg: "Input should be a valid list", type: "list_type", input: value });
        return undefined;
      }
      const out: PbJson[] = [];
      value.forEach((item, i) => {
        const v =
          field.listKind === "message"
            ? checkMessageValue(field.message, item, [...loc, i], c, [...path, out.length])
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
      {
        const problem = freeJsonProblem(value);
        if (problem) {
          errors.push({ loc, msg: `Input is not storable JSON: ${problem}`, type: "value_error" });
          return undefined;
        }
      }
      return value as PbJson;
  }
}

/** Whether a free-form JSON value (a Value, or a Struct: an object) may be stored; records why not. */
function checkFree(schema: DescMessage, value: unknown, loc: (string | number)[], errors: FieldError[]): boolean {
  const problem = freeJsonProblem(value);
  if (problem) {
    errors.push({ loc, msg: `Input is not storable JSON: ${problem}`, type: "value_error" });
    return false;
  }
  if (wktKind(schema) === "struct" && !isObject(value)) {
    errors.push({ loc, msg: "Input should be a valid dictionary", type: "dict_type", input: value });
    return false;
  }
  return true;
}

function checkMessageValue(schema: DescMessage, value: unknown, loc: (string | number)[], c: Check, path: (string | number)[]): PbJson | undefined {
  const errors = c.errors;
  switch (wktKind(schema)) {
    case "value":
    case "struct":
      // Free-form JSON inside a list (no such field today): checked, then converted by fromJson.
      return checkFree(schema, value, loc, errors) ? (value as PbJson) : undefined;
    case "timestamp":
      if (typeof value !== "string" || Number.isNaN(Date.parse(value))) {
        errors.push({ loc, msg: "Input should be a valid datetime", type: "datetime_type", input: value });
        return undefined;
      }
      return value;
    default:
      return checkMessage(schema, value, loc, c, path);
  }
}

// ScalarType numbers from descriptor.proto: 1 double, 2 float, 3 int64, 4 uint64, 5 int32, 6 fixed64,
// 7 fixed32, 8 bool, 9 string, 12 bytes, 13 uint32, 15 sfixed32, 16 sfixed64, 17 sint32, 18 sint64.
function checkScalar(scalar: number, value: unknown, loc: (string | number)[], errors: FieldError[]): PbJson | undefined {
  switch (scalar) {
    case 9:
      if (typeof value === "string" && !wellFormed(value)) {
        errors.push({ loc, msg: "Input should be a valid string: well-formed Unicode (no lone surrogates)", type: "string_unicode", input: value });
        return undefined;
      }
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
  const c: Check = { errors: [], free: [] };
  const json = checkMessage(schema, input, loc, c, []);
  if (c.errors.length > 0 || json === undefined) throw new ValidationError(c.errors);
  const msg = fromJson(schema, json, { ignoreUnknownFields: true });
  for (const f of c.free) {
    let holder = msg as unknown as Record<string | number, unknown>;
    for (const step of f.path) holder = holder[step] as Record<string | number, unknown>;
    holder[f.field.localName] = wktKind(f.field.message!) === "value" ? rawValue(f.value) : f.value;
  }
  return msg;
}

/** Serializes a message in the documented JSON shape (see the module comment). */
export function messageToJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Record<string, unknown> {
  // Free-form fields are left out of toJson (see FreeField) and put back by fixUp as they are.
  const json = toJson(schema, withoutFree(schema, message) as MessageShape<Desc>, { useProtoFieldName: true, alwaysEmitImplicit: true }) as Record<string, unknown>;
  return fixUp(schema, json, message) as Record<string, unknown>;
}

function isFree(field: DescField): boolean {
  return field.fieldKind === "message" && (wktKind(field.message) === "value" || wktKind(field.message) === "struct");
}

const freeCache = new WeakMap<DescMessage, boolean>();

/** Whether a message holds a free-form field anywhere inside. */
function hasFree(schema: DescMessage, seen = new Set<DescMessage>()): boolean {
  const known = freeCache.get(schema);
  if (known !== undefined) return known;
  if (seen.has(schema) || wktKind(schema)) return false;
  seen.add(schema);
  const r = schema.fields.some((f) => isFree(f) || ((f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message")) && hasFree(f.message!, seen)));
  freeCache.set(schema, r);
  return r;
}

type Obj = Record<string, unknown>;

/** A shallow copy of the message with its free-form fields (at any depth) unset. */
function withoutFree(schema: DescMessage, msg: unknown): unknown {
  if (!hasFree(schema) || msg === undefined || msg === null) return msg;
  const copy: Obj = { ...(msg as Obj) };
  for (const field of schema.fields) {
    if (field.oneof) {
      const o = copy[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
      if (o?.case === field.localName && field.message && !isFree(field)) copy[field.oneof.localName] = { case: o.case, value: withoutFree(field.message, o.value) };
    } else if (isFree(field)) copy[field.localName] = undefined;
    else if (field.fieldKind === "message") copy[field.localName] = withoutFree(field.message, copy[field.localName]);
    else if (field.fieldKind === "list" && field.listKind === "message") copy[field.localName] = (copy[field.localName] as unknown[]).map((x) => withoutFree(field.message, x));
  }
  return copy;
}

/** The JSON of a free-form field's value as held in a message (Value, or Struct as a JSON object). */
function freeToJson(field: DescField, v: unknown): unknown {
  return wktKind(field.message!) === "value" ? valueToJson(v as Value, Infinity, true) : v;
}

function fixUp(schema: DescMessage, json: unknown, msg: unknown): unknown {
  if (!isObject(json)) return json;
  if (wktKind(schema)) return json;
  const m = (msg ?? {}) as Obj;
  if (isUnion(schema)) {
    for (const field of schema.fields) {
      const v = json[field.name];
      const o = m[field.oneof!.localName] as { case?: string; value?: unknown } | undefined;
      if (v !== undefined && field.message) return { type: field.name, ...(fixUp(field.message, v, o?.case === field.localName ? o.value : undefined) as Obj) };
    }
    return null;
  }
  for (const field of schema.fields) {
    if (isFree(field) && !field.oneof) {
      const held = m[field.localName];
      if (held !== undefined) json[field.name] = freeToJson(field, held);
      continue;
    }
    const v = json[field.name];
    if (v === undefined) continue;
    if (field.fieldKind === "scalar" && isInt64(field.scalar)) json[field.name] = Number(v);
    else if (field.fieldKind === "list" && field.listKind === "scalar" && isInt64(field.scalar)) json[field.name] = (v as string[]).map(Number);
    else if (field.fieldKind === "list" && field.listKind === "message") json[field.name] = (v as unknown[]).map((x, i) => fixUp(field.message, x, (m[field.localName] as unknown[] | undefined)?.[i]));
    else if (field.fieldKind === "message") json[field.name] = fixUp(field.message, v, m[field.localName]);
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
    // Repeated scalars come as repeated parameters (`status=A&status=B`), as httpx and requests send lists.
    if (field.fieldKind === "list" && field.listKind === "scalar") {
      const all = params.getAll(field.name);
      if (all.length > 0) out[field.name] = all;
      continue;
    }
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
