/**
 * What free-form JSON (event data, metadata, dialect fields) may hold, checked the same way for
 * every surface. Pure JSON rules: no protobuf, no HTTP. Everything here is iterative, so any depth
 * of input is safe to check.
 */

/**
 * Free-form JSON may nest this deep at most. Protobuf decoders stop at a recursion limit of 100
 * (C++, Java, Python, Go); each JSON object level costs three protobuf levels (Value, Struct,
 * map entry) and the event envelope a few more, so 30 levels is what every protobuf client decodes.
 */
export const MAX_JSON_DEPTH = 30;

/**
 * Why a free-form JSON value cannot be kept, or undefined: nested deeper than maxDepth, a number
 * JSON cannot represent, or a string (or key) that is not well-formed Unicode (a lone surrogate
 * cannot travel as UTF-8, which protobuf strings and MongoDB require). Iterative: any depth is safe.
 */
export function freeJsonProblem(value: unknown, maxDepth = MAX_JSON_DEPTH): string | undefined {
  const values: unknown[] = [value];
  const depths: number[] = [1];
  while (values.length > 0) {
    const v = values.pop();
    const depth = depths.pop()!;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) return "numbers must be finite";
      continue;
    }
    if (typeof v === "string") {
      if (!wellFormed(v)) return "strings must be well-formed Unicode (no lone surrogates)";
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (depth > maxDepth) return `nested deeper than ${maxDepth} levels`;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const c = v[i];
        if (c !== null && typeof c === "object") {
          values.push(c);
          depths.push(depth + 1);
        } else if ((typeof c === "number" && !Number.isFinite(c)) || (typeof c === "string" && !wellFormed(c))) {
          values.push(c);
          depths.push(depth + 1);
        }
      }
    } else {
      for (const k of Object.keys(v)) {
        if (!wellFormed(k)) return "keys must be well-formed Unicode (no lone surrogates)";
        values.push((v as Record<string, unknown>)[k]);
        depths.push(depth + 1);
      }
    }
  }
  return undefined;
}

/** Whether a string is well-formed UTF-16 (no lone surrogates): String.prototype.isWellFormed, Node 20+. */
export function wellFormed(s: string): boolean {
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** How deep a JSON value nests (a scalar is 0, `{}` and `[]` are 1). Iterative. */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const values: unknown[] = [value];
  const depths: number[] = [1];
  while (values.length > 0) {
    const v = values.pop();
    const depth = depths.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > max) max = depth;
    for (const c of Array.isArray(v) ? v : Object.values(v)) {
      if (c !== null && typeof c === "object") {
        values.push(c);
        depths.push(depth + 1);
      }
    }
  }
  return max;
}

/** Sets `obj[key] = value` as an own data property, also for "__proto__". */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  else obj[key] = value;
}


/**
 * What an event costs: `bytes`, its JSON size (data, metadata and dialect fields), which response
 * budgets count; `weight`, an estimate of the heap it holds as parsed JSON (its JSON size plus a
 * per-node overhead: an empty object takes tens of bytes in V8 but two in JSON), which memory
 * budgets count. Bounds that counted only bytes of JSON could be passed ten times over by data
 * such as `[{},{},…]`.
 */
export interface EventCost {
  bytes: number;
  weight: number;
  /** JSON values (scalars, objects, arrays) in its largest part (data, metadata or dialect fields). */
  values: number;
}

/** V8's heap per JSON container (object or array header, elements store) and per value slot, roughly. */
const CONTAINER_OVERHEAD = 64;
const SLOT_OVERHEAD = 16;

/**
 * A measured cost is kept on the object itself, under a non-enumerable symbol key: invisible to
 * JSON, spreads, Object.keys, BSON and deep equality. Not in a WeakMap: with an entry for every
 * event the memory store holds, its lookups and inserts and the collector's walk of its entries
 * were half of the in-process publish path (bench/publish-path.mjs profile: WeakMap get/set 25 %
 * self, garbage collection 30 %). Objects that cannot take a property fall back to the WeakMap.
 */
const COST = Symbol("eventCost");
const sealedCosts = new WeakMap<object, EventCost>();

function keptCost(holder: object): EventCost | undefined {
  return (holder as { [COST]?: EventCost })[COST] ?? sealedCosts.get(holder);
}

/** Records a cost measured elsewhere (the log measures drafts before it stores them). */
export function setCost(holder: object, c: EventCost): void {
  if (Object.isExtensible(holder)) Object.defineProperty(holder, COST, { value: c, writable: true, configurable: true, enumerable: false });
  else sealedCosts.set(holder, c);
}

export function measure(parts: readonly unknown[]): EventCost {
  let bytes = 0;
  let overhead = 0;
  let values = 0;
  for (const p of parts) {
    if (p === undefined) continue;
    bytes += Buffer.byteLength(JSON.stringify(p) ?? "");
    const n = countNodes(p);
    overhead += n.overhead;
    values = Math.max(values, n.values);
  }
  return { bytes, weight: bytes + overhead, values };
}

/** The per-node heap overhead of a JSON value, and its number of values (iterative). */
function countNodes(value: unknown): { overhead: number; values: number } {
  let overhead = 0;
  let values = 1;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== "object") continue;
    if (ArrayBuffer.isView(v)) continue;
    overhead += CONTAINER_OVERHEAD;
    if (Array.isArray(v)) {
      values += v.length;
      overhead += v.length * SLOT_OVERHEAD;
      for (const c of v) if (c !== null && typeof c === "object") stack.push(c);
    } else {
      const vals = Object.values(v);
      values += vals.length;
      overhead += vals.length * SLOT_OVERHEAD * 2;
      for (const c of vals) if (c !== null && typeof c === "object") stack.push(c);
    }
  }
  return { overhead, values };
}

/** The cost of an event or draft: its JSON parts, plus an opaque byte payload if it carries one. */
export function eventCost(e: { data: unknown; metadata?: unknown; extra?: unknown }): EventCost {
  let c = keptCost(e);
  if (!c) {
    c = measure([e.data, e.metadata, e.extra]);
    const raw = (e as { bytes?: unknown }).bytes;
    if (raw instanceof Uint8Array) c = { bytes: c.bytes + raw.length, weight: c.weight + raw.length, values: c.values };
    setCost(e, c);
  }
  return c;
}

/**
 * How many values a JSON text holds (every scalar, object and array counts one) and how deep it
 * nests, from the text alone: one pass over its characters, before anything is parsed. Parsing,
 * checking and encoding cost per value (a 4 MiB `[{},{},…]` is 1.4 million objects), so bodies are
 * bounded in values as well as bytes. Counts are exact for valid JSON; invalid JSON fails later.
 */
export function scanJsonText(text: string): { values: number; depth: number } {
  let values = 0;
  let depth = 0;
  let maxDepth = 0;
  let inString = false;
  let inScalar = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    switch (c) {
      case 0x22: // "
        inString = true;
        // A key is followed by ':'; counting it as a value too over-counts objects by their keys,
        // which keeps the bound conservative and the scan simple.
        values++;
        inScalar = false;
        break;
      case 0x5b: // [
      case 0x7b: // {
        values++;
        depth++;
        if (depth > maxDepth) maxDepth = depth;
        inScalar = false;
        break;
      case 0x5d: // ]
      case 0x7d: // }
        depth--;
        inScalar = false;
        break;
      case 0x2c: // ,
      case 0x3a: // :
      case 0x20:
      case 0x0a:
      case 0x0d:
      case 0x09:
        inScalar = false;
        break;
      default:
        if (!inScalar) values++;
        inScalar = true;
    }
  }
  return { values, depth: maxDepth };
}

/** Values (scalars, objects, arrays) one event's free JSON, or one JSON body, may hold by default (MAX_JSON_VALUES). */
export const MAX_JSON_VALUES = 100_000;
