/**
 * One name rule for every surface. A stream's name (a Durable Streams name, a topic, an execution
 * id, a task name, a subscription slug, any StreamRef key) travels in URL paths on some surface:
 * `/v1/stream/{name}` and `/v1/log/{kind}/{key}` take it as /-separated segments, the JSON dialects
 * as one percent-encoded path parameter. A name is accepted only if it comes back unchanged from
 * every one of them, so what one surface creates every other can reach:
 *
 * - no empty /-separated segment (a leading or trailing `/`, `//`): proxies and clients collapse them;
 * - no `.` or `..` segment: every URL parser resolves them away (`%2E%2E` included), so
 *   `dir/../victim` would name `victim`;
 * - no control characters (C0, DEL, C1), and well-formed Unicode (a lone surrogate has no UTF-8);
 * - at most MAX_NAME_BYTES bytes of UTF-8.
 *
 * Surfaces narrow it further (the protocol identifiers' character set, IDENTIFIER); none widens it.
 */

export const MAX_NAME_BYTES = 1024;

/** What `(events.v1.identifier)` fields allow besides the name rule: 1-256 characters of letters, digits and _ . : @ ~ + = / - */
export const IDENTIFIER = /^[A-Za-z0-9_.:@~+=/-]{1,256}$/;
export const IDENTIFIER_RULE = "must be 1-256 characters of letters, digits and _ . : @ ~ + = / -, with no empty, . or .. part between slashes";

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Why `name` cannot be a name on every surface; undefined when it can. */
export function nameProblem(name: string): string | undefined {
  if (name === "") return "must not be empty";
  if (LONE_SURROGATE.test(name)) return "must be well-formed Unicode (no lone surrogates)";
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return "must not contain control characters";
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) return `must be at most ${MAX_NAME_BYTES} bytes of UTF-8`;
  for (const segment of name.split("/")) {
    if (segment === "") return "must not begin or end with / or contain // (URLs drop empty parts)";
    if (segment === "." || segment === "..") return "must not have . or .. as a part between slashes (URLs resolve them away)";
  }
  return undefined;
}

/** True when `v` is a valid identifier: IDENTIFIER's characters and the name rule. */
export function isIdentifier(v: string): boolean {
  return IDENTIFIER.test(v) && nameProblem(v) === undefined;
}

/** The URL path form of a name (each /-separated part percent-encoded): it decodes back to the name. */
export function namePath(name: string): string {
  return name.split("/").map(encodeURIComponent).join("/");
}
