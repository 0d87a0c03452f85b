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

