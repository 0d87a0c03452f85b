import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EventLog, LogObserver } from "../core/log.js";

/** Methods a label may name; any other token a client sends (HTTP/2 allows any) is "other". */
export const METHOD_LABELS: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]);

/**
 * The labels of one request, from fixed sets only: the route is "<method> <template>" (a route
 * template from the code's tables, never a requested path) with the method mapped onto
 * METHOD_LABELS, the status a three-digit code. Every series therefore comes from the code, so
 * no client can add series by inventing methods, paths or statuses (1,500 made-up `:method`
 * tokens once added 1,456 series).
 */
export function requestLabels(route: string, status: string): { route: string; status: string } {
  // Templates hold no space; whatever comes before the last one is the method.
  const space = route.lastIndexOf(" ");
  const method = space < 0 ? "" : route.slice(0, space);
  const template = space < 0 ? route : route.slice(space + 1);
  return { route: `${METHOD_LABELS.has(method) ? method : "other"} ${template}`, status: /^[1-5]\d\d$/.test(status) ? status : "other" };
}

/**
 * Prometheus metrics (prom-client), one registry per service instance, served at GET /metrics.
 * Process metrics (RSS, CPU, event-loop lag, GC) come from prom-client's defaults.
 */
export class Metrics implements LogObserver {
  readonly registry = new Registry();
  readonly #published: Counter<"api">;
  readonly #publishFailures: Counter<"api">;
  readonly #publishSeconds: Histogram<"api">;
  readonly #deliveryLag: Histogram;
  readonly #delivered: Counter;
  /** Requests by route template and status; labels are bounded (requestLabels), whatever the caller passes. */
  readonly requests: { inc(labels: { route: string; status: string }): void };
  /** Responses cut off because their reader stopped taking data (src/server/stall.ts). */
  readonly cut: Counter<"reason">;
  /** Errors caught by a boundary (src/server/boundary.ts), by where they were caught. */
  readonly errorsCaught: Counter<"where">;
  /** Requests, streams and connections refused by a limit (src/server/limits.ts), by limit. */
  readonly limited: Counter<"limit">;
  #log: EventLog | undefined;
  #liveReaders: () => number = () => 0;
  #unsent: () => number = () => 0;
  #inflight: () => number = () => 0;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.#published = new Counter({ name: "events_published_total", help: "Events stored, by API", labelNames: ["api"], registers: [this.registry] });
    this.#publishFailures = new Counter({ name: "publish_failures_total", help: "Publishes that failed in the store, by API", labelNames: ["api"], registers: [this.registry] });
    this.#publishSeconds = new Histogram({
      name: "publish_duration_seconds",
      help: "From a publish reaching the log to its ack (sequenced and stored), by API",
      labelNames: ["api"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [this.registry],
    });
    this.#deliveryLag = new Histogram({
      name: "delivery_lag_seconds",
      help: "From an event's creation to its delivery to a subscriber (the newest event of each delivered batch)",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers: [this.registry],
    });
    this.#delivered = new Counter({ name: "events_delivered_total", help: "Events delivered to subscribers", registers: [this.registry] });
    const requests = new Counter({ name: "http_requests_total", help: "Requests on the documented JSON paths, by route and status", labelNames: ["route", "status"], registers: [this.registry] });
    // One child per bounded label pair, kept: prom-client hashes a label object on every inc.
    const children = new Map<string, { inc(): void }>();
    this.requests = {
      inc: (labels) => {
        const bounded = requestLabels(labels.route, labels.status);
        const key = `${bounded.route}\n${bounded.status}`;
        let child = children.get(key);
        if (!child) children.set(key, (child = requests.labels(bounded)));
        child.inc();
      },
    };
    this.cut = new Counter({ name: "responses_cut_total", help: "Responses (mostly subscriptions) cut off because the client stopped reading: stalled too long, too much unsent, or the slowest when the instance's unsent-bytes budget is full", labelNames: ["reason"], registers: [this.registry] });
    this.errorsCaught = new Counter({ name: "errors_caught_total", help: "Errors caught by an error boundary (request, rpc, stream, background, socket, process); each is also logged once", labelNames: ["where"], registers: [this.registry] });
    this.limited = new Counter({ name: "limited_total", help: "Requests, streams or connections refused or cut by a limit, by limit", labelNames: ["limit"], registers: [this.registry] });
    const self = this;
    this.#gauge("subscribers", "Live subscribers (RPC streams and SSE) on this instance", () => self.#log?.stats.subscribers ?? 0);
    this.#gauge("live_readers", "Live readers holding a subscription slot, on every surface (RPC streams, SSE, Durable Streams long-polls)", () => self.#liveReaders());
    this.#gauge("unsent_bytes", "Response bytes queued in this instance for clients that have not taken them yet (all responses; bounded by MAX_UNSENT_BYTES)", () => self.#unsent());
    this.#gauge("inflight_bytes", "Request body bytes read and not yet answered on this instance (bounded by MAX_INFLIGHT_BYTES)", () => self.#inflight());
    new Counter({
      name: "holes_skipped_total",
      help: "Sequences taken by a publisher that never stored them, skipped by readers after the hole timeout",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(self.#log?.stats.holesSkipped ?? 0);
      },
    });
    new Counter({
      name: "store_errors_total",
      help: "Store operations that failed (publishes and subscriber reads)",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(self.#log?.stats.storeErrors ?? 0);
      },
    });
  }

  /** The log whose counters the gauges read. */
  watch(log: EventLog): void {
    this.#log = log;
  }

  /** A gauge whose value is read at each scrape. */
  #gauge(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /** Where the live_readers gauge reads its count. */
  watchLiveReaders(count: () => number): void {
    this.#liveReaders = count;
  }

  /** Where the inflight_bytes gauge reads the instance's total. */
  watchInflight(bytes: () => number): void {
    this.#inflight = bytes;
  }

  /** Where the unsent_bytes gauge reads the instance's total. */
  watchUnsent(bytes: () => number): void {
    this.#unsent = bytes;
  }

  published(api: string, events: number, seconds: number): void {
    this.#published.inc({ api }, events);
    this.#publishSeconds.observe({ api }, seconds);
  }

  publishFailed(api: string): void {
    this.#publishFailures.inc({ api });
  }

  delivered(events: number, lagMs: number): void {
    this.#delivered.inc(events);
    this.#deliveryLag.observe(Math.max(0, lagMs) / 1000);
  }
}
