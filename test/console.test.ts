/**
 * The operators' console end to end in headless Chromium (Debian's chromium, driven by
 * playwright-core), asserting what the page shows: the stream list (every kind, values, refreshed
 * by itself with rates, live readers and last activity, fitting its pane), Sailhouse backlogs,
 * compact virtualised rows (expand, copy, type search, jump to a time), TerminalUse content in its
 * API form, Durable Streams (JSON and bytes, live), publishing (its error cleared on switching
 * streams) and the API-key prompt. Screenshots: test-output/console-*.png.
 * CI installs chromium and sets REQUIRE_BROWSER=1, so there it cannot be skipped.
 */
import fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import type { App } from "../src/server/app.js";
import { postJson, startTestServer } from "./support/server.js";

// The page's globals inside evaluate() (functions sent to the page: they name globalThis, not closures
// of this file); the project compiles without lib "dom", so they are untyped here.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type PageGlobals = { document: any; navigator: any };

const CHROMIUM = "/usr/bin/chromium";
const available = fs.existsSync(CHROMIUM);
const required = process.env["REQUIRE_BROWSER"] === "1";
const H = { "X-Project-ID": "ops" };
const OUT = "test-output";

let app: App;
let browser: Browser;
let page: Page;
/** An instant between the two halves of the "bulk" topic. */
let between: Date;
let taskId: string;

const publish = async (topic: string, events: { event_type: string; data: unknown }[], target = app, headers: Record<string, string> = H) => {
  const r = await postJson(target, "/api/v1/events/publish", { topic, events }, headers);
  expect(r.status).toBe(200);
};
const ds = (name: string, init: RequestInit) => fetch(`${app.url}/v1/stream/${name}`, { ...init, headers: { ...H, ...(init.headers as Record<string, string>) } });
const cells = (key: string) => page.locator("#streams tbody tr", { has: page.locator("td.key", { hasText: new RegExp(`^${key}$`) }) }).locator("td");
const rowLines = () => page.locator("#events .row .line");
const screenshot = async (name: string) => {
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: `${OUT}/${name}.png` });
};

async function openStream(key: string): Promise<void> {
  await page.locator("#streams td.key", { hasText: new RegExp(`^${key}$`) }).click();
  await page.locator("#tail-title", { hasText: new RegExp(`/ ${key}$`) }).waitFor();
}

type DOMRectLike = { width: number; left: number; right: number };

/** Every column of the pane's table is inside the pane: nothing hidden, no sideways scrolling. */
async function tableFits(table: string): Promise<{ overflow: number; outside: string[] }> {
  return page.evaluate((sel) => {
    const t = (globalThis as unknown as PageGlobals).document.querySelector(sel);
    const pane = t.closest("section").getBoundingClientRect();
    const scroller = t.parentElement;
    const cells: { getBoundingClientRect(): DOMRectLike; textContent: string | null }[] = [...t.tHead.rows[0].cells];
    const outside = cells.filter((th) => {
      const r = th.getBoundingClientRect();
      return r.width < 20 || r.right > pane.right + 0.5 || r.left < pane.left - 0.5;
    });
    return { overflow: scroller.scrollWidth - scroller.clientWidth, outside: outside.map((th) => th.textContent ?? "") };
  }, table);
}

describe.skipIf(!available && !required)("console", () => {
  beforeAll(async () => {
    expect(available, `${CHROMIUM} (apt-get install chromium)`).toBe(true);
    app = await startTestServer();
    await publish("orders", [{ event_type: "demo", data: { n: 1 } }]);
    await publish("orders", [{ event_type: "other", data: { n: 2 } }]);
    await publish("bulk", Array.from({ length: 300 }, (_, i) => ({ event_type: i % 2 ? "tick" : "tock", data: { i, text: "x".repeat(80) } })));
    await new Promise((r) => setTimeout(r, 50));
    between = new Date();
    await new Promise((r) => setTimeout(r, 50));
    await publish("bulk", Array.from({ length: 300 }, (_, i) => ({ event_type: i % 2 ? "tick" : "tock", data: { i: 300 + i } })));
    taskId = (await postJson(app, "/tasks", { agent_name: "acme/helper" }, H)).json.id;
    expect((await postJson(app, `/tasks/${taskId}/events`, { content: { type: "text", text: "hello from the agent" } }, H)).status).toBeLessThan(300);
    expect((await ds("ds-json", { method: "PUT", headers: { "content-type": "application/json" } })).status).toBe(201);
    expect((await ds("ds-json", { method: "POST", headers: { "content-type": "application/json" }, body: '[{"a":1},{"b":"two"}]' })).status).toBeLessThan(300);
    expect((await ds("ds-bin", { method: "PUT", headers: { "content-type": "application/octet-stream" } })).status).toBe(201);
    expect((await ds("ds-bin", { method: "POST", headers: { "content-type": "application/octet-stream" }, body: new Uint8Array([0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, 0x01]) })).status).toBeLessThan(300);
    // Sailhouse: three events on "payments", one pulled and left unacked: all three pending.
    expect((await fetch(`${app.url}/topics/payments/subscriptions/billing`, { method: "PUT", headers: { ...H, "content-type": "application/json" }, body: JSON.stringify({ type: "pull" }) })).status).toBeLessThan(300);
    for (let i = 0; i < 3; i++) expect((await postJson(app, "/topics/payments/events", { data: { amount: i } }, H)).status).toBeLessThan(300);
    expect((await fetch(`${app.url}/topics/payments/subscriptions/billing/events/pull`, { headers: H })).status).toBe(200);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: app.url });
    page = await context.newPage();
    await page.goto(`${app.url}/?project=ops`);
    await cells("orders").first().waitFor();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await app?.close();
  });

  it("lists every stream kind with its values, and the table fits its pane at 1,400 and 1,000 px", async () => {
    expect(await cells("orders").allInnerTexts()).toEqual(["topic", "orders", "2", "2", expect.stringMatching(/^(–|0\/s)$/), "0", expect.stringMatching(/^(now|\d+ s)$/)]);
    expect((await cells("bulk").allInnerTexts()).slice(0, 4)).toEqual(["topic", "bulk", "600", "600"]);
    expect((await cells(taskId).allInnerTexts()).slice(0, 4)).toEqual(["task", taskId, "1", "1"]);
    expect((await cells("ds-json").allInnerTexts()).slice(0, 4)).toEqual(["durable", "ds-json", "2", "2"]);
    expect((await cells("ds-bin").allInnerTexts()).slice(0, 2)).toEqual(["durable", "ds-bin"]);
    // Last activity: its exact time in the title.
    expect(Date.parse((await cells("orders").nth(6).getAttribute("title"))!)).toBeGreaterThan(Date.now() - 60_000);
    expect(await tableFits("#streams")).toEqual({ overflow: 0, outside: [] });
    expect(await tableFits("#subs")).toEqual({ overflow: 0, outside: [] });
    await page.setViewportSize({ width: 1000, height: 700 });
    expect(await tableFits("#streams")).toEqual({ overflow: 0, outside: [] });
    expect(await tableFits("#subs")).toEqual({ overflow: 0, outside: [] });
    await page.setViewportSize({ width: 1400, height: 900 });
  });

  it("refreshes the list by itself: live readers, publish rate, last activity", async () => {
    await openStream("orders");
    // No button pressed: the next refresh shows this page's own subscription.
    await page.locator("#streams tbody tr.open td.subs", { hasText: /^1$/ }).waitFor({ timeout: 10_000 });
    await publish("ticker", [{ event_type: "t", data: 0 }]);
    await cells("ticker").first().waitFor({ timeout: 10_000 });
    // Two refreshes see it at 1; then 20 more: the rate between two refreshes is above zero.
    const seen = await page.locator("#updated").innerText();
    await page.locator("#updated", { hasNotText: seen }).waitFor({ timeout: 10_000 });
    await publish("ticker", Array.from({ length: 20 }, (_, i) => ({ event_type: "t", data: i + 1 })));
    await page.waitForFunction(() => {
      const rate: string | undefined = (globalThis as unknown as PageGlobals).document.querySelector('#streams tbody tr[data-key="ticker"] td.rate')?.textContent;
      return rate !== undefined && /^[\d.]+\/s$/.test(rate) && rate !== "0/s";
    }, undefined, { timeout: 10_000 });
    const ticker = await cells("ticker").allInnerTexts();
    expect(ticker[2]).toBe("21");
    expect(Number.parseFloat(ticker[4]!)).toBeGreaterThan(0);
    expect(ticker[6]).toMatch(/^(now|\d+ s)$/);
  });

  it("shows events as one-line rows, virtualised: 600 events are a few dozen elements", async () => {
    await openStream("bulk");
    await page.locator("#count", { hasText: "600 events · last #600" }).waitFor();
    const inDom = await page.locator("#events .row").count();
    expect(inDom).toBeGreaterThan(10);
    expect(inDom).toBeLessThan(80);
    // Following the tail: the last rows are in view; each is one 22 px line.
    await page.locator("#events .seq", { hasText: /^#600$/ }).waitFor();
    const heights = await rowLines().evaluateAll((els) => els.map((e) => e.getBoundingClientRect().height));
    expect(new Set(heights)).toEqual(new Set([22]));
    // Scrolled to the top, the first rows are drawn instead.
    await page.locator("#events").evaluate((el) => (el.scrollTop = 0));
    await page.locator("#events .seq", { hasText: /^#1$/ }).waitFor();
    expect(await page.locator("#events .row").count()).toBeLessThan(80);
    const first = await rowLines().first().locator("span").allInnerTexts();
    expect(first.slice(0, 2)).toEqual(["#1", "tock"]);
    expect(first[2]).toMatch(/^\d\d:\d\d:\d\d\.\d{3}$/);
    expect(first[3]).toBe(JSON.stringify({ i: 0, text: "x".repeat(80) }));
    await screenshot("console-1400");
  });

  it("searches by type and jumps to a time", async () => {
    await page.fill("#type-search", "tick");
    await page.locator("#count", { hasText: "300 of 600 events" }).waitFor();
    await page.locator("#events").evaluate((el) => (el.scrollTop = 0));
    await page.locator("#events .seq", { hasText: /^#2$/ }).waitFor();
    expect((await rowLines().locator(".type").allInnerTexts()).every((t) => t === "tick")).toBe(true);
    await page.fill("#type-search", "");
    await page.fill("#jump-time", between.toISOString());
    await page.click("#jump");
    await page.locator("#tail-info", { hasText: "after #300" }).waitFor();
    await page.locator("#count", { hasText: "300 events · last #600" }).waitFor();
    await page.locator("#events").evaluate((el) => (el.scrollTop = 0));
    await page.locator("#events .seq", { hasText: /^#301$/ }).waitFor();
    expect(await rowLines().first().locator(".seq").innerText()).toBe("#301");
  });

  it("expands a row on click and copies the event", async () => {
    await openStream("orders");
    await page.locator("#count", { hasText: "2 events" }).waitFor();
    await page.locator("#events .seq", { hasText: /^#2$/ }).waitFor();
    await rowLines().first().click();
    const pre = page.locator("#events .expanded pre");
    const shown = JSON.parse(await pre.innerText());
    expect(shown).toMatchObject({ sequence: 1, event_type: "demo", data: { n: 1 } });
    expect(Date.parse(shown.created_at)).toBeGreaterThan(0);
    await page.click("#events .expanded button.copy");
    await page.locator("#events .expanded button.copy", { hasText: "Copied" }).waitFor();
    expect(JSON.parse(await page.evaluate(() => (globalThis as unknown as PageGlobals).navigator.clipboard.readText() as Promise<string>))).toEqual(shown);
    // The expanded row pushes the next one down instead of covering it.
    const [a, b] = await page.locator("#events .row").evaluateAll((els) => els.map((e) => e.getBoundingClientRect()));
    expect(b!.top).toBeGreaterThanOrEqual(a!.bottom - 1);
    // Type search narrows to one.
    await page.fill("#type-search", "oth");
    await page.locator("#count", { hasText: "1 of 2 events" }).waitFor();
    expect(await rowLines().locator(".seq").allInnerTexts()).toEqual(["#2"]);
    await page.fill("#type-search", "");
  });

  it("pauses and resumes without missing or repeating events", async () => {
    await page.click("#pause");
    await page.locator("#pause", { hasText: "Resume" }).waitFor();
    await publish("orders", [{ event_type: "while-paused", data: { n: 3 } }]);
    await page.waitForTimeout(300);
    expect(await page.locator("#count").innerText()).toMatch(/^2 events/);
    await page.click("#pause");
    await page.locator("#count", { hasText: "3 events · last #3" }).waitFor();
    await page.locator("#events .seq", { hasText: /^#3$/ }).waitFor();
    expect(await rowLines().locator(".seq").allInnerTexts()).toEqual(["#1", "#2", "#3"]);
  });

  it("shows TerminalUse content in its API form, not the protobuf form", async () => {
    await openStream(taskId);
    await page.locator("#count", { hasText: "1 event ·" }).waitFor();
    await page.locator("#events .seq", { hasText: /^#1$/ }).waitFor();
    expect(await rowLines().first().locator(".preview").innerText()).toBe('{"type":"text","text":"hello from the agent"}');
    await rowLines().first().click();
    expect(JSON.parse(await page.locator("#events .expanded pre").innerText()).content).toEqual({ type: "text", text: "hello from the agent" });
    expect(await page.locator("#events").innerText()).not.toContain('{"text":{"text"');
  });

  it("opens Durable Streams: JSON messages and bytes, live", async () => {
    await openStream("ds-json");
    await page.locator("#tail-info", { hasText: "application/json" }).waitFor();
    await page.locator("#count", { hasText: "2 events" }).waitFor();
    await page.locator("#events .seq", { hasText: /^#2$/ }).waitFor();
    expect(await rowLines().evaluateAll((ls) => ls.map((l) => [...l.children].map((c) => c.textContent)))).toEqual([
      ["#1", "json", "", '{"a":1}'],
      ["#2", "json", "", '{"b":"two"}'],
    ]);
    // Live: an append through the protocol, then one from the console's form.
    await ds("ds-json", { method: "POST", headers: { "content-type": "application/json" }, body: '{"live":true}' });
    await page.locator("#events .preview", { hasText: '{"live":true}' }).waitFor();
    await page.fill("#pub-data", '{"from":"console"}');
    await page.click("#publish button");
    await page.locator("#pub-result", { hasText: /^appended; next offset \d+_\d+$/ }).waitFor();
    await page.locator("#events .preview", { hasText: '{"from":"console"}' }).waitFor();
    expect(await page.locator("#count").innerText()).toMatch(/^4 events · next offset \d+_\d+$/);

    await openStream("ds-bin");
    await page.locator("#tail-info", { hasText: "application/octet-stream" }).waitFor();
    await page.locator("#count", { hasText: "1 event ·" }).waitFor();
    await page.locator("#events .type", { hasText: "bytes" }).waitFor();
    expect(await rowLines().first().locator("span").allInnerTexts()).toEqual(["#1", "bytes", "", "7 bytes: 68 65 6c 6c 6f 00 01"]);
    await rowLines().first().click();
    const detail = await page.locator("#events .expanded pre").innerText();
    expect(detail).toContain("00000000  68 65 6c 6c 6f 00 01");
    expect(detail).toContain("|hello..|");
    await screenshot("console-durable");
  });

  it("clears a publish error when another stream is opened", async () => {
    await openStream("orders");
    await page.fill("#pub-data", "{not json");
    await page.click("#publish button");
    await page.locator("#pub-result.error", { hasText: /^failed: / }).waitFor();
    await openStream("bulk");
    expect(await page.locator("#pub-result").innerText()).toBe("");
    await page.fill("#pub-data", '{"clicked": true}');
    await page.fill("#pub-type", "from-ui");
    await page.click("#publish button");
    await page.locator("#pub-result", { hasText: "stored as #601" }).waitFor();
  });

  it("shows Sailhouse subscriptions with pending counts and lag", async () => {
    const row = page.locator("#subs tbody tr", { hasText: "payments / billing" });
    await row.waitFor();
    const texts = await row.locator("td").allInnerTexts();
    expect(texts.slice(0, 3)).toEqual(["payments / billing", "pull", "3"]);
    expect(texts[3]).toMatch(/^(now|\d+ s)$/);
    expect(await row.locator("td.lag").getAttribute("title")).toMatch(/^oldest pending event appended \d{4}-\d\d-\d\dT/);
    // Acked: two left.
    const pulled = (await (await fetch(`${app.url}/topics/payments/subscriptions/billing/events/pull`, { headers: H })).json()) as { id: string };
    expect((await postJson(app, `/topics/payments/subscriptions/billing/events/${pulled.id}`, {}, H)).status).toBeLessThan(300);
    await page.locator("#subs tbody tr td.pending", { hasText: /^2$/ }).waitFor({ timeout: 10_000 });
    await page.setViewportSize({ width: 1000, height: 700 });
    await openStream("orders");
    await page.locator("#count", { hasText: "3 events" }).waitFor();
    await screenshot("console-1000");
    await page.setViewportSize({ width: 1400, height: 900 });
  });

  it("asks for an API key on 401 and keeps it in localStorage", async () => {
    const secured = await startTestServer({ env: { AUTH: "required", API_KEYS: "ops:key-ops" } });
    try {
      await publish("guarded", [{ event_type: "x", data: 1 }], secured, { authorization: "Bearer key-ops" });
      const p = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      await p.goto(`${secured.url}/`);
      const dialog = p.locator("dialog#auth");
      await dialog.waitFor();
      expect(await p.locator("#auth-reason").innerText()).toMatch(/^The service answered 401/);
      await p.screenshot({ path: `${OUT}/console-auth.png` });
      await p.fill("#auth-key", "key-ops");
      await p.click("#auth-save");
      await p.locator("#streams td.key", { hasText: /^guarded$/ }).waitFor();
      expect(await p.evaluate(() => localStorage.getItem("agent-events.key"))).toBe("key-ops");
      await p.reload();
      await p.locator("#streams td.key", { hasText: /^guarded$/ }).waitFor();
      expect(await dialog.isVisible()).toBe(false);
      await p.close();
    } finally {
      await secured.close();
    }
  });
});
