/**
 * Responses are bounded in bytes (RESPONSE_BATCH_BYTES, here 64 KiB): listed pages and Subscribe
 * batches stop before the event that would pass the budget, an event larger than the budget comes
 * alone, and following the pages or the stream still yields every event once, in order.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventView, StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, getJson, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const BUDGET = 64 * 1024;

for (const factory of storeFactories) {
  describe(`responses bounded in bytes (${factory.name} store)`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { RESPONSE_BATCH_BYTES: String(BUDGET) } });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("pages, Subscribe batches and SSE stay within the budget; a larger event travels alone", async () => {
      const topic = `bytes-${Date.now()}`;
      // 30 events of ~20 KB, one of ~150 KB (over the budget), 30 more.
      const sizes = [...Array(30).fill(20_000), 150_000, ...Array(30).fill(20_000)] as number[];
      for (let i = 0; i < sizes.length; i += 10) {
        const r = await postJson(app, "/api/v1/events/publish", { topic, events: sizes.slice(i, i + 10).map((n, k) => ({ event_type: "e", data: { i: i + k, pad: "x".repeat(n) } })) }, { "X-Project-ID": "b" });
        expect(r.status).toBe(200);
      }
      // Pages of GET /api/v1/events?limit=1000: each within the budget (or one event), together all of them.
      const seen: number[] = [];
      let cursor = 0;
      for (let pages = 0; pages < 100; pages++) {
        const res = await fetch(`${app.url}/api/v1/events?topic=${topic}&limit=1000&last_sequence_id=${cursor}&project_id=b`);
        const text = await res.text();
        expect(res.status).toBe(200);
        const page = JSON.parse(text) as { events: { sequence_id: number; data: { i: number } }[]; next_sequence_id: number; has_more: boolean };
        expect(page.events.length === 1 || text.length <= BUDGET + 4096, `page of ${page.events.length} events, ${text.length} bytes`).toBe(true);
        seen.push(...page.events.map((e) => e.data.i));
        cursor = page.next_sequence_id;
        if (!page.has_more) break;
      }
      expect(seen).toEqual(sizes.map((_, i) => i));

      // Subscribe (binary, full view): every response within the budget unless it holds one event.
      const abort = new AbortController();
      const got: number[] = [];
      for await (const r of client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: topic } }, { headers: { "x-project-id": "b" }, signal: abort.signal })) {
        const bytes = r.events.reduce((n, e) => n + JSON.stringify(e.data).length, 0);
        expect(r.events.length <= 1 || bytes <= BUDGET, `batch of ${r.events.length} events, ${bytes} bytes`).toBe(true);
        got.push(...r.events.map((e) => Number(e.sequence)));
        if (got.length >= sizes.length) break;
      }
      abort.abort();
      expect(got).toEqual(sizes.map((_, i) => i + 1));

      // Compact view and Polos SSE: all of them, in order.
      const compact: number[] = [];
      const abort2 = new AbortController();
      for await (const r of client(StreamService, app, "connect").subscribe({ stream: { kind: StreamKind.TOPIC, key: topic }, view: EventView.COMPACT }, { headers: { "x-project-id": "b" }, signal: abort2.signal })) {
        compact.push(...r.compactEvents.map((e) => Number(e.sequence)));
        if (compact.length >= sizes.length) break;
      }
      abort2.abort();
      expect(compact).toEqual(sizes.map((_, i) => i + 1));
      const sse = new SseReader(`${app.url}/api/v1/events/stream?topic=${topic}&last_sequence_id=0&project_id=b`);
      await sse.until((s) => s.messages.length >= sizes.length);
      expect(sse.messages.map((m) => Number(m.id))).toEqual(sizes.map((_, i) => i + 1));
      await sse.close();
      const list = await getJson(app, `/api/v1/events?topic=${topic}&limit=1000&sort=desc&project_id=b`);
      expect(list.status).toBe(200);
      expect(list.json.has_more).toBe(true);
      expect(list.json.events[0].sequence_id).toBe(sizes.length);
    }, 120_000);
  });
}
