import type { Delivery, PushHealth, SailhouseStore, ScheduledEvent, Subscription, SubscriptionFields, WaitGroup, WaitGroupStatus } from "../sailhouse.js";
import { subscriptionKey } from "../sailhouse.js";
import { MemoryBudget, MeteredMap } from "./budget.js";

const SETTINGS = ["type", "endpoint", "filter", "rateLimit", "deduplication"] as const;

/** Heap bytes of one more id in a wait group's list. */
const listEntryBytes = (id: string): number => Buffer.byteLength(id) + 24;

/** A subscription's deliveries, dropped (and given back to the budget) with the subscription. */
class DeliveryMaps extends Map<string, MeteredMap<string, Delivery>> {
  override delete(key: string): boolean {
    this.get(key)?.clear();
    return super.delete(key);
  }
}

/**
 * Sailhouse state in this process's memory (the embedded default): subscriptions, deliveries,
 * scheduled sends and wait groups all count against MEMORY_MAX_BYTES (budget.ts).
 */
export class MemorySailhouseStore implements SailhouseStore {
  readonly #budget: MemoryBudget;
  readonly #subs: MeteredMap<string, Subscription>;
  readonly #deliveries = new DeliveryMaps();
  readonly #scheduled: MeteredMap<string, { item: ScheduledEvent; leasedUntil: number }>;
  readonly #groups: MeteredMap<string, WaitGroup>;

  constructor(opts: { budget?: MemoryBudget } = {}) {
    this.#budget = opts.budget ?? new MemoryBudget();
    this.#subs = new MeteredMap(this.#budget, "a Sailhouse subscription");
    this.#scheduled = new MeteredMap(this.#budget, "a scheduled Sailhouse send");
    this.#groups = new MeteredMap(this.#budget, "a Sailhouse wait group");
  }

  async init(): Promise<void> {}

  async putSubscription(fields: SubscriptionFields, cursor: number, secret: string): Promise<{ outcome: "created" | "updated" | "none"; subscription: Subscription }> {
    const key = subscriptionKey(fields.project, fields.topic, fields.name);
    const existing = this.#subs.get(key);
    if (!existing) {
      const sub: Subscription = { ...fields, secret, cursor, createdAt: new Date() };
      this.#subs.set(key, sub);
      return { outcome: "created", subscription: structuredClone(sub) };
    }
    const changed = SETTINGS.some((k) => JSON.stringify(existing[k]) !== JSON.stringify(fields[k]));
    // Registering again (a new endpoint, or the same one fixed) ends a failing endpoint's backoff.
    delete existing.health;
    if (changed) for (const k of SETTINGS) (existing as unknown as Record<string, unknown>)[k] = fields[k];
    return { outcome: changed ? "updated" : "none", subscription: structuredClone(existing) };
  }

  async getSubscription(project: string, topic: string, name: string): Promise<Subscription | undefined> {
    const s = this.#subs.get(subscriptionKey(project, topic, name));
    return s && structuredClone(s);
  }

  async pushSubscriptions(): Promise<Subscription[]> {
    return [...this.#subs.values()].filter((s) => s.type === "push").map((s) => structuredClone(s));
  }

  async deleteSubscription(project: string, topic: string, name: string): Promise<boolean> {
    const key = subscriptionKey(project, topic, name);
    this.#deliveries.delete(key);
    return this.#subs.delete(key);
  }

  async setPushHealth(sub: Subscription, health: PushHealth | undefined): Promise<void> {
    const s = this.#subs.get(subscriptionKey(sub.project, sub.topic, sub.name));
    if (!s) return;
    if (health) s.health = structuredClone(health);
    else delete s.health;
  }

  async subscriptionsPage(project: string, q: { topic?: string; after?: { topic: string; name: string }; limit: number }): Promise<Subscription[]> {
    const after = q.after;
    return [...this.#subs.values()]
      .filter((s) => s.project === project && (q.topic === undefined || s.topic === q.topic) && (!after || compareSubs(s, after) > 0))
      .sort(compareSubs)
      .slice(0, q.limit)
      .map((s) => structuredClone(s));
  }

  async unacked(sub: Subscription): Promise<{ count: number; oldestSeq?: number }> {
    let count = 0;
    let oldestSeq: number | undefined;
    for (const d of this.#deliveriesOf(sub).values()) {
      if (d.acked) continue;
      count++;
      if (oldestSeq === undefined || d.seq < oldestSeq) oldestSeq = d.seq;
    }
    return oldestSeq === undefined ? { count } : { count, oldestSeq };
  }

  async nextRetry(sub: Subscription): Promise<Date | undefined> {
    let at: Date | undefined;
    for (const d of this.#deliveriesOf(sub).values()) if (!d.acked && (!at || d.lockedUntil < at)) at = d.lockedUntil;
    return at && new Date(at);
  }

  #deliveriesOf(sub: Subscription): Map<string, Delivery> {
    const key = subscriptionKey(sub.project, sub.topic, sub.name);
    let m = this.#deliveries.get(key);
    if (!m) {
      m = new MeteredMap(this.#budget, "a Sailhouse delivery");
      this.#deliveries.set(key, m);
    }
    return m;
  }

  async advance(sub: Subscription, from: number, to: number, deliveries: Delivery[]): Promise<boolean> {
    const m = this.#deliveriesOf(sub);
    for (const d of deliveries) if (!m.has(d.eventId)) m.set(d.eventId, { ...d });
    const s = this.#subs.get(subscriptionKey(sub.project, sub.topic, sub.name));
    if (!s || s.cursor !== from) return false;
    s.cursor = to;
    return true;
  }

  async claim(sub: Subscription, now: Date, lockMs: number): Promise<Delivery | undefined> {
    let best: Delivery | undefined;
    for (const d of this.#deliveriesOf(sub).values()) {
      if (!d.acked && d.lockedUntil <= now && (!best || d.seq < best.seq)) best = d;
    }
    if (!best) return undefined;
    best.lockedUntil = new Date(now.getTime() + lockMs);
    best.attempts++;
    return { ...best };
  }

  async ack(sub: Subscription, eventId: string): Promise<Delivery | undefined> {
    const d = this.#deliveriesOf(sub).get(eventId);
    if (!d) return undefined;
    d.acked = true;
    return { ...d };
  }

  async release(sub: Subscription, eventId: string, at: Date): Promise<boolean> {
    const d = this.#deliveriesOf(sub).get(eventId);
    if (!d || d.acked) return false;
    d.lockedUntil = at;
    return true;
  }

  async schedule(item: ScheduledEvent): Promise<void> {
    this.#scheduled.set(item.id, { item: structuredClone(item), leasedUntil: 0 });
  }

  #finish(id: string): void {
    this.#scheduled.delete(id);
  }

  async claimDue(now: Date, leaseMs: number, limit: number): Promise<ScheduledEvent[]> {
    const due = [...this.#scheduled.values()]
      .filter((s) => s.item.sendAt <= now && s.leasedUntil <= now.getTime())
      .sort((a, b) => a.item.sendAt.getTime() - b.item.sendAt.getTime())
      .slice(0, limit);
    for (const s of due) s.leasedUntil = now.getTime() + leaseMs;
    return due.map((s) => structuredClone(s.item));
  }

  async finishScheduled(id: string): Promise<void> {
    this.#finish(id);
  }

  async nextDue(): Promise<Date | undefined> {
    let at = Infinity;
    for (const s of this.#scheduled.values()) at = Math.min(at, Math.max(s.item.sendAt.getTime(), s.leasedUntil));
    for (const g of this.#groups.values()) if (g.status !== "completed" && g.expiresAt) at = Math.min(at, g.expiresAt.getTime());
    return at === Infinity ? undefined : new Date(at);
  }

  async createWaitGroup(group: WaitGroup): Promise<void> {
    this.#groups.set(group.id, structuredClone(group));
  }

  async getWaitGroup(project: string, id: string): Promise<WaitGroup | undefined> {
    const g = this.#groups.get(id);
    return g && g.project === project ? structuredClone(g) : undefined;
  }

  async addWaitGroupMember(id: string, eventId: string): Promise<void> {
    const g = this.#groups.get(id);
    if (!g || g.members.includes(eventId)) return;
    this.#groups.grow(id, listEntryBytes(eventId));
    g.members.push(eventId);
  }

  async removeWaitGroupMember(id: string, eventId: string): Promise<void> {
    const g = this.#groups.get(id);
    if (!g || !g.members.includes(eventId)) return;
    g.members = g.members.filter((m) => m !== eventId);
    this.#groups.grow(id, -listEntryBytes(eventId));
  }

  async ackWaitGroupMember(id: string, eventId: string): Promise<WaitGroup | undefined> {
    const g = this.#groups.get(id);
    if (!g) return undefined;
    if (!g.acked.includes(eventId)) {
      this.#groups.grow(id, listEntryBytes(eventId));
      g.acked.push(eventId);
    }
    return structuredClone(g);
  }

  async setWaitGroupStatus(id: string, from: WaitGroupStatus[], to: WaitGroupStatus): Promise<boolean> {
    const g = this.#groups.get(id);
    if (!g || !from.includes(g.status)) return false;
    g.status = to;
    return true;
  }

  async expiredWaitGroups(now: Date): Promise<WaitGroup[]> {
    return [...this.#groups.values()].filter((g) => g.status !== "completed" && g.expiresAt && g.expiresAt <= now).map((g) => structuredClone(g));
  }
}

/** subscriptionsPage's order: (topic, name), strings by their UTF-8 bytes (as MongoDB compares them). */
function compareSubs(a: { topic: string; name: string }, b: { topic: string; name: string }): number {
  return Buffer.compare(Buffer.from(a.topic), Buffer.from(b.topic)) || Buffer.compare(Buffer.from(a.name), Buffer.from(b.name));
}
