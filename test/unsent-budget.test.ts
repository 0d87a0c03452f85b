/**
 * One instance-wide budget for bytes queued to clients (MAX_UNSENT_BYTES): clients that take
 * nothing (HTTP/2 with a flow-control window of zero) asking many times for a large Durable
 * Streams catch-up once grew the process by ~470 MB; now the instance's unsent bytes stay within
 * the budget, the slowest readers are cut (reset, never ended as if complete), and everyone else
 * is served. Both stores (the catch-up is read from each).
 */
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";
import { eventually, metricValue, stillServing } from "./support/raw.js";

/**
 * The probe's sizes (a 3.9 MB catch-up) on the memory store; a tenth of them on the MongoDB test
 * server, which serves 128 concurrent multi-megabyte reads slowly (the budget is scaled with them).
 */
const SIZES: Record<string, { part: number; budget: number }> = {
  memory: { part: 975_000, budget: 16 * 1024 * 1024 },
  mongo: { part: 97_500, budget: 2 * 1024 * 1024 },
};

const unsent = (app: App) => metricValue(app, "unsent_bytes");
const cutForBudget = (app: App) => metricValue(app, 'responses_cut_total{reason="budget"}');

for (const factory of storeFactories) {
  describe(`the unsent-bytes budget on the ${factory.name} store`, () => {
    let app: App;
    const { part, budget: BUDGET } = SIZES[factory.name]!;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { MAX_UNSENT_BYTES: String(BUDGET), DURABLE_READ_MAX_BYTES: String(part + 1024), SUBSCRIBER_STALL_TIMEOUT_MS: "0" } });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("keeps the bytes queued to clients that take nothing within MAX_UNSENT_BYTES, cutting the slowest, and serves others", async () => {
      const H = { "x-project-id": "acme" };
      expect((await fetch(`${app.url}/v1/stream/big`, { method: "PUT", headers: { ...H, "content-type": "application/octet-stream" } })).status).toBe(201);
      // Four appends (3.9 MB on the memory store): a catch-up read is four pages, streamed.
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${app.url}/v1/stream/big`, { method: "POST", headers: { ...H, "content-type": "application/octet-stream" }, body: Buffer.alloc(part, 97 + i) });
        expect(res.status).toBe(204);
      }
      // Two connections that take nothing (window 0), asking 64 times each.
      const hogs = [0, 1].map(() => {
        const s = http2.connect(app.url, { settings: { initialWindowSize: 0 } });
        s.on("error", () => {});
        return s;
      });
      const outcomes: Promise<{ status: number; rst: number }>[] = [];
      for (const s of hogs) {
        for (let i = 0; i < 64; i++) {
          const req = s.request({ ":path": "/v1/stream/big?offset=-1", "x-project-id": "acme" });
          req.on("error", () => {});
          let status = 0;
          req.on("response", (h) => (status = Number(h[":status"])));
          outcomes.push(new Promise((resolve) => req.on("close", () => resolve({ status, rst: req.rstCode ?? 0 }))));
        }
      }
      // While they hold their responses, the instance's unsent bytes never pass the budget, and some are cut for it.
      let most = 0;
      await eventually(async () => {
        most = Math.max(most, await unsent(app));
        return (await cutForBudget(app)) > 0;
      }, 60_000, "a reader cut for the budget"); // a wait, not a bound: 128 catch-ups are slow on a busy machine
      for (let i = 0; i < 10; i++) {
        most = Math.max(most, await unsent(app));
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(most).toBeLessThanOrEqual(BUDGET);
      expect(most).toBeGreaterThan(0);
      // A well-behaved client is served meanwhile (within a client's 5 s timeout, as issue 18
      // asks), a catch-up read included, whole.
      expect(await stillServing(app, 5000)).toBeLessThan(5000);
      const whole = await fetch(`${app.url}/v1/stream/big?offset=-1`, { headers: H });
      expect(whole.status).toBe(200);
      expect((await whole.arrayBuffer()).byteLength).toBe(4 * part);
      // The cut responses were reset (ENHANCE_YOUR_CALM), never ended as if complete.
      for (const s of hogs) s.destroy();
      const ended = await Promise.all(outcomes);
      const cut = await cutForBudget(app);
      expect(cut).toBeGreaterThan(0);
      expect(ended.filter((o) => o.rst === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM).length).toBeGreaterThan(0);
      // Everything held for them is let go.
      await eventually(async () => (await unsent(app)) === 0, 30_000, "unsent bytes given back");
      console.log(`[budget ${factory.name}] most unsent ${most} bytes of ${BUDGET}; ${cut} responses cut for the budget of 128 asked`);
    });
  });
}
