/**
 * Idle and half-sent connections the other resource tests do not cover: an HTTP/1.1 keep-alive
 * connection left idle, and HTTP/2 request headers that never finish (HEADERS without
 * END_HEADERS, then nothing, or CONTINUATION frames trickled). Each is closed within its bound
 * while a normal request is answered within 1 s.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { stillServing } from "./support/raw.js";
import { FLAG, FRAME, PREFACE, h2Frame, hpack } from "./support/h2frames.js";

const REQUEST_TIMEOUT_MS = 600;
const IDLE_TIMEOUT_MS = 800;

function opened(app: App, onOpen: (s: net.Socket) => void): Promise<{ text: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(app.port, "127.0.0.1", () => onOpen(s));
    let text = "";
    s.on("data", (d: Buffer) => (text += d.toString("latin1")));
    s.on("error", () => {});
    s.on("close", () => resolve({ text, ms: Date.now() - t0 }));
  });
}

describe("idle and half-sent connections", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS) } });
  });
  afterAll(() => app?.close());

  it("closes an HTTP/1.1 keep-alive connection idle for IDLE_TIMEOUT_MS after its response", async () => {
    const closed = opened(app, (s) => s.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    expect(await stillServing(app)).toBeLessThan(1000);
    const { text, ms } = await closed;
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).toBeGreaterThanOrEqual(IDLE_TIMEOUT_MS - 100);
    expect(ms).toBeLessThan(IDLE_TIMEOUT_MS + 1500);
  });

  it("closes an HTTP/2 connection whose request headers never finish", async () => {
    const block = hpack([
      [":method", "GET"],
      [":scheme", "http"],
      [":authority", "127.0.0.1"],
      [":path", "/healthz"],
    ]);
    // HEADERS without END_HEADERS: the header block stays open, no stream ever starts.
    const stuck = opened(app, (s) => s.write(Buffer.concat([PREFACE, h2Frame(FRAME.SETTINGS, 0, 0), h2Frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, 5))])));
    // The same, with CONTINUATION frames trickled one byte at a time.
    let timer: NodeJS.Timeout | undefined;
    const trickled = opened(app, (s) => {
      s.write(Buffer.concat([PREFACE, h2Frame(FRAME.SETTINGS, 0, 0), h2Frame(FRAME.HEADERS, FLAG.END_STREAM, 1, block.subarray(0, 1))]));
      let i = 1;
      timer = setInterval(() => !s.destroyed && i < block.length - 1 && s.write(h2Frame(FRAME.CONTINUATION, 0, 1, block.subarray(i, ++i))), 100);
    });
    expect(await stillServing(app)).toBeLessThan(1000);
    const bound = Math.max(REQUEST_TIMEOUT_MS, IDLE_TIMEOUT_MS) + 2500;
    expect((await stuck).ms).toBeLessThan(bound);
    expect((await trickled).ms).toBeLessThan(bound);
    clearInterval(timer);
    expect(await stillServing(app)).toBeLessThan(1000);
  });
});
