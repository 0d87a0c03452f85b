import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { parseDuration, signPush, type SailhouseApi } from "./sailhouse.js";
import { messageToJson } from "./json.js";
import { SubscriptionEventSchema } from "../../gen/sailhouse/v1/sailhouse_pb.js";
import type { Delivery, PushHealth, Subscription } from "../store/sailhouse.js";
import type { StoredEvent } from "../core/types.js";
import { subscriptionKey } from "../store/sailhouse.js";

export interface SailhouseWorkerOptions {
  /**
   * The longest the worker sleeps (default 30 s). It wakes earlier for work it knows is due and
   * for this instance's own sends and subscription changes; this bound is how soon it sees what
   * only other instances know: sends they scheduled (should they stop before sending them),
   * subscriptions they created, changed or deleted.
   */
  rescanMs: number;
  /** A push delivery's HTTP call must finish within this (its lock lasts 5 s longer). */
  pushTimeoutMs: number;
  /** Deliveries in flight at once per push subscription. */
  pushConcurrency: number;
  now: () => number;
  log: Logger;
  /** Posts a push (the push policy's guarded client, src/api/push-policy.ts); resolves with the HTTP status. */
  post: (endpoint: string, headers: Record<string, string>, body: string, timeoutMs: number, signal?: AbortSignal) => Promise<number>;
  /** Most pushes per second per subscription, whatever its rate_limit says (bursts of as many). */
  maxPerSecond: number;
  /** Where a failed round is logged and counted (src/server/boundary.ts); the log alone otherwise. */
  errors?: { caught(where: "background", err: unknown, fields?: Record<string, unknown>): void };
  /** Push outcomes and how many endpoints are failing (metrics). */
  report?: { pushed(outcome: "delivered" | "failed"): void; failing(endpoints: number): void };
}

/** Retry backoff for failed pushes: 1 s, 2 s, 4 s, … capped at 5 minutes. */
export function pushBackoffMs(attempts: number): number {
  return Math.min(1000 * 2 ** Math.max(0, attempts - 1), 300_000);
}

/** The shortest sleep between two looks at due work (several batches due at once). */
const MIN_SLEEP_MS = 5;

/** A sleep that `wake()` ends early; `stop()` ends it for good. */
class Alarm {
  #wake: (() => void) | undefined;
  /** Set by wake() while nobody sleeps: the next sleep returns at once. */
  #rang = false;
  stopped = false;

  /** Sleeps `ms`, or until woken, or until `also` settles (which may happen long after: it then does nothing). */
  sleep(ms: number, also?: Promise<unknown>): Promise<void> {
    if (this.stopped || this.#rang) {
      this.#rang = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.#wake = done;
      also?.then(done, done);
    });
  }

  wake(): void {
    if (this.#wake) this.#wake();
    else this.#rang = true;
  }

  stop(): void {
    this.stopped = true;
    this.#wake?.();
  }
}

/**
 * The background side of Sailhouse, one per service instance. Instances share the work through
 * the store's atomic claims, so running several is safe.
 *
 * - Scheduled sends and wait group expiries: the worker asks the store when the next one is due
 *   and sleeps until then (or `rescanMs`), woken early by this instance's sends. Nothing polls.
 * - Push subscriptions: kept in memory (reloaded on this instance's changes and every
 *   `rescanMs`), each delivered by a loop of its own with its own concurrency and timeout, so an
 *   endpoint that accepts and never answers holds up only its own subscription; scheduled sends
 *   never wait for deliveries. A loop sleeps until its topic gets an event, a delivery's lock
 *   lapses, or a retry is due. POSTs carry Sailhouse-Signature and are retried with backoff until
 *   the endpoint answers 2xx; a failing endpoint backs off as a whole (no new delivery is tried
 *   before its retry time), is logged, counted, and shown in the subscription list.
 */
export class SailhouseWorker {
  readonly #alarm = new Alarm();
  readonly #subsAlarm = new Alarm();
  /** The earliest instant this instance's own requests said work is due (reset before each look). */
  #dueHint = Infinity;
  #sleepingUntil = 0;
  readonly #loops = new Map<string, PushLoop>();
  /** Loops of deleted subscriptions whose deliveries in flight are still ending (stop() waits for them). */
  readonly #retiring = new Set<Promise<void>>();
  readonly #abort = new AbortController();
  #running: Promise<unknown>[] = [];
  #unlisten: (() => void) | undefined;

  constructor(
    private readonly api: SailhouseApi,
    private readonly opts: SailhouseWorkerOptions,
  ) {}

  start(): void {
    this.#unlisten = this.api.listen({
      dueAt: (at) => {
        this.#dueHint = Math.min(this.#dueHint, at.getTime());
        if (at.getTime() < this.#sleepingUntil) this.#alarm.wake();
      },
      subscriptionsChanged: () => this.#subsAlarm.wake(),
    });
    this.#running = [this.#schedule(), this.#watchSubscriptions()];
  }

  async stop(): Promise<void> {
    this.#unlisten?.();
    this.#alarm.stop();
    this.#subsAlarm.stop();
    this.#abort.abort();
    for (const loop of this.#loops.values()) loop.stop();
    await Promise.all([...this.#running, ...[...this.#loops.values()].map((l) => l.done), ...this.#retiring]);
  }

  #caught(err: unknown, fields: Record<string, unknown>): void {
    if (this.opts.errors) this.opts.errors.caught("background", err, fields);
    else this.opts.log.warn({ err, ...fields }, `${String(fields["task"])} failed`);
  }

  /** Due scheduled sends and lapsed wait groups: look, then sleep until the next is due. */
  async #schedule(): Promise<void> {
    let failures = 0;
    while (!this.#alarm.stopped) {
      this.#dueHint = Infinity;
      let next: number;
      try {
        await this.api.tick();
        next = (await this.api.nextDue())?.getTime() ?? Infinity;
        failures = 0;
      } catch (err) {
        this.#caught(err, { task: "sailhouse scheduled sends" });
        next = this.opts.now() + Math.min(pushBackoffMs(++failures), this.opts.rescanMs);
      }
      const ms = Math.min(Math.max(Math.min(next, this.#dueHint) - this.opts.now(), MIN_SLEEP_MS), this.opts.rescanMs);
      this.#sleepingUntil = this.opts.now() + ms;
      await this.#alarm.sleep(ms);
      this.#sleepingUntil = 0;
    }
  }

  /** Keeps one delivery loop per push subscription, reloading the set on changes and every rescanMs. */
  async #watchSubscriptions(): Promise<void> {
    while (!this.#subsAlarm.stopped) {
      try {
        const subs = await this.api.push.subscriptions();
        const keys = new Set<string>();
        for (const sub of subs) {
          const key = subscriptionKey(sub.project, sub.topic, sub.name);
          keys.add(key);
          const loop = this.#loops.get(key);
          if (loop) loop.update(sub);
          else this.#loops.set(key, new PushLoop(sub, this.api, this.opts, this.#abort.signal, () => this.#reportFailing(), (e, f) => this.#caught(e, f)));
        }
        for (const [key, loop] of this.#loops) {
          if (keys.has(key)) continue;
          loop.stop();
          this.#loops.delete(key);
          this.#retiring.add(loop.done);
          void loop.done.finally(() => this.#retiring.delete(loop.done));
        }
        this.#reportFailing();
      } catch (err) {
        this.#caught(err, { task: "loading push subscriptions" });
      }
      await this.#subsAlarm.sleep(this.opts.rescanMs);
    }
  }

  #reportFailing(): void {
    let n = 0;
    for (const loop of this.#loops.values()) if (loop.failing) n++;
    this.opts.report?.failing(n);
  }
}

/** One push subscription's deliveries: its own loop, concurrency, rate, backoff and deduplication. */
class PushLoop {
  readonly #alarm = new Alarm();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #seen = new Map<string, number>();
  /** Token bucket for maxPerSecond: tokens left and when they were counted. */
  #bucket: { tokens: number; at: number };
  #lastPush = 0;
  #health: PushHealth | undefined;
  readonly done: Promise<void>;

  constructor(
    private sub: Subscription,
    private readonly api: SailhouseApi,
    private readonly opts: SailhouseWorkerOptions,
    private readonly signal: AbortSignal,
    private readonly healthChanged: () => void,
    private readonly caught: (err: unknown, fields: Record<string, unknown>) => void,
  ) {
    this.#health = sub.health;
    this.#bucket = { tokens: opts.maxPerSecond, at: opts.now() };
    this.done = this.#run();
  }

  get failing(): boolean {
    return this.#health !== undefined;
  }

  /** New settings from the store (endpoint, filter, rate, or a health another instance recorded). */
  update(sub: Subscription): void {
    const settingsChanged = sub.endpoint !== this.sub.endpoint || JSON.stringify(sub.filter) !== JSON.stringify(this.sub.filter);
    this.sub = { ...sub, cursor: Math.max(sub.cursor, this.sub.cursor) };
    // A put clears the store's health (a new or fixed endpoint): try again now.
    if (settingsChanged || (this.#health && !sub.health)) this.#health = undefined;
    // Another instance found the endpoint failing: back off with it.
    else if (!this.#health && sub.health) this.#health = sub.health;
    this.#alarm.wake();
  }

  stop(): void {
    this.#alarm.stop();
  }

  #fields(): Record<string, unknown> {
    return { topic: this.sub.topic, subscription: this.sub.name };
  }

  async #run(): Promise<void> {
    let errors = 0;
    while (!this.#alarm.stopped) {
      const now = this.opts.now();
      // A failing endpoint as a whole waits for its retry time: no new delivery is tried before.
      if (this.#health && this.#health.retryAt.getTime() > now) {
        await this.#alarm.sleep(this.#health.retryAt.getTime() - now, this.#anyDone());
        continue;
      }
      if (this.#inFlight.size >= this.opts.pushConcurrency) {
        await this.#alarm.sleep(this.opts.rescanMs, this.#anyDone());
        continue;
      }
      const wait = this.#rateWait(now);
      if (wait > 0) {
        await this.#alarm.sleep(wait);
        continue;
      }
      // Taken before looking, so an append between the look and the wait is not missed.
      const appended = this.api.push.watch(this.sub);
      try {
        const got = await this.api.push.next(this.sub, this.opts.pushTimeoutMs + 5000);
        errors = 0;
        if (got) {
          appended.cancel();
          this.#takeToken();
          this.#track(this.#deliver(got.delivery, got.event));
          continue;
        }
        // Nothing due: sleep until the topic gets an event, a lock lapses or a delivery ends.
        const retry = (await this.api.push.nextRetry(this.sub))?.getTime();
        const ms = Math.min(retry === undefined ? Infinity : Math.max(retry - this.opts.now(), MIN_SLEEP_MS), this.opts.rescanMs);
        await this.#alarm.sleep(ms, Promise.race([appended.wait(ms), this.#anyDone()]));
      } catch (err) {
        this.caught(err, { task: "push delivery", ...this.#fields() });
        await this.#alarm.sleep(Math.min(pushBackoffMs(++errors), this.opts.rescanMs));
      } finally {
        appended.cancel();
      }
    }
    await Promise.all(this.#inFlight);
  }

  /** Resolves when any delivery in flight ends (never when none is). */
  #anyDone(): Promise<void> {
    return this.#inFlight.size > 0 ? Promise.race(this.#inFlight) : new Promise<void>(() => {});
  }

  #track(p: Promise<void>): void {
    const tracked: Promise<void> = p
      .catch((err: unknown) => this.caught(err, { task: "push delivery", ...this.#fields() }))
      .finally(() => {
        this.#inFlight.delete(tracked);
        this.#alarm.wake();
      });
    this.#inFlight.add(tracked);
  }

  /** How long until rate_limit and maxPerSecond allow the next push (0: now). */
  #rateWait(now: number): number {
    const interval = rateInterval(this.sub.rateLimit);
    const byRate = interval > 0 ? this.#lastPush + interval - now : 0;
    const tokens = this.#tokensAt(now);
    const byBucket = tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / this.opts.maxPerSecond) * 1000);
    return Math.max(byRate, byBucket, 0);
  }

  /** The bucket refilled at maxPerSecond up to maxPerSecond tokens. */
  #tokensAt(now: number): number {
    const rate = this.opts.maxPerSecond;
    return Math.min(rate, this.#bucket.tokens + (Math.max(0, now - this.#bucket.at) / 1000) * rate);
  }

  #takeToken(): void {
    const now = this.opts.now();
    this.#bucket = { tokens: this.#tokensAt(now) - 1, at: now };
    this.#lastPush = now;
  }

  async #deliver(delivery: Delivery, event: StoredEvent): Promise<void> {
    const sub = this.sub;
    if (this.#duplicate(sub.deduplication, event.data)) {
      await this.api.push.delivered(sub, delivery);
      return;
    }
    const body = JSON.stringify(messageToJson(SubscriptionEventSchema, this.api.push.toEvent(event, sub.topic)));
    let failure: string | undefined;
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
        this.signal,
      );
      if (status < 200 || status >= 300) failure = `the endpoint answered ${status}`;
    } catch (err) {
      failure = String(err instanceof Error ? err.message : err).slice(0, 200);
    }
    if (this.signal.aborted) return; // stopping: the lock lapses and another look delivers it
    this.opts.report?.pushed(failure === undefined ? "delivered" : "failed");
    if (failure === undefined) {
      await this.api.push.delivered(sub, delivery);
      if (this.#health) await this.#setHealth(undefined);
      return;
    }
    await this.api.push.retryAt(sub, delivery, new Date(this.opts.now() + pushBackoffMs(delivery.attempts)));
    const failures = (this.#health?.failures ?? 0) + 1;
    const now = this.opts.now();
    await this.#setHealth({ failures, lastError: failure, failingSince: this.#health?.failingSince ?? new Date(now), retryAt: new Date(now + pushBackoffMs(failures)) });
  }

  async #setHealth(health: PushHealth | undefined): Promise<void> {
    const was = this.#health;
    this.#health = health;
    this.healthChanged();
    const fields = { ...this.#fields(), endpoint: this.sub.endpoint };
    if (!health) this.opts.log.info({ ...fields, failures: was?.failures }, "push endpoint delivers again");
    else if (!was) this.opts.log.warn({ ...fields, err: health.lastError, retryAt: health.retryAt }, "push endpoint failing; backing off");
    else this.opts.log.info({ ...fields, err: health.lastError, failures: health.failures, retryAt: health.retryAt }, "push endpoint still failing");
    await this.api.push.setHealth(this.sub, health);
  }

  /** Deduplication window: the same data delivered to this subscription within it is skipped (acked). */
  #duplicate(window: string | undefined, data: unknown): boolean {
    const ms = window ? parseDuration(window) : undefined;
    if (!ms) return false;
    const now = this.opts.now();
    for (const [h, t] of this.#seen) if (now - t > ms) this.#seen.delete(h);
    const hash = createHash("sha256").update(JSON.stringify(data)).digest("hex");
    if (this.#seen.has(hash)) return true;
    this.#seen.set(hash, now);
    return false;
  }
}

/** "10/s" → 100 ms between deliveries; 0 when unlimited. */
function rateInterval(rate: string | undefined): number {
  const m = rate ? /^(\d+)\/(s|m|h)$/.exec(rate) : null;
  if (!m || Number(m[1]) === 0) return 0;
  return { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "s" | "m" | "h"] / Number(m[1]);
}
