import { Long, type Collection, type Filter } from "mongodb";
import type { JsonObject, JsonValue } from "../../core/types.js";
import type { Delivery, PushHealth, SailhouseStore, ScheduledEvent, Subscription, SubscriptionFields, WaitGroup, WaitGroupStatus } from "../sailhouse.js";
import { subscriptionKey } from "../sailhouse.js";
import type { MongoConnection } from "./client.js";
import { isDuplicateKey } from "./errors.js";
import { num } from "./index.js";

interface SubDoc {
  _id: string;
  project: string;
  topic: string;
  name: string;
  type: "pull" | "push";
  endpoint?: string;
  /** JSON text: filters are kept exactly as given. */
  filter?: string;
  rate_limit?: string;
  deduplication?: string;
  secret: string;
  cursor: Long | number;
  created_at: Date;
  push_health?: { failures: number; last_error: string; failing_since: Date; retry_at: Date };
}

interface DeliveryDoc {
  _id: string;
  sub: string;
  event_id: string;
  seq: Long | number;
  acked: boolean;
  locked_until: Date;
  attempts: number;
}

interface ScheduledDoc {
  _id: string;
  project: string;
  topic: string;
  /** JSON text of {data, metadata}. */
  payload: string;
  wait_group_instance_id?: string;
  send_at: Date;
  leased_until: Date;
}

interface WaitGroupDoc {
  _id: string;
  project: string;
  topic: string;
  status: WaitGroupStatus;
  expires_at?: Date;
  members: string[];
  acked: string[];
  created_at: Date;
}

function settings(f: SubscriptionFields): Partial<SubDoc> {
  const out: Partial<SubDoc> = { type: f.type };
  if (f.endpoint !== undefined) out.endpoint = f.endpoint;
  if (f.filter !== undefined) out.filter = JSON.stringify(f.filter);
  if (f.rateLimit !== undefined) out.rate_limit = f.rateLimit;
  if (f.deduplication !== undefined) out.deduplication = f.deduplication;
  return out;
}

function toSubscription(d: SubDoc): Subscription {
  const s: Subscription = { project: d.project, topic: d.topic, name: d.name, type: d.type, secret: d.secret, cursor: num(d.cursor), createdAt: d.created_at };
  if (d.endpoint !== undefined) s.endpoint = d.endpoint;
  if (d.filter !== undefined) s.filter = JSON.parse(d.filter) as JsonValue;
  if (d.rate_limit !== undefined) s.rateLimit = d.rate_limit;
  if (d.deduplication !== undefined) s.deduplication = d.deduplication;
  const h = d.push_health;
  if (h) s.health = { failures: h.failures, lastError: h.last_error, failingSince: h.failing_since, retryAt: h.retry_at };
  return s;
}

function toDelivery(d: DeliveryDoc): Delivery {
  return { eventId: d.event_id, seq: num(d.seq), acked: d.acked, lockedUntil: d.locked_until, attempts: d.attempts };
}

function toGroup(d: WaitGroupDoc): WaitGroup {
  const g: WaitGroup = { id: d._id, project: d.project, topic: d.topic, status: d.status, members: d.members, acked: d.acked, createdAt: d.created_at };
  if (d.expires_at) g.expiresAt = d.expires_at;
  return g;
}

const SETTING_KEYS = ["type", "endpoint", "filter", "rate_limit", "deduplication"] as const;

/** Sailhouse state on MongoDB: `sh_subscriptions`, `sh_deliveries`, `sh_scheduled`, `sh_waitgroups`. */
export class MongoSailhouseStore implements SailhouseStore {
  readonly #m: MongoConnection;
  readonly #subs: Collection<SubDoc>;
  readonly #deliveries: Collection<DeliveryDoc>;
  readonly #scheduled: Collection<ScheduledDoc>;
  readonly #groups: Collection<WaitGroupDoc>;

  constructor(m: MongoConnection) {
    this.#m = m;
    this.#subs = m.collection("sh_subscriptions");
    this.#deliveries = m.collection("sh_deliveries");
    this.#scheduled = m.collection("sh_scheduled");
    this.#groups = m.collection("sh_waitgroups");
  }

  async init(): Promise<void> {
    await this.#subs.createIndex({ type: 1 }, { name: "type" });
    await this.#subs.createIndex({ project: 1, topic: 1, name: 1 }, { name: "project_topic_name" });
    await this.#deliveries.createIndex({ sub: 1, acked: 1, seq: 1 }, { name: "sub_acked_seq" });
    await this.#deliveries.createIndex({ sub: 1, acked: 1, locked_until: 1 }, { name: "sub_acked_locked" });
    await this.#scheduled.createIndex({ send_at: 1 }, { name: "send_at" });
    await this.#scheduled.createIndex({ leased_until: 1 }, { name: "leased_until" });
    await this.#groups.createIndex({ expires_at: 1 }, { name: "expires_at" });
  }

  async putSubscription(fields: SubscriptionFields, cursor: number, secret: string): Promise<{ outcome: "created" | "updated" | "none"; subscription: Subscription }> {
    const _id = subscriptionKey(fields.project, fields.topic, fields.name);
    const set = settings(fields);
    const unset: Record<string, ""> = Object.fromEntries(SETTING_KEYS.filter((k) => !(k in set)).map((k) => [k, ""] as const));
    const before = await this.#m.write(() =>
      this.#subs.findOneAndUpdate(
        { _id },
        {
          $set: set,
          // Registering again (a new endpoint, or the same one fixed) ends a failing endpoint's backoff.
          $unset: { ...unset, push_health: "" },
          $setOnInsert: { project: fields.project, topic: fields.topic, name: fields.name, secret, cursor: Long.fromNumber(cursor), created_at: new Date() },
        },
        { upsert: true, returnDocument: "before" },
      ),
    );
    const after = await this.#m.read(() => this.#subs.findOne({ _id }, this.#m.readOptions));
    if (!after) throw new Error(`subscription ${_id} vanished`);
    if (!before) return { outcome: "created", subscription: toSubscription(after) };
    const changed = SETTING_KEYS.some((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
    return { outcome: changed ? "updated" : "none", subscription: toSubscription(after) };
  }

  async getSubscription(project: string, topic: string, name: string): Promise<Subscription | undefined> {
    const d = await this.#m.read(() => this.#subs.findOne({ _id: subscriptionKey(project, topic, name) }, this.#m.readOptions));
    return d ? toSubscription(d) : undefined;
  }

  async pushSubscriptions(): Promise<Subscription[]> {
    return (await this.#m.read(() => this.#subs.find({ type: "push" }, this.#m.readOptions).toArray())).map(toSubscription);
  }

  async deleteSubscription(project: string, topic: string, name: string): Promise<boolean> {
    const _id = subscriptionKey(project, topic, name);
    const r = await this.#m.write(() => this.#subs.deleteOne({ _id }));
    await this.#m.write(() => this.#deliveries.deleteMany({ sub: _id }));
    return r.deletedCount === 1;
  }

  async setPushHealth(sub: Subscription, health: PushHealth | undefined): Promise<void> {
    const _id = subscriptionKey(sub.project, sub.topic, sub.name);
    await this.#m.write(() =>
      this.#subs.updateOne(
        { _id },
        health
          ? { $set: { push_health: { failures: health.failures, last_error: health.lastError, failing_since: health.failingSince, retry_at: health.retryAt } } }
          : { $unset: { push_health: "" } },
      ),
    );
  }

  async subscriptionsPage(project: string, q: { topic?: string; after?: { topic: string; name: string }; limit: number }): Promise<Subscription[]> {
    // Served by the {project, topic, name} index.
    const filter: Filter<SubDoc> = { project };
    if (q.topic !== undefined) filter.topic = q.topic;
    if (q.after) {
      if (q.topic === undefined) filter.$or = [{ topic: { $gt: q.after.topic } }, { topic: q.after.topic, name: { $gt: q.after.name } }];
      else if (q.topic === q.after.topic) filter.name = { $gt: q.after.name };
      else if (q.topic < q.after.topic) return [];
    }
    return (await this.#m.read(() => this.#subs.find(filter, this.#m.readOptions).sort({ topic: 1, name: 1 }).limit(q.limit).toArray())).map(toSubscription);
  }

  async unacked(sub: Subscription): Promise<{ count: number; oldestSeq?: number }> {
    // One aggregation over the {sub, acked, seq} index.
    const [g] = await this.#m.read(() =>
      this.#deliveries
        .aggregate<{ n: number; oldest: Long | number }>([{ $match: { sub: subscriptionKey(sub.project, sub.topic, sub.name), acked: false } }, { $group: { _id: null, n: { $sum: 1 }, oldest: { $min: "$seq" } } }], this.#m.readOptions)
        .toArray(),
    );
    return g ? { count: g.n, oldestSeq: num(g.oldest) } : { count: 0 };
  }

  async nextRetry(sub: Subscription): Promise<Date | undefined> {
    const d = await this.#m.read(() =>
      this.#deliveries.findOne({ sub: subscriptionKey(sub.project, sub.topic, sub.name), acked: false }, { ...this.#m.readOptions, sort: { locked_until: 1 }, projection: { locked_until: 1 } }),
    );
    return d?.locked_until;
  }

  async advance(sub: Subscription, from: number, to: number, deliveries: Delivery[]): Promise<boolean> {
    const key = subscriptionKey(sub.project, sub.topic, sub.name);
    if (deliveries.length > 0) {
      try {
        await this.#m.write(() =>
          this.#deliveries.insertMany(
            deliveries.map((d) => ({ _id: `${key}|${d.eventId}`, sub: key, event_id: d.eventId, seq: Long.fromNumber(d.seq), acked: d.acked, locked_until: d.lockedUntil, attempts: d.attempts })),
            { ordered: false },
          ),
        );
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
      }
    }
    const r = await this.#m.write(() => this.#subs.updateOne({ _id: key, cursor: Long.fromNumber(from) }, { $set: { cursor: Long.fromNumber(to) } }));
    return r.modifiedCount === 1;
  }

  async claim(sub: Subscription, now: Date, lockMs: number): Promise<Delivery | undefined> {
    const d = await this.#m.write(() =>
      this.#deliveries.findOneAndUpdate(
        { sub: subscriptionKey(sub.project, sub.topic, sub.name), acked: false, locked_until: { $lte: now } },
        { $set: { locked_until: new Date(now.getTime() + lockMs) }, $inc: { attempts: 1 } },
        { sort: { seq: 1 }, returnDocument: "after" },
      ),
    );
    return d ? toDelivery(d) : undefined;
  }

  async ack(sub: Subscription, eventId: string): Promise<Delivery | undefined> {
    const key = subscriptionKey(sub.project, sub.topic, sub.name);
    const d = await this.#m.write(() => this.#deliveries.findOneAndUpdate({ _id: `${key}|${eventId}` }, { $set: { acked: true } }, { returnDocument: "after" }));
    return d ? toDelivery(d) : undefined;
  }

  async release(sub: Subscription, eventId: string, at: Date): Promise<boolean> {
    const key = subscriptionKey(sub.project, sub.topic, sub.name);
    const r = await this.#m.write(() => this.#deliveries.updateOne({ _id: `${key}|${eventId}`, acked: false }, { $set: { locked_until: at } }));
    return r.matchedCount === 1;
  }

  async schedule(item: ScheduledEvent): Promise<void> {
    const doc: ScheduledDoc = {
      _id: item.id,
      project: item.project,
      topic: item.topic,
      payload: JSON.stringify({ data: item.data, metadata: item.metadata }),
      send_at: item.sendAt,
      leased_until: new Date(0),
    };
    if (item.waitGroupInstanceId !== undefined) doc.wait_group_instance_id = item.waitGroupInstanceId;
    await this.#m.write(() => this.#scheduled.insertOne(doc));
  }

  async claimDue(now: Date, leaseMs: number, limit: number): Promise<ScheduledEvent[]> {
    const out: ScheduledEvent[] = [];
    while (out.length < limit) {
      // One conditional update per item: of two instances racing, only one gets each lease.
      const d = await this.#m.write(() =>
        this.#scheduled.findOneAndUpdate(
          { send_at: { $lte: now }, leased_until: { $lte: now } },
          { $set: { leased_until: new Date(now.getTime() + leaseMs) } },
          { sort: { send_at: 1 }, returnDocument: "after" },
        ),
      );
      if (!d) break;
      const body = JSON.parse(d.payload) as { data: JsonObject; metadata: JsonObject };
      const item: ScheduledEvent = { id: d._id, project: d.project, topic: d.topic, data: body.data, metadata: body.metadata, sendAt: d.send_at };
      if (d.wait_group_instance_id !== undefined) item.waitGroupInstanceId = d.wait_group_instance_id;
      out.push(item);
    }
    return out;
  }

  async finishScheduled(id: string): Promise<void> {
    await this.#m.write(() => this.#scheduled.deleteOne({ _id: id }));
  }

  async nextDue(): Promise<Date | undefined> {
    const now = new Date();
    // Three indexed look-ups: the first free item by send_at, the first lease to lapse, the first group to expire.
    const opts = this.#m.readOptions;
    const [free, leased, group] = await this.#m.read(() =>
      Promise.all([
        this.#scheduled.findOne({ leased_until: { $lte: now } }, { ...opts, sort: { send_at: 1 }, projection: { send_at: 1 } }),
        this.#scheduled.findOne({ leased_until: { $gt: now } }, { ...opts, sort: { leased_until: 1 }, projection: { send_at: 1, leased_until: 1 } }),
        this.#groups.findOne({ status: { $ne: "completed" }, expires_at: { $exists: true } }, { ...opts, sort: { expires_at: 1 }, projection: { expires_at: 1 } }),
      ]),
    );
    const times = [free?.send_at, leased && new Date(Math.max(leased.send_at.getTime(), leased.leased_until.getTime())), group?.expires_at].filter((t): t is Date => t instanceof Date);
    return times.length ? new Date(Math.min(...times.map((t) => t.getTime()))) : undefined;
  }

  async createWaitGroup(g: WaitGroup): Promise<void> {
    const doc: WaitGroupDoc = { _id: g.id, project: g.project, topic: g.topic, status: g.status, members: g.members, acked: g.acked, created_at: g.createdAt };
    if (g.expiresAt) doc.expires_at = g.expiresAt;
    await this.#m.write(() => this.#groups.insertOne(doc));
  }

  async getWaitGroup(project: string, id: string): Promise<WaitGroup | undefined> {
    const d = await this.#m.read(() => this.#groups.findOne({ _id: id, project }, this.#m.readOptions));
    return d ? toGroup(d) : undefined;
  }

  async addWaitGroupMember(id: string, eventId: string): Promise<void> {
    await this.#m.write(() => this.#groups.updateOne({ _id: id }, { $addToSet: { members: eventId } }));
  }

  async removeWaitGroupMember(id: string, eventId: string): Promise<void> {
    await this.#m.write(() => this.#groups.updateOne({ _id: id }, { $pull: { members: eventId } }));
  }

  async ackWaitGroupMember(id: string, eventId: string): Promise<WaitGroup | undefined> {
    const d = await this.#m.write(() => this.#groups.findOneAndUpdate({ _id: id }, { $addToSet: { acked: eventId } }, { returnDocument: "after" }));
    return d ? toGroup(d) : undefined;
  }

  async setWaitGroupStatus(id: string, from: WaitGroupStatus[], to: WaitGroupStatus): Promise<boolean> {
    const r = await this.#m.write(() => this.#groups.updateOne({ _id: id, status: { $in: from } }, { $set: { status: to } }));
    return r.modifiedCount === 1;
  }

  async expiredWaitGroups(now: Date): Promise<WaitGroup[]> {
    return (await this.#m.read(() => this.#groups.find({ status: { $ne: "completed" }, expires_at: { $lte: now } }, this.#m.readOptions).toArray())).map(toGroup);
  }
}
