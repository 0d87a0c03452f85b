/**
 * Lists bounded in bytes with a continuation: a task's messages (GET /tasks/{id}/messages, a bare
 * array in TerminalUse's API, continues in a `Link: rel="next"` header; ListMessages with
 * next_cursor) come in pages of at most RESPONSE_BATCH_BYTES of content, and following the
 * continuation yields every message once, in order. Both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import type { App } from "../src/server/app.js";
import { client, postJson, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const P = { "X-Project-ID": "pages" };
const BUDGET = 4096;

for (const factory of storeFactories) {
  describe(`byte-bounded task messages (${factory.name} store)`, () => {
    let app: App;
    let taskId: string;
    const texts = Array.from({ length: 30 }, (_, i) => `${String(i).padStart(2, "0")}:${"x".repeat(1000)}`);
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { RESPONSE_BATCH_BYTES: String(BUDGET) } });
      taskId = (await postJson(app, "/tasks", { agent_name: "ns/a" }, P)).json.id;
      for (const text of texts) expect((await postJson(app, `/tasks/${taskId}/events`, { content: { type: "text", text } }, P)).status).toBe(201);
    }, 60_000);
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("GET /tasks/{id}/messages pages by bytes and links the next page until the last", async () => {
      const got: string[] = [];
      let url: string | undefined = `/tasks/${taskId}/messages`;
      let pages = 0;
      while (url) {
        const res = await fetch(app.url + url, { headers: P });
        expect(res.status).toBe(200);
        const page = (await res.json()) as { content: { content: string } }[];
        expect(page.reduce((n, m) => n + Buffer.byteLength(JSON.stringify(m.content)), 0)).toBeLessThanOrEqual(BUDGET + 200);
        got.push(...page.map((m) => m.content.content));
        pages++;
        url = /^<([^>]+)>; rel="next"$/.exec(res.headers.get("link") ?? "")?.[1];
      }
      expect(pages).toBeGreaterThan(5);
      expect(got).toEqual(texts);
      // `limit` caps a page by count as well, and the link keeps it.
      const first = await fetch(`${app.url}/tasks/${taskId}/messages?limit=2`, { headers: P });
      expect(((await first.json()) as unknown[]).length).toBe(2);
      expect(first.headers.get("link")).toMatch(/cursor=\d+&limit=2>; rel="next"$/);
    });

    it("ListMessages pages with next_cursor; a cursor it did not issue is invalid_argument", async () => {
      const rpc = client(TaskEventsService, app, "grpc");
      const h = { headers: { "x-project-id": "pages" } };
      const got: string[] = [];
      for (let cursor: string | undefined = undefined, first = true; first || cursor; first = false) {
        const r = await rpc.listMessages({ taskId, ...(cursor ? { cursor } : {}) }, h);
        got.push(...r.messages.map((m) => m.content?.content ?? ""));
        expect(r.hasMore).toBe(r.nextCursor !== undefined);
        cursor = r.nextCursor;
      }
      expect(got).toEqual(texts);
      const err = await rpc.listMessages({ taskId, cursor: "abc" }, h).catch((e: unknown) => ConnectError.from(e));
      expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    });
  });
}
