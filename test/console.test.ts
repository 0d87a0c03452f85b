/**
 * The web console end to end in headless Chromium (Debian's chromium, driven by playwright-core):
 * open a stream, publish through the API, see the event appear within a second, publish from the
 * console's form, pause and resume without losing events. Screenshot: test-output/console.png.
 * CI installs chromium and sets REQUIRE_BROWSER=1, so there it cannot be skipped.
 */
import fs from "node:fs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { chromium, type Browser } from "playwright-core";
import type { App } from "../src/server/app.js";
import { postJson, startTestServer } from "./support/server.js";

const CHROMIUM = "/usr/bin/chromium";
const available = fs.existsSync(CHROMIUM);
const required = process.env["REQUIRE_BROWSER"] === "1";

let app: App;
let browser: Browser | undefined;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(async () => {
  await browser?.close();
  await app?.close();
});

const publish = (data: unknown, type = "demo") => postJson(app, "/api/v1/events/publish", { topic: "ui-demo", events: [{ event_type: type, data }] }, { "X-Project-ID": "ui" });

it.skipIf(!available && !required)("lists streams, live-tails one, publishes, pauses and resumes", async () => {
  expect(available, `${CHROMIUM} (apt-get install chromium)`).toBe(true);
  await publish({ n: 1 });
  await publish({ n: 2 }, "other");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  await page.goto(`${app.url}/?project=ui&kind=topic&key=ui-demo`);
  // The streams table lists the topic with its last sequence and count.
  await page.locator("#streams tbody tr", { hasText: "ui-demo" }).waitFor();
  expect(await page.locator("#streams tbody tr").first().innerText()).toMatch(/topic\s+ui-demo\s+2\s+2/);
  // Catch-up: both events, pretty-printed.
  await page.locator("#events li").nth(1).waitFor();
  expect(await page.locator("#events li pre").first().innerText()).toBe(JSON.stringify({ n: 1 }, null, 2));
  // Live: an event published through the API shows up within a second.
  const t0 = Date.now();
  await publish({ n: 3, live: true });
  await page.locator("#events li", { hasText: '"live": true' }).waitFor({ timeout: 1000 });
  const liveMs = Date.now() - t0;
  expect(liveMs).toBeLessThan(1000);
  // Publish from the console's own form.
  await page.fill("#pub-type", "from-ui");
  await page.fill("#pub-data", '{"clicked": true}');
  await page.click("#publish button");
  await page.locator("#pub-result", { hasText: "stored as #4" }).waitFor();
  await page.locator("#events li", { hasText: "from-ui" }).waitFor();
  // Pause: events published meanwhile appear after resuming, once, in order.
  await page.click("#pause");
  await publish({ n: 5 });
  await page.waitForTimeout(300);
  expect(await page.locator("#events li").count()).toBe(4);
  await page.click("#pause");
  await page.locator("#events li").nth(4).waitFor();
  expect(await page.locator("#events li").evaluateAll((lis) => lis.map((li) => (li as unknown as { dataset: Record<string, string> }).dataset["sequence"]))).toEqual(["1", "2", "3", "4", "5"]);
  // Filter by event type, from the start.
  await page.fill("#type-filter", "other");
  await page.fill("#from", "0");
  await page.click("#open");
  await page.locator("#events li").first().waitFor();
  await page.waitForTimeout(200);
  expect(await page.locator("#events li .meta").allInnerTexts()).toEqual([expect.stringMatching(/^#2 other/)]);
  fs.mkdirSync("test-output", { recursive: true });
  await page.screenshot({ path: "test-output/console.png", fullPage: true });
  console.log(`console screenshot: test-output/console.png (live event shown after ${liveMs} ms)`);
}, 60_000);
