import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  CreateWaitGroupInstanceRequestSchema,
  CreateWaitGroupInstanceResponseSchema,
  DeleteSubscriptionResponseSchema,
  ListSubscriptionsRequestSchema,
  ListSubscriptionsResponseSchema,
  SubscriptionInfoSchema,
  type DeleteSubscriptionResponse,
  type ListSubscriptionsRequest,
  type ListSubscriptionsResponse,
  type SubscriptionInfo,
  ListSubscriptionEventsRequestSchema,
  ListSubscriptionEventsResponseSchema,
  PullEventResponseSchema,
  PutSubscriptionRequestSchema,
  PutSubscriptionResponseSchema,
  SendEventRequestSchema,
  SendEventResponseSchema,
  StartWaitGroupInstanceRequestSchema,
  SubscriptionEventSchema,
  SubscriptionRefSchema,
  EventRefSchema,
  type CreateWaitGroupInstanceRequest,
  type CreateWaitGroupInstanceResponse,
  type EventRef,
  type ListSubscriptionEventsRequest,
  type ListSubscriptionEventsResponse,
  type PullEventResponse,
  type PutSubscriptionRequest,
  type PutSubscriptionResponse,
  type SendEventRequest,
  type SendEventResponse,
  type StartWaitGroupInstanceRequest,
  type SubscriptionEvent,
  type SubscriptionRef,
} from "../../gen/sailhouse/v1/sailhouse_pb.js";
import { SAILHOUSE_SEND_KEY_PREFIX, SAILHOUSE_WAITGROUP_KEY_PREFIX, type JsonObject, type JsonValue, type StoredEvent, type StreamId } from "../core/types.js";
import type { Delivery, PushHealth, SailhouseStore, Subscription } from "../store/sailhouse.js";
import { asObject } from "./mapping.js";
import { eventCost } from "../core/json.js";
import { decodeSubscriptionsToken, pushStatus, subscriptionBacklogs, subscriptionsToken } from "./sailhouse-status.js";
import { checkRequired, DEFAULT_PROJECT, headWithin, invalidField, jsonToValue, pageLimit, rfc3339, valueToJson, type ApiDeps, type CallContext } from "./common.js";

/** How long a pulled event stays locked before it is due again (Sailhouse: 30 s). */
export const PULL_LOCK_MS = 30_000;
/** Wait groups without a ttl expire after a day, so none stays open for ever. */
export const DEFAULT_WAIT_GROUP_TTL_MS = 24 * 60 * 60 * 1000;
/** The largest event Sailhouse accepts (the JSON body of a send). */
export const MAX_EVENT_BYTES = 4 * 1024 * 1024;

const FILTER_CONDITIONS = ["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "greater_than", "less_than", "exists", "not_exists"] as const;

/** "30s", "5m", "2h", "1d", "6h0m0s" → milliseconds; undefined when malformed or over MAX_DURATION_MS. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim();
  // "10m", "24h", and Go's time.Duration.String() ("6h0m0s", "1.5s"), which Sailhouse's Go SDK sends as time_window.
  if (t.length === 0 || t.length > 64 || !/^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d))+$/.test(t)) return undefined;
  const unit = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/g)) total += Number(m[1]) * unit[m[2] as keyof typeof unit];
  // Longer than a century is refused: an expiry that far out is not a date (wait group ttl + now).
  return total <= MAX_DURATION_MS ? Math.floor(total) : undefined;
}

/** The longest duration parseDuration accepts (100 years). */
export const MAX_DURATION_MS = 100 * 365.25 * 86_400_000;

/** The value at a dot path of `data` (undefined when absent). */
function at(data: JsonValue, path: string): JsonValue | undefined {
  let cur: JsonValue | undefined = data;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = Array.isArray(cur) ? cur[Number(part)] : cur[part];
  }
  return cur;
}

/**
 * Sailhouse's Go SDK registers a single `{path, value}` filter (its FilterOption), the JS SDK and
 * the docs a `{filters: [{path, condition, value}], operator}`; the single form means equals.
 */
export function normalizeFilter(filter: JsonValue | undefined): JsonValue | undefined {
  if (filter === null || typeof filter !== "object" || Array.isArray(filter) || "filters" in filter || !("path" in filter)) return filter;
  return { filters: [{ path: filter["path"] ?? null, condition: "equals", ...("value" in filter ? { value: filter["value"] ?? null } : {}) }], operator: "and" };
}

/** Checks a subscription filter's shape; throws invalid_argument naming the problem. */
export function checkFilter(filter: JsonValue | undefined): void {
  if (filter === undefined || filter === null || typeof filter === "boolean") return;
  const loc = ["body", "filter"];
  if (typeof filter !== "object" || Array.isArray(filter)) throw invalidField(loc, "filter must be true, false, null or {filters, operator}");
  const { filters, operator } = filter as { filters?: unknown; operator?: unknown };
  if (operator !== undefined && operator !== "and" && operator !== "or") throw invalidField([...loc, "operator"], 'operator must be "and" or "or"');
  if (!Array.isArray(filters)) throw invalidField([...loc, "filters"], "filters must be a list of {path, condition, value}");
  filters.forEach((f: unknown, i) => {
    const c = f as { path?: unknown; condition?: unknown; value?: unknown };
    if (typeof c?.path !== "string" || c.path === "") throw invalidField([...loc, "filters", i, "path"], "path must be a non-empty string");
    if (!FILTER_CONDITIONS.includes(c.condition as never)) throw invalidField([...loc, "filters", i, "condition"], `condition must be one of ${FILTER_CONDITIONS.join(", ")}`);
    if (c.value !== undefined && typeof c.value !== "string") throw invalidField([...loc, "filters", i, "value"], "value must be a string");
  });
}

/** Whether an event's data passes a subscription's filter. */
export function matchesFilter(filter: JsonValue | undefined, data: JsonValue): boolean {
  if (filter === undefined || filter === null || filter === true) return true;
  if (filter === false) return false;
  const { filters, operator } = filter as { filters: { path: string; condition: string; value?: string }[]; operator?: string };
  const test = (f: { path: string; condition: string; value?: string }): boolean => {
    const v = at(data, f.path);
    const s = v === undefined ? undefined : typeof v === "string" ? v : JSON.stringify(v);
    const want = f.value ?? "";
    switch (f.condition) {
      case "exists":
        return v !== undefined;
      case "not_exists":
        return v === undefined;
      case "equals":
        return s === want;
      case "not_equals":
        return s !== want;
      case "contains":
        return s !== undefined && s.includes(want);
      case "not_contains":
        return s === undefined || !s.includes(want);
      case "starts_with":
        return s !== undefined && s.startsWith(want);
      case "ends_with":
        return s !== undefined && s.endsWith(want);
      case "greater_than":
        return typeof v === "number" && v > Number(want);
      case "less_than":
        return typeof v === "number" && v < Number(want);
      default:
        return false;
    }
  };
  return operator === "or" ? filters.some(test) : filters.every(test);
}

/** Sailhouse-Signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as Sailhouse's SDKs verify it. */
export function signPush(secret: string, body: string, unixSeconds: number): string {
  return `t=${unixSeconds},v1=${createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex")}`;
}

/**
 * What the background worker (sailhouse-worker.ts) is told by this instance's requests, so it can
 * sleep until something is due instead of polling: a send scheduled (or a wait group that will
 * lapse) at an instant, and push subscriptions created, changed or deleted.
 */
export interface SailhouseSignals {
  dueAt(at: Date): void;
  subscriptionsChanged(): void;
}

export interface SailhouseDeps extends ApiDeps {
  sailhouse: SailhouseStore;
  /** Where push endpoints may point (src/api/push-policy.ts): why one is refused, or undefined. */
  pushPolicy?: { check(endpoint: string): Promise<string | undefined> };
  /** Most bytes of one page of a list (RESPONSE_BATCH_BYTES). */
  responseBytes?: number;
}

/**
 * Sailhouse: topics (streams of kind "topic"), subscriptions with at-least-once delivery (pull with
 * 30 s locks, ack, nack; push by the worker in sailhouse-worker.ts), delayed sends and wait groups.
 */
export function sailhouseApi(deps: SailhouseDeps) {
  const store = deps.sailhouse;
  const responseBytes = deps.responseBytes ?? 1024 * 1024;
  const listeners = new Set<SailhouseSignals>();
  const signal = {
    dueAt: (at: Date) => listeners.forEach((l) => l.dueAt(at)),
    subscriptionsChanged: () => listeners.forEach((l) => l.subscriptionsChanged()),
  };
  const project = (ctx: CallContext): string => ctx.project ?? DEFAULT_PROJECT;
  const topic = (projectName: string, slug: string): StreamId => ({ project: projectName, kind: "topic", key: slug });

  function toSubscriptionEvent(e: StoredEvent, topicSlug: string, queryablePath?: string): SubscriptionEvent {
    const msg = create(SubscriptionEventSchema, {
      id: e.id,
      topicId: topicSlug,
      data: asObject(e.data),
      metadata: asObject(e.metadata),
      timestamp: rfc3339(e.createdAt),
    });
    if (queryablePath) {
      const v = at(e.data, queryablePath);
      if (v !== undefined) msg.queryableValue = typeof v === "string" ? v : JSON.stringify(v);
    }
    return msg;
  }

  function toInfo(s: Subscription): SubscriptionInfo {
    return create(SubscriptionInfoSchema, {
      id: `${s.topic}/${s.name}`,
      topicId: s.topic,
      slug: s.name,
      type: s.type,
      ...(s.endpoint !== undefined ? { endpoint: s.endpoint } : {}),
      ...(s.filter !== undefined ? { filter: jsonToValue(s.filter) } : {}),
      ...(s.rateLimit !== undefined ? { rateLimit: s.rateLimit } : {}),
      ...(s.deduplication !== undefined ? { deduplication: s.deduplication } : {}),
      createdAt: rfc3339(s.createdAt),
      ...(s.type === "push" ? { pushStatus: pushStatus(s) } : {}),
    });
  }

  async function subscription(ctx: CallContext, ref: { topicSlug: string; subscriptionSlug: string }, createIfMissing: boolean): Promise<Subscription> {
    const p = project(ctx);
    const existing = await store.getSubscription(p, ref.topicSlug, ref.subscriptionSlug);
    if (existing) return existing;
    if (!createIfMissing) throw new ConnectError(`subscription ${ref.subscriptionSlug} of topic ${ref.topicSlug} not found`, Code.NotFound);
    const head = await deps.log.store.head(topic(p, ref.topicSlug));
    return (await store.putSubscription({ project: p, topic: ref.topicSlug, name: ref.subscriptionSlug, type: "pull" }, head, randomBytes(24).toString("hex"))).subscription;
  }

  /** Records deliveries for the events appended since the subscription last looked (filter applied). */
  async function catchUp(sub: Subscription): Promise<void> {
    const stream = topic(sub.project, sub.topic);
    for (let round = 0; round < 20; round++) {
      const page = await deps.log.list(stream, sub.cursor, 500);
      if (page.next <= sub.cursor) return;
      const now = new Date(deps.now());
      const deliveries: Delivery[] = page.events
        .filter((e) => matchesFilter(sub.filter, e.data))
        .map((e) => ({ eventId: e.id, seq: e.seq, acked: false, lockedUntil: now, attempts: 0 }));
      await store.advance(sub, sub.cursor, page.next, deliveries);
      const fresh = await store.getSubscription(sub.project, sub.topic, sub.name);
      if (!fresh) return;
      sub.cursor = fresh.cursor;
      if (!page.hasMore) return;
    }
  }

  async function eventAt(sub: Subscription, seq: number): Promise<StoredEvent | undefined> {
    const [e] = await deps.log.store.read(topic(sub.project, sub.topic), seq - 1, 1);
    return e && e.seq === seq && !e.void ? e : undefined;
  }

  /** Locks and returns the next due event of the subscription, or undefined. */
  async function next(sub: Subscription, lockMs: number): Promise<{ delivery: Delivery; event: StoredEvent } | undefined> {
    await catchUp(sub);
    for (;;) {
      const delivery = await store.claim(sub, new Date(deps.now()), lockMs);
      if (!delivery) return undefined;
      const event = await eventAt(sub, delivery.seq);
      if (event && !(event.expireAt && event.expireAt.getTime() <= deps.now().getTime())) return { delivery, event };
      await store.ack(sub, delivery.eventId); // the event is gone (expired): nothing left to deliver
    }
  }

  async function publishNow(p: string, slug: string, id: string, data: JsonObject, metadata: JsonObject, waitGroup: string | undefined): Promise<void> {
    const extra: JsonObject = {};
    if (waitGroup !== undefined) extra["wait_group_instance_id"] = waitGroup;
    // The id doubles as idempotency key: a scheduled send retried after a crash is appended once.
    // The key is new (a fresh id), so it is not looked up before the insert (keysAreNew).
    await deps.log.publish(topic(p, slug), [{ id, eventType: "", data, metadata, extra, idempotencyKey: `${SAILHOUSE_SEND_KEY_PREFIX}${id}` }], { source: "sailhouse", keysAreNew: true, internalKeys: true });
  }

  /** Completes a wait group once (the caller that wins the status change publishes the event). */
  async function completeWaitGroup(p: string, id: string, from: ("open" | "in_progress")[], status: "completed" | "expired"): Promise<boolean> {
    if (!(await store.setWaitGroupStatus(id, from, "completed"))) return false;
    const g = await store.getWaitGroup(p, id);
    if (!g) return false;
    try {
      await deps.log.publish(topic(p, g.topic), [
        { eventType: "", data: { wait_group_instance_id: id, status }, metadata: {}, extra: { wait_group_instance_id: id }, idempotencyKey: `${SAILHOUSE_WAITGROUP_KEY_PREFIX}${id}` },
      ], { source: "sailhouse", internalKeys: true });
      return true;
    } catch (err) {
      // Not published: reopen it so the next check (an ack, a start, the sweeper) tries again.
      await store.setWaitGroupStatus(id, ["completed"], from.includes("in_progress") ? "in_progress" : "open");
      throw err;
    }
  }

  async function checkWaitGroup(p: string, id: string): Promise<void> {
    const g = await store.getWaitGroup(p, id);
    if (g && g.status === "in_progress" && g.members.every((m) => g.acked.includes(m))) await completeWaitGroup(p, id, ["in_progress"], "completed");
  }

  /** After an ack: counts it for the event's wait group. */
  async function acked(sub: Subscription, delivery: Delivery): Promise<void> {
    const event = await eventAt(sub, delivery.seq);
    const group = event?.extra?.["wait_group_instance_id"];
    if (typeof group !== "string") return;
    await store.ackWaitGroupMember(group, event!.id);
    await checkWaitGroup(sub.project, group);
  }

  const api = {
    ...subscriptionBacklogs(deps),
    async sendEvent(req: SendEventRequest, ctx: CallContext): Promise<SendEventResponse> {
      checkRequired(SendEventRequestSchema, req);
      const p = project(ctx);
      let sendAt: number | undefined;
      if (req.sendAt !== undefined) {
        sendAt = Date.parse(req.sendAt);
        if (Number.isNaN(sendAt)) throw invalidField(["body", "send_at"], "send_at must be an RFC 3339 timestamp", "value_error", req.sendAt);
      }
      const waitGroup = req.waitGroupInstanceId;
      if (waitGroup !== undefined) {
        const g = await store.getWaitGroup(p, waitGroup);
        if (!g) throw new ConnectError(`wait group instance ${waitGroup} not found`, Code.NotFound);
        if (g.status === "completed") throw new ConnectError(`wait group instance ${waitGroup} is already complete`, Code.FailedPrecondition);
      }
      const id = randomUUID();
      const data = (req.data ?? {}) as JsonObject;
      const metadata = (req.metadata ?? {}) as JsonObject;
      if (waitGroup !== undefined) await store.addWaitGroupMember(waitGroup, id);
      try {
        if (sendAt !== undefined && sendAt > deps.now().getTime()) {
          await store.schedule({ id, project: p, topic: req.topicSlug, data, metadata, sendAt: new Date(sendAt), ...(waitGroup !== undefined ? { waitGroupInstanceId: waitGroup } : {}) });
          signal.dueAt(new Date(sendAt));
        } else {
          await publishNow(p, req.topicSlug, id, data, metadata, waitGroup);
        }
      } catch (err) {
        if (waitGroup !== undefined) await store.removeWaitGroupMember(waitGroup, id).catch(() => {});
        throw err;
      }
      return create(SendEventResponseSchema, { id });
    },

    async putSubscription(req: PutSubscriptionRequest, ctx: CallContext): Promise<PutSubscriptionResponse> {
      checkRequired(PutSubscriptionRequestSchema, req);
      if (req.type !== "pull" && req.type !== "push") throw invalidField(["body", "type"], 'type must be "pull" or "push"', "literal_error", req.type);
      if (req.type === "push") {
        let url: URL | undefined;
        try {
          url = req.endpoint ? new URL(req.endpoint) : undefined;
        } catch {
          url = undefined;
        }
        if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) throw invalidField(["body", "endpoint"], "push subscriptions need an http(s) endpoint URL", "value_error", req.endpoint);
        const refused = await deps.pushPolicy?.check(req.endpoint!);
        if (refused) throw invalidField(["body", "endpoint"], `push endpoint refused: ${refused}`, "value_error");
      }
      const filter = normalizeFilter(req.filter ? valueToJson(req.filter, ["body", "filter"]) : undefined);
      checkFilter(filter);
      if (req.rateLimit !== undefined && !/^\d+\/(s|m|h)$/.test(req.rateLimit)) throw invalidField(["body", "rate_limit"], 'rate_limit must look like "10/s", "100/m" or "1000/h"', "value_error", req.rateLimit);
      if (req.deduplication !== undefined && parseDuration(req.deduplication) === undefined) throw invalidField(["body", "deduplication"], 'deduplication must be a duration such as "5m"', "value_error", req.deduplication);
      const p = project(ctx);
      const head = await deps.log.store.head(topic(p, req.topicSlug));
      const { outcome, subscription } = await store.putSubscription(
        {
          project: p,
          topic: req.topicSlug,
          name: req.subscriptionSlug,
          type: req.type,
          ...(req.type === "push" && req.endpoint !== undefined ? { endpoint: req.endpoint } : {}),
          ...(filter !== undefined && filter !== null ? { filter } : {}),
          ...(req.rateLimit !== undefined ? { rateLimit: req.rateLimit } : {}),
          ...(req.deduplication !== undefined ? { deduplication: req.deduplication } : {}),
        },
        head,
        randomBytes(24).toString("hex"),
      );
      // Any put may turn a push subscription into a pull one (or back), or end a backoff.
      if (req.type === "push" || outcome !== "none") signal.subscriptionsChanged();
      return create(PutSubscriptionResponseSchema, { outcome, ...(subscription.type === "push" ? { secret: subscription.secret } : {}) });
    },

    async listSubscriptions(req: ListSubscriptionsRequest, ctx: CallContext): Promise<ListSubscriptionsResponse> {
      checkRequired(ListSubscriptionsRequestSchema, req, ["path"]);
      const limit = pageLimit(req.limit, ["query", "limit"]);
      const after = req.pageToken ? decodeSubscriptionsToken(req.pageToken) : undefined;
      // One more than asked tells whether another page follows; a page also ends at responseBytes.
      const found = await store.subscriptionsPage(project(ctx), { topic: req.topicSlug, ...(after ? { after } : {}), limit: limit + 1 });
      const page = headWithin(found.slice(0, limit), (sub) => Buffer.byteLength(JSON.stringify(sub)), responseBytes);
      const last = page[page.length - 1];
      return create(ListSubscriptionsResponseSchema, { subscriptions: page.map(toInfo), nextPageToken: found.length > page.length && last ? subscriptionsToken(last) : "" });
    },

    async getSubscription(req: SubscriptionRef, ctx: CallContext): Promise<SubscriptionInfo> {
      checkRequired(SubscriptionRefSchema, req, ["path"]);
      return toInfo(await subscription(ctx, req, false));
    },

    async deleteSubscription(req: SubscriptionRef, ctx: CallContext): Promise<DeleteSubscriptionResponse> {
      checkRequired(SubscriptionRefSchema, req, ["path"]);
      if (!(await store.deleteSubscription(project(ctx), req.topicSlug, req.subscriptionSlug))) {
        throw new ConnectError(`subscription ${req.subscriptionSlug} of topic ${req.topicSlug} not found`, Code.NotFound);
      }
      signal.subscriptionsChanged();
      return create(DeleteSubscriptionResponseSchema, {});
    },

    async pullEvent(req: SubscriptionRef, ctx: CallContext): Promise<PullEventResponse> {
      checkRequired(SubscriptionRefSchema, req);
      const sub = await subscription(ctx, req, true);
      const got = await next(sub, PULL_LOCK_MS);
      return create(PullEventResponseSchema, got ? { found: true, event: toSubscriptionEvent(got.event, req.topicSlug) } : { found: false });
    },

    /** Each due event of the subscription, locked as it is sent; waits for new ones until the call ends. */
    async streamSubscription(req: SubscriptionRef, ctx: CallContext): Promise<AsyncIterable<SubscriptionEvent>> {
      checkRequired(SubscriptionRefSchema, req);
      const sub = await subscription(ctx, req, true);
      const stream = topic(sub.project, sub.topic);
      return (async function* () {
        const wake = deps.log.subscribe(stream, await deps.log.store.head(stream), ctx.signal);
        while (!ctx.signal.aborted) {
          const got = await next(sub, PULL_LOCK_MS);
          if (got) {
            yield toSubscriptionEvent(got.event, req.topicSlug);
            continue;
          }
          // Nothing due: wait for an append to the topic, or re-check after a second (locks lapse, nacks).
          const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 1000).unref());
          const r = await Promise.race([wake.next(), timeout]);
          if (r !== "timeout" && r.done) return;
        }
      })();
    },

    async ackEvent(req: EventRef, ctx: CallContext): Promise<void> {
      checkRequired(EventRefSchema, req);
      const sub = await subscription(ctx, req, false);
      // An event appended since the subscription last looked has no delivery record yet.
      const delivery = (await store.ack(sub, req.eventId)) ?? (await catchUp(sub), await store.ack(sub, req.eventId));
      if (!delivery) throw new ConnectError(`event ${req.eventId} not found in subscription ${req.subscriptionSlug}`, Code.NotFound);
      await acked(sub, delivery);
    },

    async nackEvent(req: EventRef, ctx: CallContext): Promise<void> {
      checkRequired(EventRefSchema, req);
      const sub = await subscription(ctx, req, false);
      const now = new Date(deps.now());
      if (!(await store.release(sub, req.eventId, now)) && !(await catchUp(sub), await store.release(sub, req.eventId, now))) {
        throw new ConnectError(`event ${req.eventId} not found (or already acked) in subscription ${req.subscriptionSlug}`, Code.NotFound);
      }
    },

    async listSubscriptionEvents(req: ListSubscriptionEventsRequest, ctx: CallContext): Promise<ListSubscriptionEventsResponse> {
      checkRequired(ListSubscriptionEventsRequestSchema, req);
      const sub = await subscription(ctx, req, false);
      const limit = pageLimit(req.limit, ["query", "limit"]);
      const offset = req.offset ?? 0;
      if (offset < 0) throw invalidField(["query", "offset"], "offset must not be negative", "value_error", offset);
      let since = sub.createdAt.getTime();
      if (req.timeWindow !== undefined) {
        const window = parseDuration(req.timeWindow);
        if (window === undefined) throw invalidField(["query", "time_window"], 'time_window must be a duration such as "10m"', "value_error", req.timeWindow);
        since = Math.max(since, deps.now().getTime() - window);
      }
      const stream = topic(sub.project, sub.topic);
      // Events the subscription has seen (created at or after it) that its filter matches: the
      // first `offset` are skipped (counted, not kept), then a page of at most `limit` events and
      // responseBytes (a larger event comes alone). A page cut by bytes answers its own size as
      // `limit`, so offset + limit continues it, and a client that stops at a page shorter than
      // `limit` does not stop there.
      let cursor = await deps.log.store.cursorAt(stream, new Date(since - 1));
      const page: StoredEvent[] = [];
      let skipped = 0;
      let bytes = 0;
      let cut = false;
      read: for (;;) {
        const listed = await deps.log.list(stream, cursor, 500);
        for (const e of listed.events) {
          if (e.createdAt.getTime() < since || !matchesFilter(sub.filter, e.data)) continue;
          if (skipped < offset) {
            skipped++;
            continue;
          }
          const b = eventCost(e).bytes;
          if (page.length === limit) break read;
          if (page.length > 0 && bytes + b > responseBytes) {
            cut = true;
            break read;
          }
          page.push(e);
          bytes += b;
        }
        if (!listed.hasMore || listed.next <= cursor) break;
        cursor = listed.next;
      }
      return create(ListSubscriptionEventsResponseSchema, {
        events: page.map((e) => toSubscriptionEvent(e, req.topicSlug, req.queryablePath)),
        offset,
        limit: cut ? page.length : limit,
      });
    },

    async createWaitGroupInstance(req: CreateWaitGroupInstanceRequest, ctx: CallContext): Promise<CreateWaitGroupInstanceResponse> {
      checkRequired(CreateWaitGroupInstanceRequestSchema, req);
      let ttl = DEFAULT_WAIT_GROUP_TTL_MS;
      if (req.ttl !== undefined) {
        const parsed = parseDuration(req.ttl);
        if (parsed === undefined || parsed <= 0) throw invalidField(["body", "ttl"], 'ttl must be a duration such as "30s", "10m" or "2h"', "value_error", req.ttl);
        ttl = parsed;
      }
      const id = randomUUID();
      const now = deps.now().getTime();
      await store.createWaitGroup({ id, project: project(ctx), topic: req.topic, status: "open", members: [], acked: [], createdAt: new Date(now), expiresAt: new Date(now + ttl) });
      signal.dueAt(new Date(now + ttl));
      return create(CreateWaitGroupInstanceResponseSchema, { waitGroupInstanceId: id });
    },

    async startWaitGroupInstance(req: StartWaitGroupInstanceRequest, ctx: CallContext): Promise<void> {
      checkRequired(StartWaitGroupInstanceRequestSchema, req);
      const p = project(ctx);
      const g = await store.getWaitGroup(p, req.waitGroupInstanceId);
      if (!g) throw new ConnectError(`wait group instance ${req.waitGroupInstanceId} not found`, Code.NotFound);
      await store.setWaitGroupStatus(g.id, ["open"], "in_progress");
      await checkWaitGroup(p, g.id);
    },

    /** Tells `listener` of this instance's schedules and subscription changes; returns the unsubscribe. */
    listen(listener: SailhouseSignals): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    /** When background work is next due (scheduled sends, wait group expiries), from the store. */
    nextDue: () => store.nextDue(),

    /** Background work, called by the worker: due scheduled sends, then lapsed wait groups. */
    async tick(): Promise<void> {
      const now = new Date(deps.now());
      for (const item of await store.claimDue(now, 10_000, 100)) {
        await publishNow(item.project, item.topic, item.id, item.data, item.metadata, item.waitGroupInstanceId);
        await store.finishScheduled(item.id);
      }
      for (const g of await store.expiredWaitGroups(now)) await completeWaitGroup(g.project, g.id, ["open", "in_progress"], "expired");
    },

    /** Delivery helpers for the push worker. */
    push: {
      subscriptions: () => store.pushSubscriptions(),
      next,
      /** Something to wait on for appends to the subscription's topic (take it before looking). */
      watch: (sub: Subscription) => deps.log.watch(topic(sub.project, sub.topic)),
      nextRetry: (sub: Subscription) => store.nextRetry(sub),
      setHealth: (sub: Subscription, health: PushHealth | undefined) => store.setPushHealth(sub, health),
      async delivered(sub: Subscription, delivery: Delivery): Promise<void> {
        if (await store.ack(sub, delivery.eventId)) await acked(sub, delivery);
      },
      retryAt: (sub: Subscription, delivery: Delivery, at: Date) => store.release(sub, delivery.eventId, at),
      toEvent: (e: StoredEvent, slug: string) => toSubscriptionEvent(e, slug),
    },
  };
  return api;
}

export type SailhouseApi = ReturnType<typeof sailhouseApi>;
