import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { parseDuration, signPush, type SailhouseApi } from "./sailhouse.js";
import { messageToJson } from "./json.js";
import { SubscriptionEventSchema } from "../../gen/sailhouse/v1/sailhouse_pb.js";
import type { Subscription } from "../store/sailhouse.js";
import { subscriptionKey } from "../store/sailhouse.js";

export interface SailhouseWorkerOptions {
  /** How often due sends, lapsed wait groups and push deliveries are looked at. */
  intervalMs: number;
  /** A push delivery's lock (its HTTP call must finish within it). */
  pushTimeoutMs: number;
  /** Most pushes per subscription per round. */
  pushBatch: number;
  now: () => number;
  log: Logger;
  /** Posts a push (the push policy's guarded client, src/api/push-policy.ts); resolves with the HTTP status. */
  post: (endpoint: string, headers: Record<string, string>, body: string, timeoutMs: number) => Promise<number>;
  /** Most pushes per second per subscription, whatever its rate_limit says (bursts of as many). */
  maxPerSecond: number;
  /** Where a failed round is logged and counted (src/server/boundary.ts); the log alone otherwise. */
  errors?: { caught(where: "background", err: unknown, fields?: Record<string, unknown>): void };
}

/** Retry backoff for failed pushes: 1 s, 2 s, 4 s, … capped at 5 minutes. */
export function pushBackoffMs(attempts: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempts - 1), 300_000);
}

/**
 * The background side of Sailhouse, one per service instance: appends scheduled sends when due,
 * completes lapsed wait groups, and delivers push subscriptions (POST with Sailhouse-Signature,
 * retried with backoff until the endpoint answers 2xx). Instances share the work through the
 * store's atomic claims, so running several is safe.
 */
export class SailhouseWorker {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  readonly #lastPush = new Map<string, number>();
  /** Per-subscription token buckets for maxPerSecond: tokens left and when they were counted. */
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #seen = new Map<string, Map<string, number>>();

  constructor(
    private readonly api: SailhouseApi,
    private readonly opts: SailhouseWorkerOptions,
  ) {}

  start(): void {
    const loop = (): void => {
      if (this.#stopped) return;
      this.#running = this.round()
        .catch((err: unknown) => {
          if (this.opts.errors) this.opts.errors.caught("background", err, { task: "sailhouse worker round" });
          else this.opts.log.warn({ err }, "sailhouse worker round failed");
        })
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(loop, this.opts.intervalMs);
        });
    };
    this.#timer = setTimeout(loop, this.opts.intervalMs);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
  }

  async round(): Promise<void> {
    await this.api.tick();
    const subs = await this.api.push.subscriptions();
    // One subscription's failure is its own: the others are delivered, and it is logged and counted.
    await Promise.all(
      subs.map((s) =>
        this.#pushSome(s).catch((err: unknown) => {
          if (this.opts.errors) this.opts.errors.caught("background", err, { task: "push delivery", topic: s.topic, subscription: s.name });
          else this.opts.log.warn({ err, topic: s.topic, subscription: s.name }, "push delivery failed");
        }),
      ),
    );
  }

  async #pushSome(sub: Subscription): Promise<void> {
    const key = subscriptionKey(sub.project, sub.topic, sub.name);
    const interval = rateInterval(sub.rateLimit);
    for (let i = 0; i < this.opts.pushBatch; i++) {
      if (interval > 0 && this.opts.now() - (this.#lastPush.get(key) ?? 0) < interval) return;
      if (!this.#token(key)) return;
      const got = await this.api.push.next(sub, this.opts.pushTimeoutMs + 5000);
      if (!got) return;
      const { delivery, event } = got;
      if (this.#duplicate(key, sub.deduplication, event.data)) {
        await this.api.push.delivered(sub, delivery);
        continue;
      }
      this.#lastPush.set(key, this.opts.now());
      const body = JSON.stringify(messageToJson(SubscriptionEventSchema, this.api.push.toEvent(event, sub.topic)));
      let ok = false;
      try {
        const status = await this.opts.post(
          sub.endpoint!,
          {
            "content-type": "application/json",
            // The receiver checks the timestamp against its own clock: always the wall clock.
            "sailhouse-signature": signPush(sub.secret, body, Math.floor(Date.now() / 1000)),
            identifier: sub.name,
            "event-id": event.id,
          },
          body,
          this.opts.pushTimeoutMs,
        );
        ok = status >= 200 && status < 300;
        if (!ok) this.opts.log.info({ subscription: sub.name, topic: sub.topic, status, attempts: delivery.attempts }, "push delivery refused; will retry");
      } catch (err) {
        this.opts.log.info({ subscription: sub.name, topic: sub.topic, err: String(err), attempts: delivery.attempts }, "push delivery failed; will retry");
      }
      if (ok) {
        await this.api.push.delivered(sub, delivery);
      } else {
        await this.api.push.retryAt(sub, delivery, new Date(this.opts.now() + pushBackoffMs(delivery.attempts)));
        return;
      }
    }
  }

  /** Takes one push from the subscription's bucket (maxPerSecond per second, bursts of as many). */
  #token(key: string): boolean {
    const now = this.opts.now();
    const rate = this.opts.maxPerSecond;
    const b = this.#buckets.get(key) ?? { tokens: rate, at: now };
    b.tokens = Math.min(rate, b.tokens + (Math.max(0, now - b.at) / 1000) * rate);
    b.at = now;
    this.#buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Deduplication window: the same data delivered to this subscription within it is skipped (acked). */
  #duplicate(key: string, window: string | undefined, data: unknown): boolean {
    const ms = window ? parseDuration(window) : undefined;
    if (!ms) return false;
    const now = this.opts.now();
    let seen = this.#seen.get(key);
    if (!seen) {
      seen = new Map();
      this.#seen.set(key, seen);
    }
    for (const [h, t] of seen) if (now - t > ms) seen.delete(h);
    const hash = createHash("sha256").update(JSON.stringify(data)).digest("hex");
    if (seen.has(hash)) return true;
    seen.set(hash, now);
    return false;
  }
}

/** "10/s" → 100 ms between deliveries; 0 when unlimited. */
function rateInterval(rate: string | undefined): number {
  const m = rate ? /^(\d+)\/(s|m|h)$/.exec(rate) : null;
  if (!m || Number(m[1]) === 0) return 0;
  return { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "s" | "m" | "h"] / Number(m[1]);
}
