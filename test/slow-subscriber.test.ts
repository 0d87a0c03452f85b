/**
 * A subscriber that stops reading is paused, not buffered for: the server stops taking its events
 * from the log once the connection's flow-control window and socket buffers are full, and when the
 * subscriber reads again it continues from where it was (from the store), missing nothing.
 */
import http from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createParser } from "eventsource-parser";
import type { App } from "../src/server/app.js";
import { postJson, startTestServer } from "./support/server.js";

let app: App;
beforeAll(async () => {
  app = await startTestServer();
});
afterAll(async () => app?.close());

const delivered = async (): Promise<number> => Number(/^events_delivered_total (\d+)$/m.exec(await (await fetch(`${app.url}/metrics`)).text())?.[1] ?? 0);

it("pauses a subscriber that does not read and resumes it without loss", async () => {
  const TOTAL = 40_000;
  const pad = "x".repeat(1000);
  const { port } = new URL(app.url);
  let res!: http.IncomingMessage;
  await new Promise<void>((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path: "/api/v1/events/stream?topic=slow&project_id=p&last_sequence_id=0", headers: { accept: "text/event-stream" } }, (r) => {
        res = r;
        r.pause(); // the subscriber stops reading at once
        resolve();
      })
      .on("error", reject);
  });
  for (let i = 0; i < TOTAL; i += 500) {
    const r = await postJson(app, "/api/v1/events/publish", { topic: "slow", events: Array.from({ length: 500 }, (_, k) => ({ data: { n: i + k, pad } })) }, { "X-Project-ID": "p" });
    expect(r.status).toBe(200);
  }
  await new Promise((r) => setTimeout(r, 300));
  // ~40 MB published; the stalled subscriber took only what fits in the buffers between us.
  const whileStalled = await delivered();
  console.log(`stalled subscriber: ${whileStalled} of ${TOTAL} events taken from the log`);
  // Bounded by flow control and socket buffers (a few MB on loopback), not by what was published.
  expect(whileStalled).toBeLessThan(TOTAL / 2);

  // Reading again: everything arrives, once, in order.
  const seqs: number[] = [];
  const parser = createParser({ onEvent: (m) => m.id && seqs.push(Number(m.id)) });
  res.setEncoding("utf8");
  res.on("data", (chunk: string) => parser.feed(chunk));
  res.resume();
  const deadline = Date.now() + 30_000;
  while (seqs.length < TOTAL && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  res.destroy();
  expect(seqs.length).toBe(TOTAL);
  expect(seqs.every((s, i) => s === i + 1)).toBe(true);
  expect(await delivered()).toBeGreaterThanOrEqual(TOTAL);
}, 60_000);
