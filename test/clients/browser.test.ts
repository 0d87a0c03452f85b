/**
 * A web page on another origin using `@durable-streams/client` 0.2.7 in headless Chromium (Debian's
 * /usr/bin/chromium driven by playwright-core; CI installs it and sets REQUIRE_BROWSER=1), against
 * this service with the operator's CORS setting naming the page's origin (`CORS_ORIGINS`) on both
 * stores, and against the reference server (which allows every origin): the page creates a stream,
 * appends, reads it back, and follows it live over SSE and long-poll while the test appends. On
 * this service a page from an origin the setting does not name is refused by the browser: its
 * preflight answers 204 without Access-Control-Allow-Origin (issue 18's CORS rule).
 * The pages are served from names that are not loopback (`app.example`, `other.example`, mapped to
 * 127.0.0.1 inside Chromium only), so neither is allowed by the default (loopback origins) and
 * the allowed one is allowed by CORS_ORIGINS alone; the service itself is called on 127.0.0.1.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import { startTarget, targets, uniqueName, type ClientTarget } from "./targets.js";
import { serveFetch, type AppServer } from "./app-server.js";

const CHROMIUM = "/usr/bin/chromium";
const available = fs.existsSync(CHROMIUM);
const required = process.env["REQUIRE_BROWSER"] === "1";
/** The client's ES module build (require.resolve finds its CommonJS twin beside it). */
const clientJs = fs.readFileSync(createRequire(import.meta.url).resolve("@durable-streams/client").replace(/index\.cjs$/, "index.js"), "utf8");

interface Site {
  server: AppServer;
  /** The page's origin as the browser sees it: `http://<name>.example:<port>`. */
  origin: string;
}

/** An app's origin: serves a page that loads the client module (as `ds`) and the module. */
async function appOrigin(name: string): Promise<Site> {
  const server = await serveFetch(async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/client.js") return new Response(clientJs, { headers: { "content-type": "text/javascript" } });
    const html = `<!doctype html><title>app</title><script type="module">import * as ds from "/client.js"; globalThis.ds = ds;</script>`;
    return new Response(html, { headers: { "content-type": "text/html" } });
  });
  return { server, origin: `http://${name}.example:${new URL(server.url).port}` };
}

let browser: Browser | undefined;
let allowed: Site;
let other: Site;
beforeAll(async () => {
  [allowed, other] = await Promise.all([appOrigin("app"), appOrigin("other")]);
  if (available) {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP *.example 127.0.0.1"],
    });
  }
});
afterAll(async () => {
  await browser?.close();
  await allowed?.server.close();
  await other?.server.close();
});

async function openPage(site: Site): Promise<Page> {
  const page = await browser!.newPage();
  await page.goto(`${site.origin}/`);
  await page.waitForFunction(() => "ds" in globalThis);
  return page;
}

describe.each(targets)("a page on another origin with @durable-streams/client, $name", ({ name }) => {
  let target: ClientTarget;
  beforeAll(async () => {
    target = await startTarget(name, { env: { CORS_ORIGINS: allowed.origin } });
  });
  afterAll(async () => {
    await target?.stop();
  });

  it.skipIf(!available && !required)("creates, appends, reads back and follows live (SSE and long-poll) across origins", async () => {
    expect(available, `${CHROMIUM} (apt-get install chromium)`).toBe(true);
    const url = `${target.url}/v1/stream/${uniqueName("browser")}`;
    const page = await openPage(allowed);
    try {
      const written = await page.evaluate(async (url) => {
        const w = globalThis as unknown as Record<string, unknown[]> & { location: { origin: string }; ds: typeof import("@durable-streams/client") };
        const { DurableStream } = w.ds;
        const handle = await DurableStream.create({ url, contentType: "application/json" });
        for (let i = 0; i < 5; i++) await handle.append(JSON.stringify({ i, from: w.location.origin }));
        const back = await (await handle.stream({ offset: "-1", live: false })).json();
        for (const live of ["sse", "long-poll"]) {
          w[live] = [];
          const res = await handle.stream({ offset: "-1", live: live as "sse" | "long-poll" });
          res.subscribeJson((batch) => {
            w[live]!.push(...batch.items);
          });
        }
        return back;
      }, url);
      expect(written).toEqual(Array.from({ length: 5 }, (_, i) => ({ i, from: allowed.origin })));
      const more = Array.from({ length: 5 }, (_, k) => ({ i: 5 + k, from: "test" }));
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(more) });
      expect(res.ok).toBe(true);
      for (const live of ["sse", "long-poll"]) {
        let seen: { i: number }[] = [];
        for (let k = 0; k < 300 && seen.length < 10; k++) {
          seen = await page.evaluate((live) => (globalThis as unknown as Record<string, { i: number }[]>)[live]!, live);
          if (seen.length < 10) await new Promise((r) => setTimeout(r, 50));
        }
        expect(seen.map((m) => m.i)).toEqual(Array.from({ length: 10 }, (_, i) => i));
      }
    } finally {
      await page.close();
    }
  });

  it.skipIf((!available && !required) || name === "reference")("a page on an origin CORS_ORIGINS does not name cannot read or write", async () => {
    expect(available, `${CHROMIUM} (apt-get install chromium)`).toBe(true);
    const url = `${target.url}/v1/stream/${uniqueName("browser-denied")}`;
    expect((await fetch(url, { method: "PUT", headers: { "content-type": "application/json" } })).status).toBe(201);
    const page = await openPage(other);
    try {
      const outcome = await page.evaluate(async (url) => {
        const attempt = async (init?: RequestInit): Promise<string> =>
          fetch(url + (init ? "" : "?offset=-1"), init).then(
            (r) => `answered ${r.status}`,
            (e: unknown) => `refused: ${(e as Error).name}`,
          );
        return { read: await attempt(), write: await attempt({ method: "POST", headers: { "content-type": "application/json" }, body: "[1]" }) };
      }, url);
      expect(outcome).toEqual({ read: "refused: TypeError", write: "refused: TypeError" });
      // What the browser was told: its preflight answered 204 without Access-Control-Allow-Origin.
      const preflight = await fetch(url, { method: "OPTIONS", headers: { origin: other.origin, "access-control-request-method": "POST", "access-control-request-headers": "content-type" } });
      expect([preflight.status, preflight.headers.get("access-control-allow-origin")]).toEqual([204, null]);
      // Refused by the browser before the write reached the stream (the preflight failed).
      expect(await (await fetch(`${url}?offset=-1`)).json()).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
