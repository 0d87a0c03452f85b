/**
 * Idempotent producers beyond the conformance suite: on PublishStream (the same producer rules as
 * the Durable Streams Producer-* headers, and the same state: a producer may switch between the
 * two), and across two service instances on one MongoDB, where the same request sent to both at
 * once is appended once and a close made on one is final on the other.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamKind, StreamService, type PublishStreamRequest } from "../gen/events/v1/events_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { PublishStreamRequestSchema } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, SseReader, startTestServer } from "./support/server.js";
import { storeFactories } from "./support/stores.js";

const headers = { "x-project-id": "producers" };
type Req = MessageInitShape<typeof PublishStreamRequestSchema>;

async function publishAll(app: App, reqs: Req[]) {
  async function* gen() {
    for (const r of reqs) yield r as PublishStreamRequest;
  }
  const acks = [];
  for await (const ack of client(StreamService, app, "grpc").publishStream(gen() as never, { headers })) acks.push(ack);
  return acks;
}

describe.each(storeFactories)("idempotent producers on PublishStream ($name store)", (factory) => {
  let app: App;
  let n = 0;
  beforeAll(async () => {
    app = await startTestServer({ store: await factory.make() });
  });
  afterAll(async () => {
    await app.close();
    await factory.teardown();
  });

  it("accepts each (epoch, seq) once, acks repeats as duplicates, fences old epochs and refuses gaps", async () => {
    const key = `ps-${++n}`;
    const stream = { kind: StreamKind.TOPIC, key };
    const ev = (i: number) => ({ eventType: "e", payload: Uint8Array.of(i) });
    const p = (epoch: number, seq: number, i: number): Req => ({ requestId: BigInt(i), stream, events: [ev(i)], producerId: "w", producerEpoch: BigInt(epoch), producerSeq: BigInt(seq) });
    const acks = await publishAll(app, [p(0, 0, 0), p(0, 1, 1), p(0, 1, 2), p(0, 0, 3), p(0, 2, 4), p(0, 5, 5), p(1, 3, 6), p(1, 0, 7), p(0, 3, 8)]);
    const view = acks.map((a) => ({ id: Number(a.requestId), seqs: a.sequences.map(Number), dup: a.duplicate, err: a.error?.code ?? null, epoch: Number(a.producerEpoch), pseq: Number(a.producerSeq) }));
    expect(view).toEqual([
      { id: 0, seqs: [1], dup: false, err: null, epoch: 0, pseq: 0 },
      { id: 1, seqs: [2], dup: false, err: null, epoch: 0, pseq: 1 },
      { id: 2, seqs: [], dup: true, err: null, epoch: 0, pseq: 1 },
      { id: 3, seqs: [], dup: true, err: null, epoch: 0, pseq: 1 },
      { id: 4, seqs: [3], dup: false, err: null, epoch: 0, pseq: 2 },
      { id: 5, seqs: [], dup: false, err: "aborted", epoch: 0, pseq: 3 },
      { id: 6, seqs: [], dup: false, err: "invalid_argument", epoch: 0, pseq: 0 },
      { id: 7, seqs: [4], dup: false, err: null, epoch: 1, pseq: 0 },
      { id: 8, seqs: [], dup: false, err: "permission_denied", epoch: 1, pseq: 0 },
    ]);
    const page = await client(StreamService, app, "connect").listEvents({ stream }, { headers });
    expect(page.events.map((e) => e.payload?.[0])).toEqual([0, 1, 4, 7]);
  });

  it("shares the producer's state with the Producer-* headers of the stream's durable view", async () => {
    const key = `shared-${++n}`;
    const http = await fetch(`${app.url}/v1/log/topic/${key}`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "producer-id": "w", "producer-epoch": "0", "producer-seq": "0" },
      body: JSON.stringify({ type: "e", data: { from: "http" } }),
    });
    expect(http.status).toBe(200);
    const stream = { kind: StreamKind.TOPIC, key };
    const acks = await publishAll(app, [
      { requestId: 1n, stream, events: [{ eventType: "e" }], producerId: "w", producerEpoch: 0n, producerSeq: 0n },
      { requestId: 2n, stream, events: [{ eventType: "e" }], producerId: "w", producerEpoch: 0n, producerSeq: 1n },
    ]);
    expect(acks.map((a) => [a.duplicate, a.sequences.map(Number)])).toEqual([
      [true, []],
      [false, [2]],
    ]);
    const again = await fetch(`${app.url}/v1/log/topic/${key}`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json", "producer-id": "w", "producer-epoch": "0", "producer-seq": "1" },
      body: JSON.stringify({ type: "e" }),
    });
    expect(again.status).toBe(204);
    expect(again.headers.get("producer-seq")).toBe("1");
  });
});

const mongo = storeFactories.find((f) => f.name === "mongo")!;

describe("idempotent producers across two instances on one MongoDB", () => {
  const apps: App[] = [];
  afterAll(async () => {
    for (const a of apps) await a.close();
    await mongo.teardown();
  });

  it("the same producer request sent to both instances at once is appended once", async () => {
    const dbName = `producers_${Date.now()}`;
    for (let i = 0; i < 2; i++) apps.push(await startTestServer({ store: await mongo.make({ dbName, watch: "poll" }) }));
    const [one, two] = apps as [App, App];
    const name = `twice-${Date.now()}`;
    expect((await fetch(`${one.url}/v1/stream/${name}`, { method: "PUT", headers: { ...headers, "content-type": "application/json" } })).status).toBe(201);
    const ROUNDS = 25;
    const statuses: number[] = [];
    for (let seq = 0; seq < ROUNDS; seq++) {
      const send = (app: App) =>
        fetch(`${app.url}/v1/stream/${name}`, {
          method: "POST",
          headers: { ...headers, "content-type": "application/json", "producer-id": "p", "producer-epoch": "0", "producer-seq": String(seq) },
          body: JSON.stringify({ seq }),
        }).then((r) => r.status);
      statuses.push(...(await Promise.all([send(one), send(two)])));
    }
    for (const s of statuses) expect([200, 204]).toContain(s);
    for (const app of apps) {
      const body = (await (await fetch(`${app.url}/v1/stream/${name}`, { headers })).json()) as { seq: number }[];
      expect(body.map((m) => m.seq)).toEqual(Array.from({ length: ROUNDS }, (_, i) => i));
    }
  });

  it("a close on one instance is final on the other: appends refused, a long-poll there ends with Stream-Closed", async () => {
    const [one, two] = apps as [App, App];
    const name = `closed-${Date.now()}`;
    await fetch(`${one.url}/v1/stream/${name}`, { method: "PUT", headers: { ...headers, "content-type": "text/plain" }, body: "a" });
    const tail = (await fetch(`${two.url}/v1/stream/${name}`, { method: "HEAD", headers })).headers.get("stream-next-offset")!;
    const poll = fetch(`${two.url}/v1/stream/${name}?offset=${tail}&live=long-poll`, { headers });
    await new Promise((r) => setTimeout(r, 200));
    const closed = await fetch(`${one.url}/v1/stream/${name}`, { method: "POST", headers: { ...headers, "stream-closed": "true" } });
    expect(closed.status).toBe(204);
    const started = Date.now();
    const polled = await poll;
    expect(polled.status).toBe(204);
    expect(polled.headers.get("stream-closed")).toBe("true");
    expect(Date.now() - started).toBeLessThan(5000);
    const refused = await fetch(`${two.url}/v1/stream/${name}`, { method: "POST", headers: { ...headers, "content-type": "text/plain" }, body: "b" });
    expect(refused.status).toBe(409);
    expect(refused.headers.get("stream-closed")).toBe("true");
    expect(await (await fetch(`${two.url}/v1/stream/${name}`, { headers })).text()).toBe("a");
  });

  it("stop a generation from anywhere: a reader closes the stream through one instance, the writer's next append through the other is refused with the reason, every reader on both ends with everything acked", async () => {
    const [one, two] = apps as [App, App];
    const name = `generation-${Date.now()}`;
    const json = { ...headers, "content-type": "application/json" };
    expect((await fetch(`${two.url}/v1/stream/${name}`, { method: "PUT", headers: json })).status).toBe(201);
    const sse = [one, two].map((app) => new SseReader(`${app.url}/v1/stream/${name}?offset=-1&live=sse`, headers));
    // A long-poll reader on the first instance, looping as clients do.
    const polled: unknown[] = [];
    let pollClosedAt = 0;
    const longPoll = (async () => {
      for (let offset = "-1"; ; ) {
        const r = await fetch(`${one.url}/v1/stream/${name}?offset=${offset}&live=long-poll`, { headers });
        if (r.status === 200) polled.push(...((await r.json()) as unknown[]));
        offset = r.headers.get("stream-next-offset") ?? offset;
        if (r.headers.get("stream-closed") === "true") return void (pollClosedAt = Date.now());
      }
    })();
    // The writer streams tokens through the second instance as an idempotent producer until refused.
    const acked: unknown[] = [];
    let refusal: Response | undefined;
    const writer = (async () => {
      for (let seq = 0; seq < 10_000; seq++) {
        const token = { token: seq };
        const r = await fetch(`${two.url}/v1/stream/${name}`, {
          method: "POST",
          headers: { ...json, "producer-id": "model", "producer-epoch": "0", "producer-seq": String(seq) },
          body: JSON.stringify(token),
        });
        if (r.status !== 200) return void (refusal = r);
        acked.push(token);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    const dataOf = (r: SseReader) => r.messages.filter((m) => m.event === "data").flatMap((m) => JSON.parse(m.data) as unknown[]);
    await sse[0]!.until((r) => dataOf(r).length >= 5, 30_000);
    // A reader on the first instance stops the generation.
    const stop = await fetch(`${one.url}/v1/stream/${name}`, { method: "POST", headers: { ...headers, "stream-closed": "true", "stream-close-reason": "stopped by user" } });
    const stoppedAt = Date.now();
    expect(stop.status).toBe(204);
    expect(stop.headers.get("stream-close-reason")).toBe("stopped by user");
    await writer;
    expect(refusal?.status).toBe(409);
    expect(refusal?.headers.get("stream-closed")).toBe("true");
    expect(refusal?.headers.get("stream-close-reason")).toBe("stopped by user");
    const closedControl = (r: SseReader) => r.messages.find((m) => m.event === "control" && (JSON.parse(m.data) as { streamClosed?: boolean }).streamClosed === true);
    const seenAt: number[] = [];
    for (const r of sse) {
      await r.until((x) => closedControl(x) !== undefined, 30_000);
      seenAt.push(Date.now() - stoppedAt);
      expect(JSON.parse(closedControl(r)!.data)).toMatchObject({ streamClosed: true, streamCloseReason: "stopped by user" });
      expect(dataOf(r)).toEqual(acked);
      await r.finished();
    }
    await longPoll;
    expect(polled).toEqual(acked);
    const head = await fetch(`${one.url}/v1/stream/${name}`, { method: "HEAD", headers });
    expect([head.headers.get("stream-closed"), head.headers.get("stream-close-reason")]).toEqual(["true", "stopped by user"]);
    console.log(`stop seen by SSE readers on both instances after ${seenAt.join(" and ")} ms, by the long-poll after ${pollClosedAt - stoppedAt} ms; the writer was refused after ${acked.length} tokens`);
  });
});
