import { create } from "@bufbuild/protobuf";
import {
  ListSubscriptionBacklogsRequestSchema,
  ListSubscriptionBacklogsResponseSchema,
  PushStatusSchema,
  SubscriptionBacklogSchema,
  type ListSubscriptionBacklogsRequest,
  type ListSubscriptionBacklogsResponse,
  type PushStatus,
  type SubscriptionBacklog,
} from "../../gen/sailhouse/v1/sailhouse_pb.js";
import type { StreamId } from "../core/types.js";
import type { SailhouseStore, Subscription } from "../store/sailhouse.js";
import { checkRequired, decodePageToken, DEFAULT_PROJECT, encodePageToken, pageLimit, rfc3339, type ApiDeps, type CallContext } from "./common.js";

/** How delivery to a push subscription's endpoint is going. */
export function pushStatus(s: Subscription): PushStatus {
  const h = s.health;
  return create(
    PushStatusSchema,
    h ? { status: "failing", consecutiveFailures: h.failures, lastError: h.lastError, failingSince: rfc3339(h.failingSince), nextAttemptAt: rfc3339(h.retryAt) } : { status: "healthy", consecutiveFailures: 0 },
  );
}

/** The page token of ListSubscriptionBacklogs and ListSubscriptions: the last subscription of the previous page, (topic, name). */
export function subscriptionsToken(s: { topic: string; name: string }): string {
  return encodePageToken([s.topic, s.name]);
}

export function decodeSubscriptionsToken(token: string): { topic: string; name: string } {
  return decodePageToken(token, (v) => (v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string" ? { topic: v[0], name: v[1] } : undefined));
}

/**
 * What waits for each Sailhouse subscription, for operators (the console): the events it has not
 * acknowledged and how old the oldest is. Per subscription: one aggregation over its unacked
 * deliveries and one read of the oldest pending event's time; per topic, one head.
 */
export function subscriptionBacklogs(deps: ApiDeps & { sailhouse: SailhouseStore }) {
  async function backlog(sub: Subscription, head: number): Promise<SubscriptionBacklog> {
    const unacked = await deps.sailhouse.unacked(sub);
    // Events after the cursor have not been considered yet: they wait too.
    const notConsidered = Math.max(0, head - sub.cursor);
    const candidates = [unacked.oldestSeq, notConsidered > 0 ? sub.cursor + 1 : undefined].filter((s): s is number => s !== undefined);
    const oldestSeq = candidates.length > 0 ? Math.min(...candidates) : undefined;
    const topic: StreamId = { project: sub.project, kind: "topic", key: sub.topic };
    // The first event at or after the oldest pending sequence (a purged or failed one has none of its own).
    const oldest = oldestSeq === undefined ? undefined : (await deps.log.store.read(topic, oldestSeq - 1, 1))[0];
    return create(SubscriptionBacklogSchema, {
      topicSlug: sub.topic,
      subscriptionSlug: sub.name,
      type: sub.type,
      pending: BigInt(unacked.count + notConsidered),
      ...(oldest ? { oldestPendingAt: rfc3339(oldest.createdAt) } : {}),
      ...(sub.type === "push" ? { pushStatus: pushStatus(sub) } : {}),
    });
  }

  return {
    async listSubscriptionBacklogs(req: ListSubscriptionBacklogsRequest, ctx: CallContext): Promise<ListSubscriptionBacklogsResponse> {
      checkRequired(ListSubscriptionBacklogsRequestSchema, req, []);
      const project = ctx.project ?? DEFAULT_PROJECT;
      const limit = pageLimit(req.limit, ["limit"]);
      const after = req.pageToken ? decodeSubscriptionsToken(req.pageToken) : undefined;
      // One more than asked tells whether another page follows.
      const found = await deps.sailhouse.subscriptionsPage(project, { ...(req.topicSlug ? { topic: req.topicSlug } : {}), ...(after ? { after } : {}), limit: limit + 1 });
      const page = found.slice(0, limit);
      const heads = new Map<string, Promise<number>>();
      const headOf = (topic: string): Promise<number> => {
        let h = heads.get(topic);
        if (!h) heads.set(topic, (h = deps.log.store.head({ project, kind: "topic", key: topic })));
        return h;
      };
      const subscriptions: SubscriptionBacklog[] = [];
      for (const sub of page) subscriptions.push(await backlog(sub, await headOf(sub.topic)));
      const last = page[page.length - 1];
      return create(ListSubscriptionBacklogsResponseSchema, { subscriptions, nextPageToken: found.length > page.length && last ? subscriptionsToken(last) : "" });
    },
  };
}
