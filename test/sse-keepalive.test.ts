/** SSE keepalives: Polos's `data: keepalive` event, Kubiya's comment line, when a stream is idle. */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { App } from "../src/server/app.js";
import { SseReader, startTestServer } from "./support/server.js";

let app: App;
beforeAll(async () => {
  app = await startTestServer({ env: { SSE_KEEPALIVE_MS: "150" } });
});
afterAll(async () => app?.close());

it("sends keepalives on idle SSE streams in each dialect's form", async () => {
  const polos = new SseReader(`${app.url}/api/v1/events/stream?topic=idle&project_id=acme`);
  const kubiya = new SseReader(`${app.url}/api/v1/executions/idle/stream`);
  await polos.until((s) => s.messages.filter((m) => m.data === "keepalive").length >= 2, 5000);
  await kubiya.until((s) => s.comments.filter((c) => c.trim() === "keepalive").length >= 2, 5000);
  await polos.close();
  await kubiya.close();
  expect(polos.messages.every((m) => m.data === "keepalive")).toBe(true);
  expect(kubiya.messages.map((m) => m.event)).toEqual(["connected"]);
});
