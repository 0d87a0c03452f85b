/**
 * Lists bounded in bytes with a continuation: a task's messages (GET /tasks/{id}/messages, a bare
 * array in TerminalUse's API, continues in a `Link: rel="next"` header; ListMessages with
 * next_cursor; /v2/messages both ways) come in pages of at most RESPONSE_BATCH_BYTES of content,
 * and following the continuation yields every message once, in order; GET /tasks refuses a page
 * that cannot fit (422 naming the limit that does) and pages consistently with it; Sailhouse's
 * subscription event list continues by offset + limit; subscription and API-key lists by page
 * token. Real clients where the platform has one (TerminalUse's and Sailhouse's Python SDKs, the
 * Connect client for the RPCs). Both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { AdminService } from "../gen/admin/v1/admin_pb.js";
import { SailhouseService } from "../gen/sailhouse/v1/sailhouse_pb.js";
import { TaskEventsService } from "../gen/terminaluse/v1/terminaluse_pb.js";
import type { App } from "../src/server/app.js";
import { itSdk, runPythonSdk } from "./support/python-sdk.js";
import { client, postJson, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const P = { "X-Project-ID": "pages" };

/** Follows a page-token list from the first page to the last: every item, and how many pages. */
async function everyPage<T>(page: (token: string) => Promise<{ items: T[]; next: string }>): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let pages = 0;
  for (let token = "", first = true; first || token; first = false, pages++) {
    const r = await page(token);
    items.push(...r.items);
    token = r.next;
  }
  return { items, pages };
}
const BUDGET = 4096;

for (const factory of storeFactories) {
  describe(`byte-bounded lists (${factory.name} store)`, () => {
    let app: App;
    let taskId: string;
    const texts = Array.from({ length: 30 }, (_, i) => `${String(i).padStart(2, "0")}:${"x".repeat(1000)}`);
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { RESPONSE_BATCH_BYTES: String(BUDGET), ADMIN_TOKEN: "admin-secret" } });
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

    itSdk("GET /tasks refuses a limit whose page cannot fit, naming the one that does; paging by page_number with it yields every task once; /v2/messages pages by bytes both ways (TerminalUse SDK)", async () => {
      const r = await runPythonSdk("terminaluse_paging.py", { baseUrl: app.url, args: { tasks: 11, params_bytes: 1000, limit: 10, messages: 30, message_bytes: 500 } });
      expect(r.refused).toMatchObject({ error: "UnprocessableEntityError", status: 422 });
      expect(r.refused.detail.detail[0]).toMatchObject({ loc: ["query", "limit"], msg: expect.stringMatching(/RESPONSE_BATCH_BYTES=4096/) });
      expect(r.fit).toBeGreaterThan(1);
      expect(r.fit).toBeLessThan(10);
      // Every task once (ties in created_at are ordered by id, so compare as sets of equal size).
      expect(r.listed).toHaveLength(11);
      expect([...r.listed].sort()).toEqual([...r.created].sort());
      // Messages: the first page is cut by bytes well before its limit of 100; the pager gets all.
      expect(r.first_page_size).toBeGreaterThan(1);
      expect(r.first_page_size).toBeLessThan(30);
      expect(r.older).toHaveLength(30);
      expect([...r.older].sort()).toEqual([...r.sent].sort());
      expect(r.newer).toEqual(r.sent);
      expect(r.one).toMatchObject({ id: r.sent[3] });
    });

    itSdk("Sailhouse's subscription event list pages by bytes and offset + limit continues it: every event once, in order (Sailhouse SDK)", async () => {
      const r = await runPythonSdk("sailhouse_paging.py", { baseUrl: app.url, args: { topic: "paged", subscription: "s1", events: 25, event_bytes: 600, limit: 100 } });
      expect(r.seen).toEqual(Array.from({ length: 25 }, (_, i) => i));
      expect(r.pages.length).toBeGreaterThan(3);
      // A cut page answers its own size as limit; the last page is short of the limit asked for.
      for (const p of r.pages.slice(0, -1)) expect(p.limit).toBe(p.events);
      expect(r.pages.at(-1)).toMatchObject({ limit: 100 });
      expect(r.pages.at(-1).events).toBeLessThan(100);
    });

    it("a topic's subscriptions page by bytes with page_token, over HTTP and RPC", async () => {
      const rpc = client(SailhouseService, app, "connect");
      const h = { headers: { "x-project-id": "pages" } };
      const slugs = Array.from({ length: 20 }, (_, i) => `sub-${String(i).padStart(2, "0")}-${"s".repeat(200)}`);
      for (const slug of slugs) await rpc.putSubscription({ topicSlug: "many", subscriptionSlug: slug, type: "pull" }, h);
      const viaRpc = await everyPage(async (pageToken) => {
        const r = await rpc.listSubscriptions({ topicSlug: "many", pageToken }, h);
        return { items: r.subscriptions.map((x) => x.slug), next: r.nextPageToken };
      });
      expect(viaRpc.items).toEqual(slugs);
      expect(viaRpc.pages).toBeGreaterThan(1);
      const viaHttp = await everyPage(async (token) => {
        const res = await fetch(`${app.url}/topics/many/subscriptions?limit=7${token ? `&page_token=${token}` : ""}`, { headers: P });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { subscriptions: { slug: string }[]; next_page_token: string };
        expect(body.subscriptions.length).toBeLessThanOrEqual(7);
        return { items: body.subscriptions.map((x) => x.slug), next: body.next_page_token };
      });
      expect(viaHttp.items).toEqual(slugs);
      const bad = await fetch(`${app.url}/topics/many/subscriptions?page_token=nope`, { headers: P });
      expect(bad.status).toBe(400);
    });

    it("ListApiKeys pages by bytes with page_token, oldest first", async () => {
      const admin = client(AdminService, app, "connect");
      const h = { headers: { authorization: "Bearer admin-secret" } };
      const made: string[] = [];
      for (let i = 0; i < 12; i++) made.push((await admin.createApiKey({ project: "keys-paged", name: `${i}-${"n".repeat(800)}` }, h)).id);
      const { items: got, pages } = await everyPage(async (pageToken) => {
        const r = await admin.listApiKeys({ project: "keys-paged", pageToken }, h);
        return { items: r.keys.map((k) => k.id), next: r.nextPageToken };
      });
      expect(pages).toBeGreaterThan(2);
      // Every key once (keys made in the same millisecond are ordered by id).
      expect(got).toHaveLength(12);
      expect([...got].sort()).toEqual([...made].sort());
      const two = await admin.listApiKeys({ project: "keys-paged", limit: 2 }, h);
      expect(two.keys.map((k) => k.id)).toEqual(got.slice(0, 2));
      const bad = await admin.listApiKeys({ pageToken: "!!" }, h).catch((e: unknown) => ConnectError.from(e));
      expect(bad).toMatchObject({ code: Code.InvalidArgument });
    });
  });
}
