/**
 * Free-form JSON (event data, metadata, params): the rules for what may be stored, and conversions
 * to and from google.protobuf.Value that are safe for any input.
 *
 * Why not protobuf-es's own Value/Struct conversion: it is recursive (a deep value overflows the
 * stack), it builds one message object per JSON node (a 1 MiB array costs ~0.3 s and several times
 * its size in heap), and it assigns keys with `obj[k] = v`, so a `__proto__` key is silently
 * dropped. Here conversions are iterative, `__proto__` stays an ordinary key, and a Value built
 * from stored JSON keeps that JSON ("raw") and only builds its message tree if protobuf binary
 * encoding asks for it.
 */
import { create } from "@bufbuild/protobuf";
import { ListValueSchema, NullValue, StructSchema, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import type { JsonObject, JsonValue } from "../core/types.js";
import { jsonDepth, MAX_JSON_DEPTH, setOwn, wellFormed } from "../core/json.js";

export { freeJsonProblem, jsonDepth, MAX_JSON_DEPTH, wellFormed } from "../core/json.js";

/**
 * Deepest JSON a protobuf Value or Struct field of ours carries as is: the input limit plus the
 * two levels a dialect may wrap around it (see core/log.ts). 2 + 3 × 32 protobuf levels stay
 * under the recursion limit of 100 that protobuf decoders apply.
 */
export const MAX_PROTO_DATA_DEPTH = MAX_JSON_DEPTH + 2;

const RAW = Symbol("raw JSON");
type RawValue = Value & { [RAW]?: JsonValue };

/**
 * A google.protobuf.Value holding `json`. The message tree is built on first access to `kind`
 * (protobuf binary encoding); rawJson() and valueToJson() return `json` itself without building it.
 * JSON deeper than MAX_PROTO_DATA_DEPTH (events stored before the nesting limit) is built as a
 * string Value holding its JSON text: a tree that deep would fail the client's whole response.
 */
export function rawValue(json: JsonValue): Value {
  const v = create(ValueSchema) as RawValue;
  v[RAW] = json;
  // Not memoized: a cached message (see RecentCache) must not keep a tree many times the
  // JSON's size alive; the encoding it is built for is cached instead.
  let assigned: Value["kind"] | undefined;
  Object.defineProperty(v, "kind", {
    enumerable: true,
    configurable: true,
    get: () => assigned ?? (jsonDepth(json) > MAX_PROTO_DATA_DEPTH ? { case: "stringValue", value: JSON.stringify(json) } : buildValue(json).kind),
    set: (k: Value["kind"]) => {
      assigned = k;
      delete v[RAW];
    },
  });
  return v;
}

/** The JSON a rawValue() holds, or undefined for an ordinary Value. */
export function rawJson(v: Value): JsonValue | undefined {
  return (v as RawValue)[RAW];
}

/** Builds a Value message tree from JSON, iteratively; `__proto__` keys are kept. */
function buildValue(json: JsonValue): Value {
  const root = create(ValueSchema);
  const stack: [JsonValue, Value][] = [[json, root]];
  while (stack.length > 0) {
    const [j, v] = stack.pop()!;
    if (j === null) v.kind = { case: "nullValue", value: NullValue.NULL_VALUE };
    else if (typeof j === "number") v.kind = { case: "numberValue", value: j };
    else if (typeof j === "string") v.kind = { case: "stringValue", value: j };
    else if (typeof j === "boolean") v.kind = { case: "boolValue", value: j };
    else if (Array.isArray(j)) {
      const list = create(ListValueSchema);
      for (const item of j) {
        const child = create(ValueSchema);
        list.values.push(child);
        stack.push([item, child]);
      }
      v.kind = { case: "listValue", value: list };
    } else {
      const struct = create(StructSchema);
      const fields = Object.create(null) as Record<string, Value>;
      for (const k of Object.keys(j)) {
        const child = create(ValueSchema);
        fields[k] = child;
        stack.push([j[k]!, child]);
      }
      struct.fields = fields;
      v.kind = { case: "structValue", value: struct };
    }
  }
  return root;
}

/**
 * The JSON of a Value (a raw one without copying), iteratively. Throws FreeJsonError when the
 * value is deeper than maxDepth, holds a non-finite number, or a kind-less Value inside a list or
 * struct (which JSON cannot express); a missing top-level Value is null. `lenient` (for output)
 * writes null for what JSON cannot hold instead of throwing.
 */
export function valueToJson(v: Value | undefined, maxDepth = MAX_JSON_DEPTH, lenient = false): JsonValue {
  if (!v) return null;
  const top = rawJson(v);
  if (top !== undefined) return top;
  const out: { root: JsonValue } = { root: null };
  // Each entry: the Value, the container to put its JSON in, the key or index, its depth.
  const stack: [Value, Record<string, unknown> | unknown[], string | number, number][] = [[v, out as unknown as Record<string, unknown>, "root", 1]];
  while (stack.length > 0) {
    const [val, into, at, depth] = stack.pop()!;
    const raw = rawJson(val);
    let j: JsonValue;
    if (raw !== undefined) j = raw;
    else {
      const k = val.kind;
      switch (k.case) {
        case "nullValue":
          j = null;
          break;
        case undefined:
          if (depth > 1 && !lenient) throw new FreeJsonError("a Value inside a list or struct has no kind");
          j = null;
          break;
        case "numberValue":
          if (!Number.isFinite(k.value) && !lenient) throw new FreeJsonError("numbers must be finite");
          j = Number.isFinite(k.value) ? k.value : null;
          break;
        case "stringValue":
          if (!lenient && !wellFormed(k.value)) throw new FreeJsonError("strings must be well-formed Unicode (no lone surrogates)");
          j = k.value;
          break;
        case "boolValue":
          j = k.value;
          break;
        case "listValue": {
          if (depth > maxDepth) throw new FreeJsonError(`nested deeper than ${maxDepth} levels`);
          const arr: JsonValue[] = new Array<JsonValue>(k.value.values.length).fill(null);
          k.value.values.forEach((c, i) => stack.push([c, arr, i, depth + 1]));
          j = arr;
          break;
        }
        case "structValue": {
          if (depth > maxDepth) throw new FreeJsonError(`nested deeper than ${maxDepth} levels`);
          const obj: JsonObject = {};
          const fields = k.value.fields;
          // Keys are set in order first (null), so filling them in later keeps the key order.
          for (const key of Object.keys(fields)) {
            if (!lenient && !wellFormed(key)) throw new FreeJsonError("keys must be well-formed Unicode (no lone surrogates)");
            setOwn(obj, key, null);
          }
          for (const key of Object.keys(fields)) stack.push([fields[key]!, obj, key, depth + 1]);
          j = obj;
          break;
        }
      }
    }
    if (Array.isArray(into)) into[at as number] = j;
    else setOwn(into, at as string, j);
  }
  return out.root;
}

/** Free-form JSON that breaks the rules above (a caller's input error). */
export class FreeJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FreeJsonError";
  }
}

/**
 * JSON text of `value`, or undefined when it would exceed maxBytes. Iterative and stops as soon as
 * the bound is passed, so it is cheap and safe on any input (deep, huge, cyclic-free JSON).
 */
export function jsonTextWithin(value: unknown, maxBytes: number): string | undefined {
  let out = "";
  // A stack of pending output: values to write, or literal text (closing brackets, commas).
  const stack: ({ v: unknown } | string)[] = [{ v: value }];
  while (stack.length > 0) {
    if (out.length > maxBytes) return undefined;
    const top = stack.pop()!;
    if (typeof top === "string") {
      out += top;
      continue;
    }
    const v = top.v;
    if (v === null || v === undefined || typeof v === "function" || typeof v === "symbol") out += "null";
    else if (typeof v === "number") out += Number.isFinite(v) ? String(v) : "null";
    else if (typeof v === "bigint") out += String(v);
    else if (typeof v === "boolean") out += String(v);
    else if (typeof v === "string") {
      if (v.length > maxBytes) return undefined;
      out += JSON.stringify(v);
    } else if (Array.isArray(v)) {
      if (v.length > maxBytes) return undefined;
      out += "[";
      stack.push("]");
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push({ v: v[i] });
        if (i > 0) stack.push(",");
      }
    } else if (v instanceof Date) out += JSON.stringify(v);
    else {
      const keys = Object.keys(v as object);
      if (keys.length > maxBytes) return undefined;
      out += "{";
      stack.push("}");
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push({ v: (v as Record<string, unknown>)[keys[i]!] });
        stack.push(JSON.stringify(keys[i]) + ":");
        if (i > 0) stack.push(",");
      }
    }
  }
  return Buffer.byteLength(out) > maxBytes ? undefined : out;
}

/** At most maxBytes of UTF-8 from the start of `text`, never splitting a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length <= maxBytes / 3 || Buffer.byteLength(text) <= maxBytes) return text;
  let s = Buffer.from(text.slice(0, maxBytes)).subarray(0, maxBytes).toString("utf8");
  // A character cut in half decodes as U+FFFD at the end: drop it.
  if (s.endsWith("\uFFFD")) s = s.slice(0, -1);
  // Never end on a lone high surrogate.
  if (/[\uD800-\uDBFF]$/.test(s)) s = s.slice(0, -1);
  return s;
}

/**
 * What an error reply may quote of a caller's input: the value itself when its JSON fits in
 * maxBytes, else the start of its JSON text (at most maxBytes) followed by "…". Error replies
 * never echo unbounded input, whatever its size or depth.
 */
export function quoteInput(value: unknown, maxBytes: number): unknown {
  if (typeof value === "string") return Buffer.byteLength(value) <= maxBytes || value.length <= maxBytes / 3 ? value : truncateUtf8(value, maxBytes) + "…";
  if (value === null || typeof value !== "object") return value;
  if (jsonTextWithin(value, maxBytes) !== undefined) return value;
  return truncateUtf8(prefixText(value, maxBytes), maxBytes) + "…";
}

/** The start (a little over maxBytes) of a value's JSON text, for one too big to quote whole. */
function prefixText(value: unknown, maxBytes: number): string {
  let out = "";
  const stack: ({ v: unknown } | string)[] = [{ v: value }];
  while (stack.length > 0 && out.length <= maxBytes) {
    const top = stack.pop()!;
    if (typeof top === "string") {
      out += top;
      continue;
    }
    const v = top.v;
    if (typeof v === "string") out += JSON.stringify(v.slice(0, maxBytes + 1));
    else if (v === null || typeof v !== "object") out += JSON.stringify(v) ?? "null";
    else if (Array.isArray(v)) {
      out += "[";
      stack.push("]");
      for (let i = Math.min(v.length, maxBytes) - 1; i >= 0; i--) {
        stack.push({ v: v[i] });
        if (i > 0) stack.push(",");
      }
    } else {
      out += "{";
      stack.push("}");
      const keys = Object.keys(v).slice(0, maxBytes);
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push({ v: (v as Record<string, unknown>)[keys[i]!] });
        stack.push(JSON.stringify(keys[i]!.slice(0, maxBytes)) + ":");
        if (i > 0) stack.push(",");
      }
    }
  }
  return out;
}

function varintLen(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function isContainer(v: unknown): v is object {
  return v !== null && typeof v === "object";
}

/** What a scalar takes as a Value (tag included). */
function scalarSize(v: unknown): number {
  if (typeof v === "string") {
    const b = Buffer.byteLength(v);
    return 1 + varintLen(b) + b;
  }
  return typeof v === "number" ? 9 : 2;
}

/** What a child of `size` bytes takes inside its list (key undefined) or struct (a map entry). */
function childSize(key: string | undefined, size: number): number {
  if (key === undefined) return 1 + varintLen(size) + size;
  const kb = Buffer.byteLength(key);
  const entry = 1 + varintLen(kb) + kb + 1 + varintLen(size) + size;
  return 1 + varintLen(entry) + entry;
}

interface Frame {
  v: object;
  keys: string[] | undefined;
  i: number;
  n: number;
  idx: number;
  acc: number;
}

/**
 * The protobuf binary encoding of google.protobuf.Value for a JSON value, written straight from
 * the JSON: no Value message tree (protobuf-es takes seconds, and hundreds of MB, for a tree of a
 * million nodes; this is one pass to size and one to write). Iterative. Byte-for-byte what
 * toBinary(ValueSchema, …) writes for the same value.
 */
export function encodeJsonValue(json: JsonValue): Uint8Array {
  // Pass 1: the content size of every container, indexed in pre-order (the order pass 2 writes).
  const sizes: number[] = [];
  const frames: Frame[] = [];
  const open = (v: object): void => {
    const keys = Array.isArray(v) ? undefined : Object.keys(v);
    frames.push({ v, keys, i: 0, n: keys ? keys.length : (v as unknown[]).length, idx: sizes.length, acc: 0 });
    sizes.push(0);
  };
  if (isContainer(json)) open(json);
  while (frames.length > 0) {
    const f = frames[frames.length - 1]!;
    if (f.i < f.n) {
      const key = f.keys?.[f.i];
      const c = key === undefined ? (f.v as unknown[])[f.i] : (f.v as Record<string, unknown>)[key];
      f.i++;
      if (isContainer(c)) open(c);
      else f.acc += childSize(key, scalarSize(c));
      continue;
    }
    frames.pop();
    sizes[f.idx] = f.acc;
    const parent = frames[frames.length - 1];
    if (parent) parent.acc += childSize(parent.keys?.[parent.i - 1], 1 + varintLen(f.acc) + f.acc);
  }
  const total = isContainer(json) ? 1 + varintLen(sizes[0]!) + sizes[0]! : scalarSize(json);
  // Pass 2: write, pre-order. A task: a value, with the key it has in its struct (undefined in a
  // list, null at the top).
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  let next = 0;
  const varint = (n: number): void => {
    while (n >= 0x80) {
      out[pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    out[pos++] = n;
  };
  const str = (s: string, bytes: number): void => {
    varint(bytes);
    pos += out.write(s, pos, "utf8");
  };
  const keys: (string | undefined | null)[] = [null];
  const values: unknown[] = [json];
  while (values.length > 0) {
    const key = keys.pop();
    const v = values.pop();
    let idx = -1;
    let vs: number;
    if (isContainer(v)) {
      idx = next++;
      vs = 1 + varintLen(sizes[idx]!) + sizes[idx]!;
    } else vs = scalarSize(v);
    if (key === undefined) {
      out[pos++] = 0x0a;
      varint(vs);
    } else if (key !== null) {
      const kb = Buffer.byteLength(key);
      out[pos++] = 0x0a;
      varint(1 + varintLen(kb) + kb + 1 + varintLen(vs) + vs);
      out[pos++] = 0x0a;
      str(key, kb);
      out[pos++] = 0x12;
      varint(vs);
    }
    if (v === null || v === undefined) {
      out[pos++] = 0x08;
      out[pos++] = 0;
    } else if (typeof v === "number") {
      out[pos++] = 0x11;
      out.writeDoubleLE(v, pos);
      pos += 8;
    } else if (typeof v === "string") {
      out[pos++] = 0x1a;
      str(v, Buffer.byteLength(v));
    } else if (typeof v === "boolean") {
      out[pos++] = 0x20;
      out[pos++] = v ? 1 : 0;
    } else if (isContainer(v)) {
      out[pos++] = Array.isArray(v) ? 0x32 : 0x2a;
      varint(sizes[idx]!);
      if (Array.isArray(v)) {
        for (let i = v.length - 1; i >= 0; i--) {
          keys.push(undefined);
          values.push(v[i]);
        }
      } else {
        const ks = Object.keys(v);
        for (let i = ks.length - 1; i >= 0; i--) {
          keys.push(ks[i]);
          values.push((v as Record<string, unknown>)[ks[i]!]);
        }
      }
    }
  }
  return out.subarray(0, pos);
}
