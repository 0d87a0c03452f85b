/**
 * Durable Streams (the open protocol of durable-streams/durable-streams, PROTOCOL.md) on the event
 * log. A durable stream is the log stream (project, "durable", name); its metadata (content type,
 * expiry, forks, producers) lives in the DurableStore. This module owns the protocol's semantics
 * and status codes; src/server/routes/durable.ts only moves bytes and headers.
 *
 * Files: protocol.ts (shapes, errors, headers), wire.ts (offsets, cursors, header values),
 * messages.ts (bodies <-> events), context.ts (records, tails, reads of the log), lifecycle.ts
 * (PUT/HEAD/DELETE), append.ts (POST and the producer engine), read.ts (catch-up, long-poll, SSE).
 *
 * Mapping onto the log:
 * - JSON streams (application/json): one event per message, `data` = the message (a POSTed array
 *   is flattened one level into one atomic multi-event publish); read back equal in value.
 * - Every other content type: one event per append, `bytes` = the body, byte-exact.
 * - event_type = the stream's content type; offsets = `<incarnation>_<position>`, position =
 *   sequence - base (see wire.ts).
 */
import { durableAppends } from "./append.js";
import { durableContext } from "./context.js";
import { durableLifecycle } from "./lifecycle.js";
import { DsError, type DsReply, type DsRequest, type DurableDeps } from "./protocol.js";
import { durableReads } from "./read.js";

export { DsError, H, LOG_PREFIX, STREAM_PREFIX, type DsReply, type DsRequest, type DurableConfig, type DurableDeps } from "./protocol.js";
export { judgeProducer, ProducerRejection, type Producer, type ProducerOutcome } from "./append.js";

export function durableApi(deps: DurableDeps) {
  const ctx = durableContext(deps);
  const { create, head, remove } = durableLifecycle(ctx);
  const { append, producerPublish } = durableAppends(ctx);
  const { read } = durableReads(ctx);

  return {
    producerPublish,
    /** Serves one protocol request on /v1/stream/{name}. */
    async handle(r: DsRequest): Promise<DsReply> {
      switch (r.method) {
        case "PUT":
          return create(r);
        case "POST":
          return append(r);
        case "GET":
          return read(r);
        case "HEAD":
          return head(r);
        case "DELETE":
          return remove(r);
        default:
          throw new DsError(405, `method ${r.method} not allowed`, { allow: "GET, HEAD, POST, PUT, DELETE, OPTIONS" });
      }
    },
  };
}

export type DurableApi = ReturnType<typeof durableApi>;
