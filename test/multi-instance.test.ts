/** Several service instances on one MongoDB: a subscriber on one sees what the others publish. */
import { afterAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, postJson, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const mongo = storeFactories.find((f) => f.name === "mongo")!;

describe("two instances on one MongoDB (polling watcher)", () => {
  const apps: App[] = [];
  afterAll(async () => {
    for (const a of apps) await a.close();
    await mongo.teardown();
  });

  it("delivers events published through instance 2 to subscribers of instance 1, live and in order", async () => {
    const dbName = `multi_${Date.now()}`;
    for (let i = 0; i < 2; i++) apps.push(await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }) }));
    const [one, two] = apps as [App, App];
    const topic = `multi-${Date.now()}`;
    const stream = { kind: StreamKind.TOPIC, key: topic };
    const headers = { "x-project-id": "acme" };
    const N = 300;

    const abort = new AbortController();
    const got: number[] = [];
    const sub = (async () => {
      try {
        for await (const res of client(StreamService, one, "grpc").subscribe({ stream }, { signal: abort.signal, headers })) {
          got.push(...res.events.map((e) => Number(e.sequence)));
          if (got.length >= N) break;
        }
      } catch (e) {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      }
    })();
    const sse = new SseReader(`${one.url}/api/v1/events/stream?topic=${topic}&project_id=acme`);
    await new Promise((r) => setTimeout(r, 200));

    const publisher = client(StreamService, two, "grpc");
    const started = Date.now();
    for (let i = 0; i < N; i += 3) {
      // Batches and single events, through RPC and the JSON path, all via instance 2.
      if (i % 2 === 0) await publisher.publish({ stream, events: [{ eventType: "a" }, { eventType: "b" }, { eventType: "c" }] }, { headers });
      else {
        const r = await postJson(two, "/api/v1/events/publish", { topic, events: [{ data: 1 }, { data: 2 }, { data: 3 }] }, { "X-Project-ID": "acme" });
        expect(r.status).toBe(200);
      }
    }
    await sub;
    await sse.until((s) => s.messages.length >= N);
    abort.abort();
    await sse.close();
    const expected = Array.from({ length: N }, (_, i) => i + 1);
    expect(got).toEqual(expected);
    expect(sse.messages.map((m) => Number(m.id))).toEqual(expected);
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 60_000);
});
