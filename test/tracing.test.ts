/**
 * OpenTelemetry end to end, as an operator runs it: two service processes on one MongoDB, both
 * configured only by the standard OTEL_* variables, exporting OTLP to a receiver in this test.
 * A publish on instance A with a caller's `traceparent` (an HTTP header, and gRPC metadata) and
 * its delivery to a subscriber on instance B must form one trace: caller → A's server span →
 * publish → store append, and → B's deliver span, with the stream and sequence as attributes.
 * Without OTEL_* the service stores and computes nothing for tracing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import http from "node:http";
import readline from "node:readline";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MongoClient } from "mongodb";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { StreamKind, StreamService } from "../gen/events/v1/events_pb.js";
import { ATTR, SPAN } from "../src/core/trace.js";
import { tracesRequested } from "../src/server/tracing.js";
import { postJson, SseReader } from "./support/server.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number>;
  instance: string;
}

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type OtlpAttr = { key: string; value: OtlpValue };

/** An OTLP/HTTP receiver (JSON encoding, POST /v1/traces) that keeps every span it is sent. */
async function startReceiver(): Promise<{ url: string; spans: Span[]; close(): Promise<void> }> {
  const spans: Span[] = [];
  const flat = (attrs: OtlpAttr[] = []) => Object.fromEntries(attrs.map((a) => [a.key, a.value.stringValue ?? Number(a.value.intValue ?? a.value.doubleValue ?? 0)]));
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          resourceSpans: { resource: { attributes: OtlpAttr[] }; scopeSpans: { spans: (Omit<Span, "attributes" | "instance"> & { attributes: OtlpAttr[] })[] }[] }[];
        };
        for (const rs of body.resourceSpans) {
          const instance = String(flat(rs.resource.attributes)["service.instance.id"] ?? "");
          for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, attributes: flat(s.attributes), instance });
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, spans, close: () => new Promise((r) => server.close(() => r())) };
}

/** Starts `src/main.ts` in its own process and resolves with its URL once it listens. */
async function startInstance(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { ...process.env, PORT: "0", HOST: "127.0.0.1", AUTH: "off", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("service did not start")), 60_000);
    child.once("exit", (code) => reject(new Error(`service exited ${code}`)));
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const rec = JSON.parse(line) as { msg?: string; url?: string };
        if (rec.msg?.startsWith("listening") && rec.url) {
          clearTimeout(t);
          resolve(rec.url);
        }
      } catch {
        // not a log line
      }
    });
  });
  return { url, child };
}

async function stopInstance(i: { child: ChildProcess } | undefined): Promise<void> {
  if (!i || i.child.exitCode !== null) return;
  const exited = new Promise((r) => i.child.once("exit", r));
  i.child.kill("SIGTERM");
  await exited;
}

async function eventually<T>(f: () => T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("tracing is configured by the standard OTEL_* variables", () => {
  it("is on only when they ask for traces", () => {
    expect(tracesRequested({})).toBe(false);
    expect(tracesRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" })).toBe(true);
    expect(tracesRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces" })).toBe(true);
    expect(tracesRequested({ OTEL_TRACES_EXPORTER: "otlp" })).toBe(true);
    expect(tracesRequested({ OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" })).toBe(false);
    expect(tracesRequested({ OTEL_SDK_DISABLED: "true", OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" })).toBe(false);
  });
});

describe("one trace from a publish on instance A to its delivery on instance B", () => {
  let mongo: TestMongo;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let a: Awaited<ReturnType<typeof startInstance>> | undefined;
  let b: Awaited<ReturnType<typeof startInstance>> | undefined;
  let plain: Awaited<ReturnType<typeof startInstance>> | undefined;
  const db = `tracing_${Date.now()}`;

  beforeAll(async () => {
    [mongo, receiver] = await Promise.all([startTestMongo(), startReceiver()]);
    const otel = (instance: string) => ({
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_RESOURCE_ATTRIBUTES: `service.instance.id=${instance}`,
    });
    const store = { MONGODB_URI: mongo.uri, MONGODB_DB: db, WATCH_MODE: "poll", POLL_INTERVAL_MS: "50" };
    [a, b, plain] = await Promise.all([
      startInstance({ ...store, ...otel("A") }),
      startInstance({ ...store, ...otel("B") }),
      startInstance(store),
    ]);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([stopInstance(a), stopInstance(b), stopInstance(plain)]);
    await receiver?.close();
    await mongo?.stop();
  });

  it("joins the caller's trace over HTTP and gRPC, through the store, to B's subscriber", async () => {
    const topic = `traced-${Date.now()}`;
    const sse = new SseReader(`${b!.url}/api/v1/events/stream?topic=${topic}&project_id=acme&last_sequence_id=0`);
    try {
      await sse.until((r) => r.status === 200);
      // The caller's own trace: a made-up parent span, as an instrumented client would send.
      const traceId = randomBytes(16).toString("hex");
      const callerSpan = randomBytes(8).toString("hex");
      const res = await postJson(a as never, "/api/v1/events/publish", { topic, events: [{ event_type: "tool_call", data: { n: 1 } }] }, { "x-project-id": "acme", traceparent: `00-${traceId}-${callerSpan}-01` });
      expect(res.json.sequence_ids).toEqual([1]);
      // gRPC: the same context as metadata.
      const grpcTrace = randomBytes(16).toString("hex");
      const rpc = createClient(StreamService, createGrpcTransport({ baseUrl: a!.url }));
      const published = await rpc.publish(
        { stream: { kind: StreamKind.TOPIC, key: topic }, events: [{ eventType: "status", data: { kind: { case: "stringValue", value: "ok" } } }] },
        { headers: { "x-project-id": "acme", traceparent: `00-${grpcTrace}-${randomBytes(8).toString("hex")}-01` } },
      );
      expect(published.sequences).toEqual([2n]);
      await sse.until((r) => r.messages.filter((m) => m.data !== "keepalive").length >= 2);

      const stream = `acme/topic/${topic}`;
      const byName = (name: string, trace: string, instance: string) => () => receiver.spans.find((s) => s.name === name && s.traceId === trace && s.instance === instance);
      // A: server span continues the caller's span; publish under it; store append under publish.
      const server = await eventually(byName("POST", traceId, "A"), "A's server span");
      expect(server.parentSpanId).toBe(callerSpan);
      const publish = await eventually(byName(SPAN.publish, traceId, "A"), "A's publish span");
      expect(publish.parentSpanId).toBe(server.spanId);
      expect(publish.attributes[ATTR.stream]).toBe(stream);
      expect(publish.attributes[ATTR.firstSequence]).toBe(1);
      expect(publish.attributes[ATTR.lastSequence]).toBe(1);
      const append = await eventually(byName(SPAN.storeAppend, traceId, "A"), "A's store append span");
      expect(append.parentSpanId).toBe(publish.spanId);
      // B: the delivery, read back from MongoDB, joins the same trace as a child of A's publish.
      const deliver = await eventually(byName(SPAN.deliver, traceId, "B"), "B's deliver span");
      expect(deliver.parentSpanId).toBe(publish.spanId);
      expect(deliver.attributes[ATTR.stream]).toBe(stream);
      expect(deliver.attributes[ATTR.sequence]).toBe(1);
      // The gRPC publish is a trace of its own (the caller's), delivered on B too.
      const grpcServer = await eventually(byName("events.v1.StreamService/Publish", grpcTrace, "A"), "A's gRPC server span");
      const grpcPublish = await eventually(byName(SPAN.publish, grpcTrace, "A"), "A's gRPC publish span");
      expect(grpcPublish.parentSpanId).toBe(grpcServer.spanId);
      const grpcDeliver = await eventually(byName(SPAN.deliver, grpcTrace, "B"), "B's deliver span of the gRPC publish");
      expect(grpcDeliver.parentSpanId).toBe(grpcPublish.spanId);
      expect(grpcDeliver.attributes[ATTR.sequence]).toBe(2);
    } finally {
      await sse.close();
    }
  });

  it("stores and exports nothing for tracing when OTEL_* is unset", async () => {
    const topic = `untraced-${Date.now()}`;
    const before = receiver.spans.length;
    const res = await postJson(plain as never, "/api/v1/events/publish", { topic, events: [{ event_type: "x", data: 1 }] }, { "x-project-id": "acme", traceparent: `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01` });
    expect(res.json.sequence_ids).toEqual([1]);
    const client = await MongoClient.connect(mongo.uri);
    try {
      const events = client.db(db).collection("events");
      const untraced = await events.findOne({ stream: `acme/topic/${topic}` });
      expect(untraced).not.toBeNull();
      expect(untraced).not.toHaveProperty("tp");
      // …while the traced instance stored the publisher's context with its events.
      const traced = await events.find({ stream: { $regex: "^acme/topic/traced-" } }).toArray();
      expect(traced.length).toBeGreaterThanOrEqual(2);
      for (const d of traced) expect(d.tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    } finally {
      await client.close();
    }
    await new Promise((r) => setTimeout(r, 500));
    expect(receiver.spans.slice(before).filter((s) => s.instance === "")).toEqual([]);
  });
});
