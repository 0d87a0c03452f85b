/**
 * What the operators' console reads besides events, on both stores: ListStreams' live readers on
 * this instance and last event time, and SailhouseService.ListSubscriptionBacklogs (pending
 * events and the age of the oldest, per subscription, paged).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { SailhouseService } from "../gen/sailhouse/v1/sailhouse_pb.js";
import type { App } from "../src/server/app.js";
import { client, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const h = { headers: { "x-project-id": "ops" } };

for (const factory of storeFactories) {
  describe(`console reads (${factory.name} store)`, () => {
    let app: App;
    beforeAll(async () => {
      // Long SSE waits: a reader that left must stop counting at once, not when its wait ends.
      app = await startTestServer({ store: await factory.make(), env: { DURABLE_LONG_POLL_MS: "600000" } });
    });
    afterAll(async () => {
      await app?.close();
      await factory.teardown();
    });

    it("ListStreams counts this instance's live readers of each stream and tells when it was last published to", async () => {
      const rpc = client(StreamService, app, "connect");
      const stream = { kind: StreamKind.TOPIC, key: "watched" };
      const before = Date.now();
      await rpc.publish({ stream, events: [{ eventType: "x", data: { kind: { case: "numberValue", value: 1 } } }] }, h);
      const abort = new AbortController();
      const readers = [0, 1].map(async () => {
        try {
          for await (const _ of rpc.subscribe({ stream, afterSequence: 0n }, { ...h, signal: abort.signal }));
        } catch {
          // aborted
        }
      });
      const listed = async () => (await rpc.listStreams({ kind: StreamKind.TOPIC }, h)).streams.find((s) => s.stream?.key === "watched")!;
      for (let i = 0; i < 200 && (await listed()).subscribers !== 2; i++) await new Promise((r) => setTimeout(r, 25));
      const info = await listed();
      expect(info.subscribers).toBe(2);
      expect(info.lastSequence).toBe(1n);
      expect(timestampDate(info.lastEventAt!).getTime()).toBeGreaterThanOrEqual(before - 1000);
      abort.abort();
      await Promise.all(readers);
      for (let i = 0; i < 200 && (await listed()).subscribers !== 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect((await listed()).subscribers).toBe(0);
    });

    it("counts a Durable Streams SSE reader while it reads, and not once it left", async () => {
      const rpc = client(StreamService, app, "connect");
      const url = `${app.url}/v1/stream/watched-ds`;
      expect((await fetch(url, { method: "PUT", headers: { ...h.headers, "content-type": "application/json" } })).status).toBe(201);
      const abort = new AbortController();
      const res = await fetch(`${url}?offset=-1&live=sse`, { headers: h.headers, signal: abort.signal });
      expect(res.status).toBe(200);
      const listed = async () => (await rpc.listStreams({ kind: StreamKind.DURABLE }, h)).streams.find((s) => s.stream?.key === "watched-ds")!;
      for (let i = 0; i < 200 && (await listed()).subscribers !== 1; i++) await new Promise((r) => setTimeout(r, 25));
      expect((await listed()).subscribers).toBe(1);
      abort.abort();
      for (let i = 0; i < 200 && (await listed()).subscribers !== 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect((await listed()).subscribers).toBe(0);
    });

    it("ListSubscriptionBacklogs: pending events and the oldest one's time per subscription, one topic's or the project's, paged", async () => {
      const sh = client(SailhouseService, app, "connect");
      for (const [topic, name] of [["orders", "billing"], ["orders", "audit"], ["emails", "sender"]] as const) await sh.putSubscription({ topicSlug: topic, subscriptionSlug: name, type: "pull" }, h);
      const sent: string[] = [];
      for (let i = 0; i < 3; i++) sent.push((await sh.sendEvent({ topicSlug: "orders", data: { n: i } }, h)).id);
      // billing takes one and acks it, takes the second and leaves it unacked: 2 wait, the oldest is the second.
      const first = await sh.pullEvent({ topicSlug: "orders", subscriptionSlug: "billing" }, h);
      await sh.ackEvent({ topicSlug: "orders", subscriptionSlug: "billing", eventId: first.event!.id }, h);
      const second = await sh.pullEvent({ topicSlug: "orders", subscriptionSlug: "billing" }, h);
      expect(second.event!.id).toBe(sent[1]);

      const all = await sh.listSubscriptionBacklogs({}, h);
      expect(all.subscriptions.map((s) => [s.topicSlug, s.subscriptionSlug, s.type, s.pending])).toEqual([
        ["emails", "sender", "pull", 0n],
        ["orders", "audit", "pull", 3n],
        ["orders", "billing", "pull", 2n],
      ]);
      expect(all.nextPageToken).toBe("");
      const [emails, audit, billing] = all.subscriptions;
      expect(emails!.oldestPendingAt).toBeUndefined();
      // audit has looked at nothing: its oldest is the first event; billing's is the second.
      expect(audit!.oldestPendingAt).toBe(first.event!.timestamp);
      expect(billing!.oldestPendingAt).toBe(second.event!.timestamp);

      const one = await sh.listSubscriptionBacklogs({ topicSlug: "orders", limit: 1 }, h);
      expect(one.subscriptions.map((s) => s.subscriptionSlug)).toEqual(["audit"]);
      const next = await sh.listSubscriptionBacklogs({ topicSlug: "orders", limit: 1, pageToken: one.nextPageToken }, h);
      expect(next.subscriptions.map((s) => s.subscriptionSlug)).toEqual(["billing"]);
      expect(next.nextPageToken).toBe("");
      await expect(sh.listSubscriptionBacklogs({ pageToken: "not-a-token" }, h)).rejects.toThrow(/page token/);
    });
  });
}
