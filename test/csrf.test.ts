/**
 * Cross-site requests: what a page on another site can make a browser send (forms, text/plain
 * POSTs, with the user's cookies) is refused on the JSON paths; header credentials and non-browser
 * clients are unaffected.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { rawHttp } from "./support/raw.js";
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

  it("refuses every request from another site's page; loopback pages and clients without an Origin are unaffected", async () => {
    const evil = { origin: "http://evil.example" };
    expect((await send(app, { "content-type": "text/plain", ...evil }, 1)).status).toBe(403);
    expect((await send(app, { "content-type": "application/x-www-form-urlencoded", ...evil }, 2)).status).toBe(403);
    // Not listed in CORS_ORIGINS: refused whatever it sends (its preflight gets no Access-Control-Allow-Origin either).
    expect((await send(app, { "content-type": "application/json", ...evil }, 0)).status).toBe(403);
    // A page on a loopback origin (a local AI app) is listed by default.
    expect((await send(app, { "content-type": "application/json", origin: "http://localhost:3000" }, 3)).status).toBe(200);
    // curl and SDKs send no Origin: any content type, as before.
    expect((await send(app, { "content-type": "application/x-www-form-urlencoded" }, 4)).status).toBe(200);
    expect((await send(app, {}, 5)).status).toBe(200);
    expect(await stored(app, {})).toEqual([{ n: 3 }, { n: 4 }, { n: 5 }]);
  });
});

describe("one cross-site and CORS rule on every surface", () => {
  let on: App;
  let off: App;
  beforeAll(async () => {
    on = await startTestServer({ env: { AUTH: "required", API_KEYS: "acme:key-acme" } });
    off = await startTestServer();
  });
  afterAll(async () => {
    await on?.close();
    await off?.close();
  });

  it("refuses a cookie-only cross-site write to a Durable Stream; nothing is stored", async () => {
    const created = await fetch(`${on.url}/v1/stream/csrf-ds`, { method: "PUT", headers: { authorization: "Bearer key-acme", "content-type": "text/plain" } });
    expect(created.status).toBe(201);
    const attack = await fetch(`${on.url}/v1/stream/csrf-ds`, { method: "POST", headers: { cookie: "polos_auth=key-acme", "content-type": "text/plain", origin: "http://evil.example" }, body: "stolen" });
    expect(attack.status).toBe(403);
    expect(await attack.text()).toMatch(/cross-site request refused/);
    // Same origin, but a form-like content type: still a cookie-only write a page could forge.
    const forged = await fetch(`${on.url}/v1/stream/csrf-ds`, { method: "POST", headers: { cookie: "polos_auth=key-acme", "content-type": "text/plain" }, body: "forged" });
    expect(forged.status).toBe(403);
    const read = await fetch(`${on.url}/v1/stream/csrf-ds?offset=-1`, { headers: { authorization: "Bearer key-acme" } });
    expect(await read.text()).toBe("");
  });

  it("grants CORS to listed (loopback) origins and, with keys, to a page that sends one; other origins learn nothing", async () => {
    const preflight = (app: App, origin: string, headers = "content-type") =>
      fetch(`${app.url}/v1/log/topic/orders`, { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": headers } });
    const evil = await preflight(off, "http://evil.example");
    expect(evil.status).toBe(204);
    expect(evil.headers.get("access-control-allow-origin")).toBeNull();
    const local = await preflight(off, "http://localhost:5173");
    expect(local.headers.get("access-control-allow-origin")).toBe("http://localhost:5173");
    // With keys: a page asking to send Authorization may; its request then needs a valid key.
    const keyed = await preflight(on, "https://app.example", "authorization, content-type");
    expect(keyed.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const write = await fetch(`${on.url}/api/v1/events/publish`, { method: "POST", headers: { origin: "https://app.example", authorization: "Bearer key-acme", "content-type": "application/json" }, body: JSON.stringify({ topic: "cors", events: [{ data: 1 }] }) });
    expect(write.status).toBe(200);
    expect(write.headers.get("access-control-allow-origin")).toBe("https://app.example");
    // Auth off: a foreign page can neither write nor read a topic.
    const drive = await fetch(`${off.url}/v1/log/topic/orders`, { method: "POST", headers: { origin: "http://evil.example", "content-type": "application/json" }, body: JSON.stringify({ type: "x", data: 1 }) });
    expect(drive.status).toBe(403);
    const peek = await fetch(`${off.url}/api/v1/events?topic=orders`, { headers: { origin: "http://evil.example" } });
    expect(peek.status).toBe(403);
  });

  it("with auth off, answers only loopback Host names (DNS rebinding)", async () => {
    const { port } = new URL(off.url);
    const res = await rawHttp(off, `GET /api/v1/events?topic=orders HTTP/1.1\r\nHost: rebind.evil.example:${port}\r\nConnection: close\r\n\r\n`);
    expect(res.status).toBe(403);
    expect(res.text).toMatch(/DNS rebinding/);
    expect((await fetch(`${off.url}/healthz`)).status).toBe(200);
  });
});
