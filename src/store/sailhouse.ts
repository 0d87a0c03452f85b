import type { JsonObject, JsonValue } from "../core/types.js";

/**
 * Storage for Sailhouse's subscriptions, deliveries, scheduled events and wait groups (the events
 * themselves live in the event log). Adapters: memory/sailhouse.ts and mongo/sailhouse.ts, both
 * run through test/sailhouse-store-contract.test.ts. Every operation that several service
 * instances may race on is a single conditional update (claim, cursor advance, status change).
 */
export interface Subscription {
  project: string;
  topic: string;
  name: string;
  type: "pull" | "push";
  endpoint?: string;
  /** Sailhouse's filter: true/null (everything) or {filters: [{path, condition, value}], operator}. */
  filter?: JsonValue;
  rateLimit?: string;
  deduplication?: string;
  /** Signs push deliveries (Sailhouse-Signature). */
  secret: string;
  /** Every event of the topic with seq <= cursor has been considered (a delivery made, or filtered out). */
  cursor: number;
  createdAt: Date;
  /** Push subscriptions whose endpoint is failing: since when, how often in a row, why, and when it is tried next. */
  health?: PushHealth;
}

/** A failing push endpoint, as the worker that last tried it recorded it (absent: healthy). */
export interface PushHealth {
  failures: number;
  lastError: string;
  failingSince: Date;
  retryAt: Date;
}

export interface Delivery {
  eventId: string;
  seq: number;
  acked: boolean;
  /** The delivery is due when lockedUntil <= now. */
  lockedUntil: Date;
  attempts: number;
}

export interface ScheduledEvent {
  id: string;
  project: string;
  topic: string;
  data: JsonObject;
  metadata: JsonObject;
  waitGroupInstanceId?: string;
  sendAt: Date;
}

export type WaitGroupStatus = "open" | "in_progress" | "completed";

export interface WaitGroup {
  id: string;
  project: string;
  /** Where the completion event is published. */
  topic: string;
  status: WaitGroupStatus;
  expiresAt?: Date;
  members: string[];
  acked: string[];
  createdAt: Date;
}

export type SubscriptionFields = Pick<Subscription, "project" | "topic" | "name" | "type" | "endpoint" | "filter" | "rateLimit" | "deduplication">;

export interface SailhouseStore {
  init(): Promise<void>;

  /** Creates (cursor = `cursor`, a new secret) or updates the subscription's settings. */
  putSubscription(fields: SubscriptionFields, cursor: number, secret: string): Promise<{ outcome: "created" | "updated" | "none"; subscription: Subscription }>;
  getSubscription(project: string, topic: string, name: string): Promise<Subscription | undefined>;
  pushSubscriptions(): Promise<Subscription[]>;
  /**
   * The project's subscriptions (one topic's when `topic` is set) in (topic, name) order, strings by
   * their UTF-8 bytes, starting after `after`: at most `limit`.
   */
  subscriptionsPage(project: string, q: { topic?: string; after?: { topic: string; name: string }; limit: number }): Promise<Subscription[]>;
  /** The subscription's deliveries not yet acked: how many, and the lowest sequence among them. */
  unacked(sub: Subscription): Promise<{ count: number; oldestSeq?: number }>;
  /** Deletes the subscription and its deliveries; false when there was none. */
  deleteSubscription(project: string, topic: string, name: string): Promise<boolean>;
  /** Records a push endpoint as failing (or, undefined, as healthy again). */
  setPushHealth(sub: Subscription, health: PushHealth | undefined): Promise<void>;
  /** When the subscription's next unacked delivery becomes due (its lock lapses); undefined when none is waiting. */
  nextRetry(sub: Subscription): Promise<Date | undefined>;
  /**
   * Records deliveries for events after the cursor and moves the cursor from `from` to `to`,
   * only if it is still at `from` (another instance may have done it). Deliveries are idempotent.
   */
  advance(sub: Subscription, from: number, to: number, deliveries: Delivery[]): Promise<boolean>;
  /** Locks the due, unacked delivery with the lowest sequence until `now + lockMs`; undefined when none is due. */
  claim(sub: Subscription, now: Date, lockMs: number): Promise<Delivery | undefined>;
  /** Marks a delivery acked; undefined when the subscription has no such event. */
  ack(sub: Subscription, eventId: string): Promise<Delivery | undefined>;
  /** Makes an unacked delivery due at `at` (nack: now; a failed push: later). False when unknown or acked. */
  release(sub: Subscription, eventId: string, at: Date): Promise<boolean>;

  schedule(item: ScheduledEvent): Promise<void>;
  /** Claims up to `limit` items due at `now` whose lease is free or lapsed, leasing them until now + leaseMs. */
  claimDue(now: Date, leaseMs: number, limit: number): Promise<ScheduledEvent[]>;
  finishScheduled(id: string): Promise<void>;
  /**
   * The earliest instant background work is due: a scheduled send (its send_at, or its lease's
   * end while another worker holds it) or the expiry of a wait group not completed. Undefined: nothing.
   */
  nextDue(): Promise<Date | undefined>;

  createWaitGroup(group: WaitGroup): Promise<void>;
  getWaitGroup(project: string, id: string): Promise<WaitGroup | undefined>;
  addWaitGroupMember(id: string, eventId: string): Promise<void>;
  removeWaitGroupMember(id: string, eventId: string): Promise<void>;
  /** Records that a member was acked; returns the group as it is afterwards. */
  ackWaitGroupMember(id: string, eventId: string): Promise<WaitGroup | undefined>;
  /** Moves the status from one of `from` to `to`; true only for the caller that made the change. */
  setWaitGroupStatus(id: string, from: WaitGroupStatus[], to: WaitGroupStatus): Promise<boolean>;
  /** Groups not completed whose expiry has passed. */
  expiredWaitGroups(now: Date): Promise<WaitGroup[]>;
}

export function subscriptionKey(project: string, topic: string, name: string): string {
  return `${encodeURIComponent(project)}/${encodeURIComponent(topic)}/${encodeURIComponent(name)}`;
}
