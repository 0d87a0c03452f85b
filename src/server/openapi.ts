/**
 * The OpenAPI 3.1 document of the JSON paths, built from the route tables and the message
 * descriptors with the same rules as src/api/json.ts (snake_case names, int64 as integers, free
 * JSON for google.protobuf.Value/Struct, TextPart/DataPart as a `type`-tagged union), so the
 * document cannot drift from what the service serves. Served at GET /openapi.json.
 */
import type { DescField, DescMessage } from "@bufbuild/protobuf";
import { fieldRules } from "../api/json.js";
import type { Dialect } from "../api/errors.js";
import type { Route } from "./gateway.js";

export interface RouteDoc {
  summary: string;
  /** JSON body: this message's fields, minus the path parameters. */
  body?: DescMessage;
  /** Query parameters: this message's fields, minus the path parameters. */
  query?: DescMessage;
  responses: ResponseDoc[];
}

export interface ResponseDoc {
  status: number;
  description: string;
  /** The JSON body, a JSON array of it (`array`), or an SSE stream of it (`sse`). */
  schema?: DescMessage;
  array?: boolean;
  sse?: boolean;
  /** A JSON body that is always `{}`. */
  empty?: boolean;
}

type Schema = Record<string, unknown>;

const INT_SCALARS = new Set([3, 4, 5, 6, 7, 13, 15, 16, 17, 18]);

function isUnion(m: DescMessage): boolean {
  return m.oneofs.length === 1 && m.fields.length > 0 && m.fields.every((f) => f.oneof !== undefined && f.message !== undefined);
}

class Builder {
  readonly components: Record<string, Schema> = {};

  ref(m: DescMessage, mode: "request" | "response"): Schema {
    switch (m.typeName) {
      case "google.protobuf.Value":
        return {};
      case "google.protobuf.Struct":
        return { type: "object" };
      case "google.protobuf.Timestamp":
        return { type: "string", format: "date-time" };
    }
    const name = `${m.typeName}${mode === "request" ? ".Request" : ""}`;
    if (!this.components[name]) {
      this.components[name] = {}; // placeholder against recursion
      this.components[name] = this.message(m, mode);
    }
    return { $ref: `#/components/schemas/${name}` };
  }

  message(m: DescMessage, mode: "request" | "response", omit: ReadonlySet<string> = new Set()): Schema {
    if (isUnion(m)) {
      return {
        oneOf: m.fields.map((f) => {
          const inner = this.message(f.message!, mode);
          const props = (inner["properties"] ?? {}) as Record<string, Schema>;
          return { type: "object", properties: { type: { const: f.name }, ...props }, required: ["type", ...((inner["required"] as string[]) ?? [])] };
        }),
      };
    }
    const properties: Record<string, Schema> = {};
    const req: string[] = [];
    for (const f of m.fields) {
      if (omit.has(f.name)) continue;
      properties[f.name] = this.field(f, mode);
      const isRequired = mode === "request" ? fieldRules(f).required : f.fieldKind !== "message" && !(f.fieldKind === "scalar" && f.presence === 1);
      if (isRequired) req.push(f.name);
    }
    return { type: "object", properties, ...(req.length ? { required: req } : {}) };
  }

  field(f: DescField, mode: "request" | "response"): Schema {
    let s: Schema;
    switch (f.fieldKind) {
      case "scalar":
        s = scalar(f.scalar);
        break;
      case "enum":
        s = { type: "string", enum: f.enum.values.map((v) => v.name) };
        break;
      case "message":
        s = this.ref(f.message, mode);
        break;
      case "list":
        s = { type: "array", items: f.listKind === "message" ? this.ref(f.message, mode) : f.listKind === "enum" ? { type: "string" } : scalar(f.scalar) };
        break;
      case "map":
        s = { type: "object", additionalProperties: f.mapKind === "message" ? this.ref(f.message, mode) : {} };
        break;
    }
    // Requests may send null for anything optional (it means absent).
    if (mode === "request" && !fieldRules(f).required) return { anyOf: [s, { type: "null" }] };
    return s;
  }
}

function scalar(kind: number): Schema {
  if (kind === 8) return { type: "boolean" };
  if (kind === 1 || kind === 2) return { type: "number" };
  if (INT_SCALARS.has(kind)) return { type: "integer" };
  return { type: "string" };
}

const ERROR_SCHEMAS: Record<Dialect, Schema> = {
  error: { type: "object", properties: { error: { type: "string" }, details: { type: "array" } }, required: ["error"] },
  fastapi: {
    type: "object",
    properties: {
      detail: {
        anyOf: [
          { type: "string" },
          { type: "array", items: { type: "object", properties: { loc: { type: "array", items: { anyOf: [{ type: "string" }, { type: "integer" }] } }, msg: { type: "string" }, type: { type: "string" } }, required: ["loc", "msg", "type"] } },
        ],
      },
    },
    required: ["detail"],
  },
};

export function openApiDocument(routes: readonly Route[], version: string): Schema {
  const b = new Builder();
  const paths: Record<string, Record<string, Schema>> = {};
  for (const route of routes) {
    const doc = route.doc;
    if (!doc) continue;
    const pathParams = [...route.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
    const omit = new Set(pathParams);
    const parameters: Schema[] = pathParams.map((name) => ({ name, in: "path", required: true, schema: { type: "string" } }));
    if (doc.query) {
      for (const f of doc.query.fields) {
        if (omit.has(f.name)) continue;
        parameters.push({ name: f.name, in: "query", required: Boolean(fieldRules(f).required), schema: b.field(f, "response") });
      }
    }
    const responses: Record<string, Schema> = {};
    for (const r of doc.responses) {
      let content: Schema | undefined;
      if (r.sse) content = { "text/event-stream": { schema: { type: "string" }, "x-event-schema": r.schema ? b.ref(r.schema, "response") : {} } };
      else if (r.empty) content = { "application/json": { schema: { type: "object", maxProperties: 0 } } };
      else if (r.schema) content = { "application/json": { schema: r.array ? { type: "array", items: b.ref(r.schema, "response") } : b.ref(r.schema, "response") } };
      responses[String(r.status)] = { description: r.description, ...(content ? { content } : {}) };
    }
    const errors = route.dialect === "fastapi" ? [401, 403, 404, 413, 422, 503] : [400, 401, 403, 404, 413, 503];
    for (const status of errors) {
      responses[String(status)] ??= { description: errorText(status), content: { "application/json": { schema: { $ref: `#/components/schemas/${route.dialect}.Error` } } } };
    }
    (paths[route.path] ??= {})[route.method.toLowerCase()] = {
      summary: doc.summary,
      ...(parameters.length ? { parameters } : {}),
      ...(doc.body ? { requestBody: { required: true, content: { "application/json": { schema: b.message(doc.body, "request", omit) } } } } : {}),
      responses,
    };
  }
  b.components["error.Error"] = ERROR_SCHEMAS.error;
  b.components["fastapi.Error"] = ERROR_SCHEMAS.fastapi;
  return {
    openapi: "3.1.0",
    info: {
      title: "agent-events",
      version,
      description: "Event ingestion and streaming for AI-agent platforms: the documented JSON paths of Polos, Kubiya, Sailhouse and TerminalUse. The same operations are served as gRPC/Connect RPCs (see proto/).",
    },
    components: {
      schemas: b.components,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer" },
        apiKey: { type: "apiKey", in: "header", name: "Authorization" },
        polosCookie: { type: "apiKey", in: "cookie", name: "polos_auth" },
      },
    },
    security: [{ bearer: [] }, { apiKey: [] }, { polosCookie: [] }, {}],
    paths,
  };
}

function errorText(status: number): string {
  return { 400: "Bad request", 401: "Missing or invalid API key", 403: "The key belongs to another project", 404: "Not found", 413: "Over a size limit", 422: "Validation error", 503: "The event store is unavailable" }[status] ?? "Error";
}
