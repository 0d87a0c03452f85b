/**
 * Streams that need no key (grpc.health.v1 Watch, server reflection): documented deadlines (a
 * Watch ends cleanly after HEALTH_WATCH_MAX_MS, a reflection stream with deadline_exceeded after
 * REQUEST_TIMEOUT_MS), a small cap of their own answered in each RPC protocol, and connections
 * holding only such streams give their place to a keyed client when the listener is full.
 * The store plays no part here (health answers from a cached ping), so the memory store only.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../gen/grpc/reflection/v1/reflection_pb.js";
import type { App } from "../src/server/app.js";
import { client, startTestServer, type Protocol } from "./support/server.js";
import { eventually, metricValue, stillServing } from "./support/raw.js";

const KEY = { authorization: "Bearer key-a" };
const PROTOCOLS: Protocol[] = ["grpc", "connect", "grpc-web"];

/** A reflection stream that asks one question and then stays open: resolves with the first answer; `ended` with how it ended. */
function openReflection(rc: Client<typeof ServerReflection>): { first: Promise<string[]>; ended: Promise<ConnectError | "ok">; close(): void } {
  let close!: () => void;
  const closed = new Promise<void>((r) => (close = r));
  async function* requests() {
    yield { host: "", messageRequest: { case: "listServices" as const, value: "" } };
    await closed;
  }
  let first!: (names: string[]) => void;
  let failFirst!: (e: unknown) => void;
  const firstP = new Promise<string[]>((resolve, reject) => ((first = resolve), (failFirst = reject)));
  const ended = (async () => {
    try {
      for await (const res of rc.serverReflectionInfo(requests())) {
        if (res.messageResponse.case === "listServicesResponse") first(res.messageResponse.value.service.map((s) => s.name));
      }
      return "ok" as const;
    } catch (e) {
      failFirst(e);
      return ConnectError.from(e);
    }
  })();
  return { first: firstP, ended, close };
}

/** The sequences of the next batch of a Subscribe that carries events (the first response may be an empty "caught up" one). */
async function nextSequences(it: AsyncIterator<{ events: { sequence: bigint }[] }>): Promise<bigint[]> {
  for (;;) {
    const r = await it.next();
    if (r.done) return [];
    if (r.value.events.length > 0) return r.value.events.map((e) => e.sequence);
  }
}

describe("deadlines and the cap of unauthenticated streams", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { AUTH: "required", API_KEYS: "a:key-a", MAX_UNAUTHENTICATED_STREAMS: "4", HEALTH_WATCH_MAX_MS: "1500", REQUEST_TIMEOUT_MS: "2000" } });
  });
  afterAll(() => app?.close());

  it("ends a Watch cleanly after HEALTH_WATCH_MAX_MS, in every protocol", async () => {
    for (const protocol of PROTOCOLS) {
      const got: Status[] = [];
      for await (const r of client(Health, app, protocol).watch({})) got.push(r.status);
      expect(got, protocol).toEqual([Status.SERVING]);
    }
  });

  it("ends a reflection stream with deadline_exceeded after REQUEST_TIMEOUT_MS, having answered it", async () => {
    const r = openReflection(client(ServerReflection, app, "grpc"));
    expect(await r.first).toContain("events.v1.StreamService");
    const end = await r.ended;
    expect(end).toBeInstanceOf(ConnectError);
    expect((end as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect((end as ConnectError).rawMessage).toMatch(/REQUEST_TIMEOUT_MS/);
  });

  it("holds at most MAX_UNAUTHENTICATED_STREAMS, refusing the rest with resource_exhausted in each protocol, without touching keyed streams", async () => {
    const before = await metricValue(app, 'limited_total{limit="unauthenticated_streams"}');
    const abort = new AbortController();
    const held = [0, 1, 2].map(() => client(Health, app, "grpc").watch({}, { signal: abort.signal })[Symbol.asyncIterator]());
    for (const it of held) expect((await it.next()).value?.status).toBe(Status.SERVING);
    const reflection = openReflection(client(ServerReflection, app, "grpc"));
    expect(await reflection.first).toContain("grpc.health.v1.Health");
    // Full (3 watches + 1 reflection): each protocol is refused in its own form.
    for (const protocol of PROTOCOLS) {
      const err = await (async () => {
        for await (const _ of client(Health, app, protocol).watch({})) return undefined;
      })().catch((e: unknown) => ConnectError.from(e));
      expect(err, protocol).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code, protocol).toBe(Code.ResourceExhausted);
      expect((err as ConnectError).rawMessage, protocol).toMatch(/4 unauthenticated streams .*MAX_UNAUTHENTICATED_STREAMS/);
    }
    const refusedReflection = openReflection(client(ServerReflection, app, "grpc"));
    expect(((await refusedReflection.ended) as ConnectError).code).toBe(Code.ResourceExhausted);
    expect(await metricValue(app, 'limited_total{limit="unauthenticated_streams"}')).toBe(before + 4);
    // Keyed subscriptions are not counted against it; health Check (unary) is not capped.
    const sub = client(StreamService, app, "grpc").subscribe({ stream: { kind: StreamKind.TOPIC, key: "t" } }, { headers: KEY, signal: abort.signal })[Symbol.asyncIterator]();
    await client(StreamService, app, "grpc").publish({ stream: { kind: StreamKind.TOPIC, key: "t" }, events: [{ eventType: "x" }] }, { headers: KEY });
    expect(await nextSequences(sub)).toEqual([1n]);
    expect((await client(Health, app, "grpc").check({})).status).toBe(Status.SERVING);
    // Places come back as streams end.
    abort.abort();
    reflection.close();
    await eventually(async () => {
      for await (const r of client(Health, app, "connect").watch({})) return r.status === Status.SERVING;
      return false;
    }, 10_000, "a place freed");
  });
});

describe("connections that hold only unauthenticated streams", () => {
  let app: App;
  beforeAll(async () => {
    app = await startTestServer({ env: { AUTH: "required", API_KEYS: "a:key-a", MAX_CONNECTIONS: "4", MAX_UNAUTHENTICATED_STREAMS: "16", IDLE_TIMEOUT_MS: "60000" } });
  });
  afterAll(() => app?.close());

  it("give their place to a keyed client when the listener is full (24 reflection connections once made keyed clients get 503)", async () => {
    // Every connection the listener has holds a reflection stream (each transport is its own HTTP/2 connection).
    const hogs = Array.from({ length: 4 }, () => openReflection(createClient(ServerReflection, createGrpcTransport({ baseUrl: app.url }))));
    for (const h of hogs) expect(await h.first).toContain("events.v1.StreamService");
    // A keyed client on a new connection is served: it publishes and reads back its event.
    const keyed = createGrpcTransport({ baseUrl: app.url });
    const published = await createClient(StreamService, keyed).publish({ stream: { kind: StreamKind.TOPIC, key: "evict" }, events: [{ eventType: "x" }] }, { headers: KEY });
    expect(published.sequences).toEqual([1n]);
    const abort = new AbortController();
    const sub = createClient(StreamService, keyed).subscribe({ stream: { kind: StreamKind.TOPIC, key: "evict" } }, { headers: KEY, signal: abort.signal })[Symbol.asyncIterator]();
    expect(await nextSequences(sub)).toEqual([1n]);
    // The oldest reflection connection was closed for it; its stream ended (the client may reconnect).
    const ends = await Promise.race([Promise.any(hogs.map((h) => h.ended)), new Promise((r) => setTimeout(() => r("none"), 10_000))]);
    expect(ends).not.toBe("none");
    expect(await metricValue(app, 'limited_total{limit="unauthenticated_evicted"}')).toBeGreaterThanOrEqual(1);
    // A connection with a keyed stream is never closed for another: the keyed subscription goes on.
    await createClient(StreamService, keyed).publish({ stream: { kind: StreamKind.TOPIC, key: "evict" }, events: [{ eventType: "y" }] }, { headers: KEY });
    expect(await nextSequences(sub)).toEqual([2n]);
    abort.abort();
    for (const h of hogs) h.close();
    expect(await stillServing(app)).toBeLessThan(1000);
  });
});
