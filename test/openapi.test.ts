/** GET /openapi.json describes every JSON path, and live responses conform to it (ajv, JSON Schema 2020-12). */
import { afterAll, beforeAll, expect, it } from "vitest";
import { Ajv2020 } from "ajv/dist/2020.js";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";

let app: App;
let doc: any;
const ajv = new Ajv2020({ strict: false, allErrors: true });
beforeAll(async () => {
  app = await startTestServer();
  doc = await (await fetch(`${app.url}/openapi.json`)).json();
  ajv.addSchema(doc, "openapi.json");
});
afterAll(async () => app?.close());

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll("~", "~0").replaceAll("/", "~1")).join("/");

/** Calls the service and checks the response against the document's schema for that path, method and status. */
async function conforms(method: string, template: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<any> {
  const res = await fetch(app.url + path, { method, headers: { "content-type": "application/json", "x-project-id": "oa", ...headers }, ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}) });
  const op = doc.paths[template]?.[method.toLowerCase()];
  expect(op, `${method} ${template} is documented`).toBeDefined();
  const response = op.responses[String(res.status)];
  expect(response, `${method} ${template} documents status ${res.status}`).toBeDefined();
  const text = await res.text();
  if (!response.content) {
    expect(text).toBe("");
    return undefined;
  }
  const type = Object.keys(response.content)[0]!;
  expect(res.headers.get("content-type")).toContain(type);
  if (type !== "application/json") return text;
  const json = JSON.parse(text);
  const validate = ajv.getSchema(`openapi.json#/${pointer("paths", template, method.toLowerCase(), "responses", String(res.status), "content", "application/json", "schema")}`)!;
  expect(validate(json), `${method} ${path} ${res.status}: ${JSON.stringify(validate.errors)}`).toBe(true);
  return json;
}

it("documents every JSON path of the route tables as OpenAPI 3.1", async () => {
  expect(doc.openapi).toBe("3.1.0");
  expect(Object.keys(doc.paths).sort()).toEqual(
    [
      "/api/v1/events",
      "/api/v1/events/publish",
      "/api/v1/events/stream",
      "/api/v1/executions/{execution_id}/events",
      "/api/v1/executions/{execution_id}/stream",
      "/api/v1/topics/{topic_slug}/subscriptions/{subscription_slug}",
      "/events",
      "/events/{event_id}",
      "/tasks",
      "/tasks/{task_id}",
      "/tasks/{task_id}/events",
      "/tasks/{task_id}/messages",
      "/tasks/{task_id}/stream",
      "/tasks/{task_id}/cancel",
      "/tasks/name/{task_name}",
      "/tasks/name/{task_name}/stream",
      "/v2/messages",
      "/v2/messages/{message_id}",
      "/topics/{topic_slug}/events",
      "/topics/{topic_slug}/subscriptions",
      "/topics/{topic_slug}/subscriptions/{subscription_slug}",
      "/topics/{topic_slug}/subscriptions/{subscription_slug}/events",
      "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/pull",
      "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/{event_id}",
      "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/{event_id}/nack",
      "/waitgroups/instances",
      "/waitgroups/instances/{wait_group_instance_id}/events",
    ].sort(),
  );
  // The document itself is valid JSON Schema wherever it holds schemas.
  expect(ajv.getSchema("openapi.json")).toBeDefined();
});

it("matches live responses, success and error alike", async () => {
  // Polos
  await conforms("POST", "/api/v1/events/publish", "/api/v1/events/publish", { topic: "oa", events: [{ data: { a: 1 }, event_type: "x" }, { data: [1] }] });
  await conforms("POST", "/api/v1/events/publish", "/api/v1/events/publish", { topic: "oa", events: [] });
  await conforms("GET", "/api/v1/events", "/api/v1/events?topic=oa&limit=1");
  await conforms("GET", "/api/v1/events", "/api/v1/events?topic=oa&limit=abc");
  // Kubiya
  await conforms("POST", "/api/v1/executions/{execution_id}/events", "/api/v1/executions/oa-1/events", { event_type: "s", data: {} });
  await conforms("POST", "/api/v1/executions/{execution_id}/events", "/api/v1/executions/oa-1/events", { data: 1 });
  // Sailhouse
  await conforms("PUT", "/topics/{topic_slug}/subscriptions/{subscription_slug}", "/topics/oa/subscriptions/s", { type: "pull" });
  await conforms("PUT", "/api/v1/topics/{topic_slug}/subscriptions/{subscription_slug}", "/api/v1/topics/oa/subscriptions/p", { type: "push", endpoint: "http://127.0.0.1:9/x" });
  const sent = await conforms("POST", "/topics/{topic_slug}/events", "/topics/oa/events", { data: { n: 1 }, metadata: { m: "x" } });
  await conforms("POST", "/topics/{topic_slug}/events", "/topics/oa/events", { data: "no" });
  const pulled = await conforms("GET", "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/pull", "/topics/oa/subscriptions/s/events/pull");
  expect(pulled.id).toBe(sent.id);
  await conforms("GET", "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/pull", "/topics/oa/subscriptions/s/events/pull");
  await conforms("POST", "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/{event_id}", `/topics/oa/subscriptions/s/events/${sent.id}`);
  await conforms("POST", "/topics/{topic_slug}/subscriptions/{subscription_slug}/events/{event_id}/nack", `/topics/oa/subscriptions/s/events/nope/nack`);
  await conforms("GET", "/topics/{topic_slug}/subscriptions/{subscription_slug}/events", "/topics/oa/subscriptions/s/events?limit=5");
  await conforms("GET", "/topics/{topic_slug}/subscriptions", "/topics/oa/subscriptions");
  await conforms("GET", "/topics/{topic_slug}/subscriptions/{subscription_slug}", "/topics/oa/subscriptions/p");
  await conforms("GET", "/topics/{topic_slug}/subscriptions/{subscription_slug}", "/topics/oa/subscriptions/nope");
  await conforms("DELETE", "/topics/{topic_slug}/subscriptions/{subscription_slug}", "/topics/oa/subscriptions/p");
  await conforms("DELETE", "/topics/{topic_slug}/subscriptions/{subscription_slug}", "/topics/oa/subscriptions/p");
  const wg = await conforms("POST", "/waitgroups/instances", "/waitgroups/instances", { topic: "oa-done", ttl: "1m" });
  await conforms("PUT", "/waitgroups/instances/{wait_group_instance_id}/events", `/waitgroups/instances/${wg.wait_group_instance_id}/events`, {});
  // TerminalUse
  const task = await conforms("POST", "/tasks", "/tasks", { agent_name: "ns/a", name: "t", params: { x: 1 } });
  await conforms("GET", "/tasks/{task_id}", `/tasks/${task.id}`);
  await conforms("GET", "/tasks/{task_id}", "/tasks/nope");
  const ev = await conforms("POST", "/tasks/{task_id}/events", `/tasks/${task.id}/events`, { content: { type: "text", text: "hi" } });
  await conforms("POST", "/tasks/{task_id}/events", `/tasks/${task.id}/events`, { content: { type: "data", data: { k: 1 } }, idempotency_key: "i" });
  await conforms("POST", "/tasks/{task_id}/events", `/tasks/${task.id}/events`, { content: { type: "tool" } });
  await conforms("GET", "/events", `/events?task_id=${task.id}`);
  await conforms("GET", "/events/{event_id}", `/events/${ev.id}`);
  await conforms("GET", "/tasks/{task_id}/messages", `/tasks/${task.id}/messages`);
  await conforms("GET", "/tasks", "/tasks?limit=5&status=IDLE&status=RUNNING&order_direction=asc");
  await conforms("GET", "/tasks", "/tasks?order_by=nope");
  await conforms("GET", "/tasks/name/{task_name}", "/tasks/name/t");
  await conforms("PUT", "/tasks/{task_id}", `/tasks/${task.id}`, { task_metadata: { k: 1 } });
  await conforms("PUT", "/tasks/name/{task_name}", "/tasks/name/t", { task_metadata: { k: 2 } });
  await conforms("POST", "/tasks/{task_id}/cancel", `/tasks/${task.id}/cancel`);
  await conforms("GET", "/v2/messages", `/v2/messages?task_id=${task.id}&limit=1`);
  await conforms("GET", "/v2/messages/{message_id}", `/v2/messages/${ev.id}?task_id=${task.id}`);
});
