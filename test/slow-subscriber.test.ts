/**
 * A subscriber that stops reading is paused, not buffered for: the server stops taking its events
 * from the log once the connection's flow-control window and socket buffers are full, and when the
 * subscriber reads again it continues from where it was (from the store), missing nothing. Paused
 * longer than SUBSCRIBER_STALL_TIMEOUT_MS, it is cut off with a clear status and may resume.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createParser } from "eventsource-parser";
import { ConnectError } from "@connectrpc/connect";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import type { App } from "../src/server/app.js";
import { client, postJson, SseReader, startTestServer } from "./support/server.js";

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

describe("a subscriber paused longer than SUBSCRIBER_STALL_TIMEOUT_MS", () => {
  let cutApp: App;
  beforeAll(async () => {
    cutApp = await startTestServer({ env: { SUBSCRIBER_STALL_TIMEOUT_MS: "1000" } });
  });
  afterAll(async () => cutApp?.close());

  const cuts = async (): Promise<number> => Number(/^responses_cut_total\{reason="stalled"\} (\d+)$/m.exec(await (await fetch(`${cutApp.url}/metrics`)).text())?.[1] ?? 0);
  const publish = async (topic: string, total: number): Promise<void> => {
    const pad = "x".repeat(1000);
    for (let i = 0; i < total; i += 500) {
      const r = await postJson(cutApp, "/api/v1/events/publish", { topic, events: Array.from({ length: 500 }, (_, k) => ({ data: { n: i + k, pad } })) }, { "X-Project-ID": "p" });
      expect(r.status).toBe(200);
    }
  };
  const waitFor = async (pred: () => boolean | Promise<boolean>, ms: number): Promise<number> => {
    const t0 = Date.now();
    while (!(await pred())) {
      if (Date.now() - t0 > ms) throw new Error(`condition not met in time (cut: ${await cuts()}, subscribers: ${cutApp.log.stats.subscribers})`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return Date.now() - t0;
  };

  it("gRPC: is reset with ENHANCE_YOUR_CALM, the server lets go of it, and it resumes from its last sequence without loss", async () => {
    const TOTAL = 20_000;
    const streams = client(StreamService, cutApp, "grpc");
    const ref = { kind: StreamKind.TOPIC, key: "stalled-rpc" };
    const it = streams.subscribe({ stream: ref }, { headers: { "x-project-id": "p" } })[Symbol.asyncIterator]();
    expect((await it.next()).value?.events).toEqual([]); // live
    await publish("stalled-rpc", TOTAL);
    // The client reads nothing: after ~1 s paused, the server cuts the stream and drops the subscription.
    const tookMs = await waitFor(async () => (await cuts()) === 1 && cutApp.log.stats.subscribers === 0, 10_000);
    console.log(`stalled gRPC subscriber cut ${tookMs} ms after the last publish`);
    // Reading now: what the transport already held arrives in order, then the status.
    const seqs: number[] = [];
    let error: unknown;
    try {
      for (let r = await it.next(); !r.done; r = await it.next()) seqs.push(...r.value.events.map((e) => Number(e.sequence)));
    } catch (err) {
      error = err;
    }
    // RST_STREAM ENHANCE_YOUR_CALM: the gRPC spec maps it to resource_exhausted (grpc-go, grpc-java,
    // grpc-js); connect-node 2.1 reports it as internal, naming the reset code.
    expect(error).toBeInstanceOf(ConnectError);
    expect(String(error)).toMatch(/ENHANCE_YOUR_CALM/);
    expect(seqs.length).toBeLessThan(TOTAL);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
    // Resume from the last sequence seen: the rest, once, in order.
    // (Aborted rather than left with `break`: connect-node 2.1 does not cancel the call on break.)
    const done = new AbortController();
    try {
      for await (const r of streams.subscribe({ stream: ref, afterSequence: BigInt(seqs.length) }, { headers: { "x-project-id": "p" }, signal: done.signal })) {
        seqs.push(...r.events.map((e) => Number(e.sequence)));
        if (seqs.length >= TOTAL) done.abort();
      }
    } catch (err) {
      if (!done.signal.aborted) throw err;
    }
    expect(seqs.length).toBe(TOTAL);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
    await waitFor(() => cutApp.log.stats.subscribers === 0, 5_000);
  }, 60_000);

  it("SSE over HTTP/1.1: the connection is closed and Last-Event-ID resumes it", async () => {
    const TOTAL = 20_000;
    const { port } = new URL(cutApp.url);
    const before = await cuts();
    let res!: http.IncomingMessage;
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path: "/api/v1/events/stream?topic=stalled-sse&project_id=p&last_sequence_id=0", headers: { accept: "text/event-stream" } }, (r) => {
          res = r;
          r.pause();
          resolve();
        })
        .on("error", reject);
    });
    await publish("stalled-sse", TOTAL);
    await waitFor(async () => (await cuts()) === before + 1 && cutApp.log.stats.subscribers === 0, 10_000);
    const seqs: number[] = [];
    const parser = createParser({ onEvent: (m) => m.id && seqs.push(Number(m.id)) });
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => parser.feed(chunk));
    const ended = new Promise((r) => res.once("close", r));
    res.resume();
    await ended;
    expect(seqs.length).toBeLessThan(TOTAL);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
    const rest = new SseReader(`${cutApp.url}/api/v1/events/stream?topic=stalled-sse&project_id=p`, { "last-event-id": String(seqs.length) });
    await rest.until((r) => r.messages.filter((m) => m.id).length >= TOTAL - seqs.length, 30_000);
    await rest.close();
    seqs.push(...rest.messages.filter((m) => m.id).map((m) => Number(m.id)));
    expect(seqs.length).toBe(TOTAL);
    expect(seqs.every((s, i) => s === i + 1)).toBe(true);
  }, 60_000);
});
