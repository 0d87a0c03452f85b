/**
 * StreamService.ListStreams: the kind filter is the store's query (1,000 executions do not hide a
 * topic), pages follow next_page_token to the end with every stream once, and a page is bounded
 * in bytes (RESPONSE_BATCH_BYTES) as well as by `limit`. Both stores.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const h = { headers: { "x-project-id": "lister" } };

for (const factory of storeFactories) {
  describe(`ListStreams (${factory.name} store)`, () => {
    let app: App;
    beforeAll(async () => {
      app = await startTestServer({ store: await factory.make(), env: { RESPONSE_BATCH_BYTES: "4096" } });
      for (let i = 0; i < 1000; i++) await app.store.reserve({ project: "lister", kind: "execution", key: `ex-${String(i).padStart(4, "0")}` }, 1);
      for (let i = 0; i < 3; i++) await app.store.reserve({ project: "lister", kind: "topic", key: `topic-${i}` }, 1);
    }, 120_000);
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("finds the topics next to 1,000 executions", async () => {
      const r = await client(StreamService, app, "grpc").listStreams({ kind: StreamKind.TOPIC, limit: 10 }, h);
      expect(r.streams.map((s) => s.stream?.key)).toEqual(["topic-0", "topic-1", "topic-2"]);
      expect(r.streams.every((s) => s.stream?.kind === StreamKind.TOPIC && s.lastSequence === 1n)).toBe(true);
      expect(r.nextPageToken).toBe("");
    });

    it("pages through every stream once, in (kind, key) order, each page within RESPONSE_BATCH_BYTES", async () => {
      const rpc = client(StreamService, app, "connect");
      const seen: string[] = [];
      let pages = 0;
      for (let pageToken = "", first = true; first || pageToken; first = false) {
        const r = await rpc.listStreams({ limit: 1000, pageToken }, h);
        pages++;
        // Each entry is its key plus a small fixed overhead: 4096 bytes hold far fewer than 1000.
        expect(r.streams.reduce((n, s) => n + Buffer.byteLength(s.stream!.key) + 32, 0)).toBeLessThanOrEqual(4096);
        seen.push(...r.streams.map((s) => `${StreamKind[s.stream!.kind]}:${s.stream!.key}`));
        pageToken = r.nextPageToken;
      }
      expect(pages).toBeGreaterThan(1);
      expect(seen).toEqual([...Array.from({ length: 1000 }, (_, i) => `EXECUTION:ex-${String(i).padStart(4, "0")}`), "TOPIC:topic-0", "TOPIC:topic-1", "TOPIC:topic-2"]);
      const small = await rpc.listStreams({ kind: StreamKind.EXECUTION, limit: 2 }, h);
      expect(small.streams.map((s) => s.stream?.key)).toEqual(["ex-0000", "ex-0001"]);
      const next = await rpc.listStreams({ kind: StreamKind.EXECUTION, limit: 2, pageToken: small.nextPageToken }, h);
      expect(next.streams.map((s) => s.stream?.key)).toEqual(["ex-0002", "ex-0003"]);
    });

    it("refuses a page token it did not issue with invalid_argument", async () => {
      for (const pageToken of ["not-a-token", Buffer.from('["nope","x"]').toString("base64url"), Buffer.from("{}").toString("base64url")]) {
        const err = await client(StreamService, app, "grpc").listStreams({ pageToken }, h).catch((e: unknown) => ConnectError.from(e));
        expect(err).toBeInstanceOf(ConnectError);
        expect((err as ConnectError).code).toBe(Code.InvalidArgument);
        expect((err as ConnectError).rawMessage).toMatch(/page token/i);
      }
    });
  });
}
