/**
 * OpenTelemetry traces, configured the standard way: by the OTEL_* environment variables that
 * every OpenTelemetry SDK reads (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
 * OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_TRACES_EXPORTER, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME,
 * OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED, ...). The SDK (@opentelemetry/sdk-node) is loaded
 * only when they ask for traces; otherwise nothing is loaded, computed or stored.
 *
 * Traces only: the service's metrics are Prometheus (/metrics) and its logs are JSON lines on
 * stdout, so the SDK's metric and log pipelines stay off whatever OTEL_METRICS_EXPORTER says.
 */
import { SpanKind } from "@opentelemetry/api";
import { extractFromHeaders, inSpan, tracing, withContext } from "../core/trace.js";
import type { Req, Res } from "./sse.js";

/** Whether the environment asks for traces (the SDK's own reading of these variables, not ours). */
export function tracesRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() === "true") return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (exporters.includes("none")) return false;
  if (exporters.length > 0) return true;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim());
}

export interface Tracing {
  /** Flushes spans still queued and stops the exporter (called on shutdown). */
  shutdown(): Promise<void>;
}

/** Starts the SDK when the environment asks for traces; a no-op handle otherwise. */
export async function startTracing(env: NodeJS.ProcessEnv = process.env): Promise<Tracing> {
  if (!tracesRequested(env)) return { shutdown: async () => {} };
  const { NodeSDK } = await import("@opentelemetry/sdk-node");
  const sdk = new NodeSDK({
    serviceName: env.OTEL_SERVICE_NAME?.trim() || "agent-events",
    instrumentations: [],
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  tracing.on = true;
  return {
    shutdown: async () => {
      tracing.on = false;
      await sdk.shutdown();
    },
  };
}

/**
 * Serves one request inside a server span that continues the caller's trace: the W3C
 * `traceparent`/`tracestate` request headers, which is also how gRPC, gRPC-Web and Connect carry
 * trace context (metadata are headers). Spans the handler starts (publish, store append) are its
 * children. The span is named by the RPC path or the HTTP method only: URL paths hold stream
 * names, which belong in attributes, not in span names.
 */
export function traceRequest(req: Req, res: Res, path: string, handle: () => void): void {
  // RPC paths are /<package.Service>/<Method>: low-cardinality, so they name the span.
  const rpc = (path.split("/", 2)[1] ?? "").includes(".");
  const name = rpc ? path.slice(1, 256) : (req.method ?? "HTTP");
  const attributes = { "http.request.method": req.method ?? "", "url.path": path.slice(0, 512) };
  withContext(extractFromHeaders(req.headers as Record<string, string | string[] | undefined>), () =>
    inSpan(name, attributes, (span) =>
      new Promise<void>((resolve) => {
        res.once("close", () => {
          span?.setAttribute("http.response.status_code", res.statusCode);
          resolve();
        });
        handle();
      }),
      SpanKind.SERVER,
    ),
  ).catch(() => {});
}
