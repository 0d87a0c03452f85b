/**
 * Tracing, as the core sees it: the vendor-neutral OpenTelemetry API only (no SDK, no exporter,
 * no transport). The process turns it on once at start-up (src/server/tracing.ts) when the
 * standard OTEL_* variables ask for traces; until then `tracing.on` is false and every helper
 * returns at its first line, so a service without OpenTelemetry computes and stores nothing extra.
 *
 * A publish's trace context travels with its events (StoredEvent.trace, a W3C `traceparent`), so
 * a subscriber's delivery on any instance, minutes later, joins the publisher's trace.
 */
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span } from "@opentelemetry/api";

export const tracing = { on: false };

/** Span and attribute names, defined once (the dashboards and the docs use the same words). */
export const SPAN = {
  publish: "agent_events.publish",
  storeAppend: "agent_events.store.append",
  deliver: "agent_events.deliver",
} as const;
export const ATTR = {
  stream: "agent_events.stream",
  firstSequence: "agent_events.sequence.first",
  lastSequence: "agent_events.sequence.last",
  sequence: "agent_events.sequence",
  events: "agent_events.events",
  subscriber: "agent_events.subscriber",
} as const;

const tracer = () => trace.getTracer("agent-events");

/** Header getter for propagation.extract over Node's header objects (HTTP/1.1, h2, gRPC metadata). */
const headerGetter = {
  keys: (h: Record<string, string | string[] | undefined>) => Object.keys(h),
  get: (h: Record<string, string | string[] | undefined>, key: string) => h[key],
};

/** The context a request's `traceparent`/`tracestate` headers carry (gRPC metadata are headers too). */
export function extractFromHeaders(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(context.active(), headers, headerGetter);
}

/** Runs `fn` in the active context plus a new span; ends the span with fn's outcome. */
export async function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span | undefined) => Promise<T>, kind = SpanKind.INTERNAL): Promise<T> {
  if (!tracing.on) return fn(undefined);
  return tracer().startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      fail(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function fail(span: Span | undefined, err: unknown): void {
  if (!span) return;
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
}

/** The active span's context as a W3C `traceparent`, to store with the events it publishes. */
export function activeTraceparent(): string | undefined {
  if (!tracing.on) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/**
 * One publish: a span around it (a child of the request's span), whose context is stored with its
 * events. `run` gets that context as a traceparent.
 */
export function tracePublish<T extends { seq: number }>(stream: string, count: number, run: (trace: string | undefined) => Promise<T[]>): Promise<T[]> {
  return inSpan(SPAN.publish, { [ATTR.stream]: stream, [ATTR.events]: count }, async (span) => {
    const events = await run(activeTraceparent());
    if (events.length > 0) span?.setAttributes({ [ATTR.firstSequence]: events[0]!.seq, [ATTR.lastSequence]: events[events.length - 1]!.seq });
    return events;
  });
}

/**
 * One store write of a commit round, which may carry several publishes (group commit): a child of
 * the first traced publish, linked to the others.
 */
export async function traceAppend<T>(traces: readonly (string | undefined)[], stream: string, write: () => Promise<T>): Promise<T> {
  if (!tracing.on) return write();
  const contexts = traces.filter((t): t is string => t !== undefined).map((t) => propagation.extract(ROOT_CONTEXT, { traceparent: t }));
  if (contexts.length === 0) return write();
  const links = contexts.slice(1).flatMap((c) => {
    const sc = trace.getSpanContext(c);
    return sc ? [{ context: sc }] : [];
  });
  const span = tracer().startSpan(SPAN.storeAppend, { attributes: { [ATTR.stream]: stream, [ATTR.events]: traces.length }, links }, contexts[0]);
  try {
    return await write();
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** A subscription's batches, each recorded as delivered (see recordDelivery) as it is handed on. */
export async function* traceDeliveries<T extends { stream: string; seq: number; trace?: string }>(batches: AsyncGenerator<T[]>, subscriber = "subscribe"): AsyncGenerator<T[]> {
  for await (const batch of batches) {
    recordDelivery(batch, subscriber);
    yield batch;
  }
}

/**
 * Records the delivery of stored events to one subscriber: one span per event that carries a
 * publisher's trace context, as a child of the publish span, so the trace runs publish → store →
 * deliver across instances. Events published without tracing get no span.
 */
export function recordDelivery(events: readonly { stream: string; seq: number; trace?: string }[], subscriber: string): void {
  if (!tracing.on) return;
  for (const e of events) {
    if (!e.trace) continue;
    const parent = propagation.extract(ROOT_CONTEXT, { traceparent: e.trace });
    tracer()
      .startSpan(SPAN.deliver, { kind: SpanKind.CONSUMER, attributes: { [ATTR.stream]: e.stream, [ATTR.sequence]: e.seq, [ATTR.subscriber]: subscriber } }, parent)
      .end();
  }
}

/** Runs fn inside `ctx` (a request's extracted context), so spans started under it join that trace. */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}
