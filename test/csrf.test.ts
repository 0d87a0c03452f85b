/**
 * Cross-site requests: what a page on another site can make a browser send (forms, text/plain
 * POSTs, with the user's cookies) is refused on the JSON paths; header credentials and non-browser
 * clients are unaffected.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";

const body = (n: number) => JSON.stringify({ topic: "csrf", events: [{ data: { n } }] });

async function send(app: App, headers: Record<string, string>, n: number, method = "POST") {
  const res = await fetch(`${app.url}/api/v1/events/publish`, { method, headers: { "x-project-id": "acme", ...headers }, body: body(n) });
  return { status: res.status, json: (await res.json()) as { error?: string; sequence_ids?: number[] } };
}

async function stored(app: App, auth: Record<string, string>): Promise<unknown[]> {
  const res = await fetch(`${app.url}/api/v1/events?topic=csrf&project_id=acme`, { headers: auth });
  return ((await res.json()) as { events: { data: unknown }[] }).events.map((e) => e.data);
}

describe("cross-site requests with API keys", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { AUTH: "required", API_KEYS: "acme:key-acme" } });
  });
  afterAll(() => app?.close());

  it("accepts a cookie alone only with JSON and a same-origin (or absent) Origin", async () => {
    const cookie = { cookie: "polos_auth=key-acme" };
    const evil = { origin: "https://evil.example" };
    const refused = [
      await send(app, { ...cookie, "content-type": "text/plain" }, 1),
      await send(app, { ...cookie, "content-type": "application/x-www-form-urlencoded" }, 2),
      await send(app, { ...cookie }, 3),
      await send(app, { ...cookie, "content-type": "application/json", ...evil }, 4),
      await send(app, { ...cookie, "content-type": "application/json", origin: "null" }, 5),
      await send(app, { ...cookie, "content-type": "text/plain", origin: app.url }, 6),
    ];
    for (const r of refused) {
      expect(r.status).toBe(403);
      expect(r.json.error).toMatch(/cross-site request refused/);
    }
    expect((await send(app, { ...cookie, "content-type": "application/json" }, 7)).status).toBe(200);
    expect((await send(app, { ...cookie, "content-type": "application/json", origin: app.url }, 8)).status).toBe(200);
    // Reads by cookie from another site are refused too; same-site reads work.
    expect((await fetch(`${app.url}/api/v1/events?topic=csrf&project_id=acme`, { headers: { ...cookie, ...evil } })).status).toBe(403);
    // Header credentials are unaffected, whatever the Origin and content type.
    expect((await send(app, { authorization: "Bearer key-acme", "content-type": "text/plain", ...evil }, 9)).status).toBe(200);
    expect(await stored(app, cookie)).toEqual([{ n: 7 }, { n: 8 }, { n: 9 }]);
  });
});

describe("cross-site requests with auth off", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer();
  });
  afterAll(() => app?.close());

  it("refuses the bodies another site's page can send without preflight; clients without an Origin are unaffected", async () => {
    const evil = { origin: "http://evil.example" };
    expect((await send(app, { "content-type": "text/plain", ...evil }, 1)).status).toBe(403);
    expect((await send(app, { "content-type": "application/x-www-form-urlencoded", ...evil }, 2)).status).toBe(403);
    // A cross-site JSON request is preflighted by browsers (and these paths grant no CORS).
    expect((await send(app, { "content-type": "application/json", ...evil }, 3)).status).toBe(200);
    // curl and SDKs send no Origin: any content type, as before.
    expect((await send(app, { "content-type": "application/x-www-form-urlencoded" }, 4)).status).toBe(200);
    expect((await send(app, {}, 5)).status).toBe(200);
    expect(await stored(app, {})).toEqual([{ n: 3 }, { n: 4 }, { n: 5 }]);
  });
});
