import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import {
  CompactEventSchema,
  EventSchema,
  EventView,
  type CompactEvent,
  ListEventsRequestSchema,
  ListEventsResponseSchema,
  ListStreamsResponseSchema,
  StreamKind as PbStreamKind,
  type ListStreamsRequest,
  type ListStreamsResponse,
  PublishRequestSchema,
  PublishResponseSchema,
  PublishStreamRequestSchema,
  PublishStreamResponseSchema,
  PurgeStreamRequestSchema,
  PurgeStreamResponseSchema,
  type PurgeStreamRequest,
  type PurgeStreamResponse,
  SubscribeRequestSchema,
  SubscribeResponseSchema,
  type EventInput,
  type ListEventsRequest,
  type ListEventsResponse,
  type PublishRequest,
  type PublishResponse,
  type PublishStreamRequest,
  type PublishStreamResponse,
  type StreamRef,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../../gen/events/v1/events_pb.js";
import { STREAM_KINDS, type EventDraft, type StoredEvent, type StreamId, type StreamKind } from "../core/types.js";
import { eventCost, jsonDepth } from "../core/json.js";
import { IDENTIFIER_RULE, isIdentifier } from "../core/names.js";
import { encodeJsonValue, MAX_PROTO_DATA_DEPTH } from "./free-json.js";
import { ProducerRejection, type Producer, type ProducerOutcome } from "./durable/index.js";
import { checkRequired, decodePageToken, DEFAULT_PROJECT, encodePageToken, headWithin, RecentCache, recentCacheBytes, pbKind, follow, invalidField, kindFromPb, pageLimit, seqFromPb, toConnectError, toEventMessage, valueToJson, type ApiDeps, type CallContext } from "./common.js";

/** Publishes one PublishStream call may have in flight before it stops reading requests. */
export const PUBLISH_STREAM_WINDOW = 256;

/** Bytes of events one PublishStream call may have in flight, by default (PUBLISH_STREAM_WINDOW_BYTES). */
export const PUBLISH_STREAM_WINDOW_BYTES = 8 * 1024 * 1024;

export interface StreamsDeps extends ApiDeps {
  /** Idempotent producers' publishes (src/api/durable/append.ts: the Durable Streams producer rules and state). */
  producers?: (stream: StreamId, producer: Producer, drafts: EventDraft[]) => Promise<ProducerOutcome>;
}

/** The shared streams service: any stream of the caller's project, by (kind, key). */
/** Encoded bytes of one ListStreams entry besides its key (kind, two int64s, subscribers, last event time, framing). */
const STREAM_ENTRY_OVERHEAD = 56;

/** ListStreams' page token: where the previous page ended, (kind, key). Opaque to callers. */
function decodeStreamsToken(token: string): { kind: StreamKind; key: string } {
  return decodePageToken(token, (v) => (v.length === 2 && STREAM_KINDS.includes(v[0] as StreamKind) && typeof v[1] === "string" ? { kind: v[0] as StreamKind, key: v[1] } : undefined));
}

export function streamsApi(deps: StreamsDeps, opts: { windowBytes?: number; responseBytes?: number } = {}) {
  const windowBytes = opts.windowBytes ?? PUBLISH_STREAM_WINDOW_BYTES;
  const responseBytes = opts.responseBytes ?? 1024 * 1024;
  function streamOf(ctx: CallContext, ref: StreamRef | undefined): StreamId {
    const kind = ref ? kindFromPb(ref.kind) : undefined;
    if (!ref || !kind) throw invalidField(["stream", "kind"], "stream kind must be TOPIC, EXECUTION, TASK or DURABLE", "value_error");
    if (!ref.key) throw invalidField(["stream", "key"], "stream key must not be empty", "missing");
    if (!isIdentifier(ref.key)) throw invalidField(["stream", "key"], IDENTIFIER_RULE, "string_pattern_mismatch", ref.key);
    return { project: ctx.project ?? DEFAULT_PROJECT, kind, key: ref.key };
  }

  function drafts(events: readonly EventInput[]): EventDraft[] {
    return events.map((e, i) => {
      const d: EventDraft = { eventType: e.eventType, data: valueToJson(e.data, ["events", i, "data"]), metadata: e.metadata ?? {} };
      if (e.payload !== undefined) {
        // An opaque payload: stored and delivered as bytes, never parsed.
        if (e.data !== undefined && d.data !== null) throw invalidField(["events", i, "payload"], "set data or payload, not both", "value_error");
        d.bytes = e.payload;
        d.data = null;
      }
      if (e.idempotencyKey !== undefined) {
        if (e.idempotencyKey.length < 1 || e.idempotencyKey.length > 256) {
          throw invalidField(["events", i, "idempotency_key"], "String should have 1 to 256 characters", "string_too_long", e.idempotencyKey.length);
        }
        d.idempotencyKey = e.idempotencyKey;
      }
      return d;
    });
  }

  /** Validates and enqueues one publish: `done` settles when it is stored; `bytes` is its events' size. */
  function startPublish(req: PublishRequest | PublishStreamRequest, ctx: CallContext): { done: Promise<StoredEvent[]>; bytes: number } {
    const stream = streamOf(ctx, req.stream);
    if (req.events.length === 0) throw invalidField(["events"], "at least one event is required", "missing");
    const ds = drafts(req.events);
    return { done: deps.log.publish(stream, ds, { source: "streams" }), bytes: ds.reduce((n, d) => n + eventCost(d).bytes, 0) };
  }

  /** A PublishStream publish, exactly-once when it names a producer. */
  function startStreamPublish(req: PublishStreamRequest, ctx: CallContext): { done: Promise<StoredEvent[] | ProducerOutcome>; bytes: number } {
    if (req.producerId === undefined) return startPublish(req, ctx);
    const stream = streamOf(ctx, req.stream);
    if (req.events.length === 0) throw invalidField(["events"], "at least one event is required", "missing");
    if (!deps.producers) throw invalidField(["producer_id"], "idempotent producers are not available here", "value_error");
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    if (req.producerEpoch > max || req.producerSeq > max) throw invalidField(["producer_seq"], "producer_epoch and producer_seq must be at most 2^53-1", "value_error");
    const ds = drafts(req.events);
    return { done: deps.producers(stream, { id: req.producerId, epoch: Number(req.producerEpoch), seq: Number(req.producerSeq) }, ds), bytes: ds.reduce((n, d) => n + eventCost(d).bytes, 0) };
  }

  return {
    async publish(req: PublishRequest, ctx: CallContext): Promise<PublishResponse> {
      checkRequired(PublishRequestSchema, req, []);
      return create(PublishResponseSchema, published(await startPublish(req, ctx).done));
    },

    /**
     * Reads publishes as they come and hands each to the log at once, so one call keeps many in
     * flight (group commit batches them) while the log's per-stream queue keeps their send order.
     * Acks are written in send order; with `combine_acks`, the acks ready at once share a response.
     * At most PUBLISH_STREAM_WINDOW publishes, and windowBytes of their events, are outstanding:
     * past that the call stops reading, and HTTP/2 flow control pushes back on the producer.
     */
    async *publishStream(reqs: AsyncIterable<PublishStreamRequest>, ctx: CallContext): AsyncGenerator<PublishStreamResponse> {
      /** Outstanding publishes in send order; `ack` is set once the publish has settled. */
      const inflight: { ack?: PublishStreamResponse; bytes: number }[] = [];
      let inflightBytes = 0;
      let combine = false;
      let reading = true;
      let readError: unknown;
      let wakeWriter: (() => void) | undefined;
      let wakeReader: (() => void) | undefined;
      const signalWriter = (): void => {
        const w = wakeWriter;
        wakeWriter = undefined;
        w?.();
      };
      const start = (req: PublishStreamRequest, nested: boolean): void => {
        const entry: { ack?: PublishStreamResponse; bytes: number } = { bytes: 0 };
        inflight.push(entry);
        let result: Promise<StoredEvent[] | ProducerOutcome>;
        try {
          checkRequired(PublishStreamRequestSchema, req, []);
          if (nested && req.more.length > 0) throw invalidField(["more"], "a publish inside `more` cannot carry `more` of its own", "value_error");
          const started = startStreamPublish(req, ctx);
          result = started.done;
          entry.bytes = started.bytes;
          inflightBytes += started.bytes;
        } catch (err) {
          result = Promise.reject(err);
        }
        void ackFor(req.requestId, result).then((ack) => {
          entry.ack = ack;
          signalWriter();
        });
      };
      // The reader runs beside the writer: acks flow while requests keep coming.
      const reader = (async () => {
        try {
          for await (const req of reqs) {
            combine ||= req.combineAcks;
            start(req, false);
            for (const more of req.more) start(more, true);
            if (inflight.length >= PUBLISH_STREAM_WINDOW || inflightBytes >= windowBytes) await new Promise<void>((r) => (wakeReader = r));
          }
        } catch (err) {
          readError = err;
        } finally {
          reading = false;
          signalWriter();
        }
      })();
      for (;;) {
        const head = inflight[0];
        if (head?.ack) {
          let n = 1;
          if (combine) while (n < inflight.length && n < PUBLISH_STREAM_WINDOW && inflight[n]!.ack) n++;
          const done = inflight.splice(0, n);
          for (const d of done) inflightBytes -= d.bytes;
          const r = wakeReader;
          wakeReader = undefined;
          r?.();
          const ack = head.ack;
          if (n > 1) ack.more = done.slice(1).map((d) => d.ack!);
          yield ack;
        } else if (head || reading) {
          await new Promise<void>((r) => (wakeWriter = r));
        } else {
          break;
        }
      }
      await reader;
      if (readError !== undefined) throw readError;
    },

    /** Validates and positions the subscription, then returns the live batches (one response per batch). */
    async subscribe(req: SubscribeRequest, ctx: CallContext): Promise<AsyncIterable<SubscribeResponse>> {
      checkRequired(SubscribeRequestSchema, req, []);
      const stream = streamOf(ctx, req.stream);
      const after = seqFromPb(req.afterSequence, ["after_sequence"]);
      return (async function* () {
        // An empty first response tells the client the subscription is live (headers go out with it).
        yield create(SubscribeResponseSchema, { events: [] });
        const compact = req.view === EventView.COMPACT;
        for await (const batch of follow(deps, stream, after, ctx.signal, req.eventTypes)) {
          if (ctx.binaryWire) {
            // Each event is encoded once for all subscribers: the response carries the encoded
            // events as field 1 (2 when compact), byte-for-byte what encoding them would write.
            const res = create(SubscribeResponseSchema);
            res.$unknown = compact
              ? batch.map((e) => ({ no: 2, wireType: WireType.LengthDelimited, data: encodedCompact(e) }))
              : batch.map((e) => ({ no: 1, wireType: WireType.LengthDelimited, data: encodedEvent(e, stream) }));
            yield res;
          } else {
            yield create(SubscribeResponseSchema, compact ? { compactEvents: batch.map(toCompactEvent) } : { events: batch.map((e) => toEventMessage(e, stream)) });
          }
        }
      })();
    },

    async listStreams(req: ListStreamsRequest, ctx: CallContext): Promise<ListStreamsResponse> {
      const kind = req.kind === PbStreamKind.UNSPECIFIED ? undefined : kindFromPb(req.kind);
      const limit = pageLimit(req.limit, ["limit"]);
      const after = req.pageToken ? decodeStreamsToken(req.pageToken) : undefined;
      // One more than asked tells whether another page follows.
      const found = await deps.log.store.listStreams(ctx.project ?? DEFAULT_PROJECT, { ...(kind ? { kind } : {}), ...(after ? { after } : {}), limit: limit + 1 });
      // A page also ends at responseBytes of stream entries (the first one always fits).
      const page = headWithin(found.slice(0, limit), (s) => Buffer.byteLength(s.stream.key) + STREAM_ENTRY_OVERHEAD, responseBytes);
      const last = page[page.length - 1];
      return create(ListStreamsResponseSchema, {
        streams: page.map((s) => ({
          stream: { kind: pbKind(s.stream.kind), key: s.stream.key },
          lastSequence: BigInt(s.head),
          eventCount: BigInt(s.events),
          subscribers: deps.log.followers(s.stream),
          ...(s.lastAppendAt ? { lastEventAt: timestampFromDate(s.lastAppendAt) } : {}),
        })),
        nextPageToken: found.length > page.length && last ? encodePageToken([last.stream.kind, last.stream.key]) : "",
      });
    },

    async purgeStream(req: PurgeStreamRequest, ctx: CallContext): Promise<PurgeStreamResponse> {
      checkRequired(PurgeStreamRequestSchema, req, []);
      const { purged, head } = await deps.log.purge(streamOf(ctx, req.stream));
      return create(PurgeStreamResponseSchema, { purged: BigInt(purged), lastSequence: BigInt(head) });
    },

    async listEvents(req: ListEventsRequest, ctx: CallContext): Promise<ListEventsResponse> {
      checkRequired(ListEventsRequestSchema, req, []);
      const stream = streamOf(ctx, req.stream);
      const page = await deps.log.list(stream, seqFromPb(req.afterSequence, ["after_sequence"]), pageLimit(req.limit, ["limit"]));
      const res = create(ListEventsResponseSchema, { nextAfterSequence: BigInt(page.next), hasMore: page.hasMore });
      // Binary callers get the events pre-encoded (as Subscribe does): field 1, in order.
      if (ctx.binaryWire) res.$unknown = page.events.map((e) => ({ no: 1, wireType: WireType.LengthDelimited, data: encodedEvent(e, stream) }));
      else res.events = page.events.map((e) => toEventMessage(e, stream));
      return res;
    },
  };
}

export type StreamsApi = ReturnType<typeof streamsApi>;

const encodedEvents = new RecentCache<Uint8Array>(recentCacheBytes, (_e, bytes) => bytes.length + 64);

/**
 * An event's binary encoding with its length prefix (a length-delimited field's payload), built
 * once. Its data (field 5) is encoded straight from the stored JSON (encodeJsonValue) and appended
 * to the rest of the message: protobuf fields may come in any order, and a Value tree of a large
 * event costs seconds to build and encode.
 */
function encodedEvent(e: StoredEvent, stream: StreamId): Uint8Array {
  return encodedEvents.get(e, (ev) => {
    const msg = toEventMessage(ev, stream);
    const rest = toBinary(EventSchema, { ...msg, data: undefined });
    const data = jsonDepth(ev.data) > MAX_PROTO_DATA_DEPTH ? encodeJsonValue(JSON.stringify(ev.data)) : encodeJsonValue(ev.data);
    const w = new BinaryWriter();
    w.fork().raw(rest).tag(5, WireType.LengthDelimited).bytes(data);
    return w.join().finish();
  });
}

const encodedCompacts = new RecentCache<Uint8Array>(recentCacheBytes, (_e, bytes) => bytes.length + 64);

/** The same for the compact view. */
function encodedCompact(e: StoredEvent): Uint8Array {
  return encodedCompacts.get(e, (ev) => new BinaryWriter().bytes(toBinary(CompactEventSchema, toCompactEvent(ev))).finish());
}

/** An event as events.v1.CompactEvent: flat, its data as JSON text. */
function toCompactEvent(e: StoredEvent): CompactEvent {
  const c = create(CompactEventSchema, { sequence: BigInt(e.seq), id: e.id, eventType: e.eventType, dataJson: JSON.stringify(e.data), createdAtMs: BigInt(e.createdAt.getTime()) });
  if (e.bytes) c.payload = e.bytes;
  return c;
}

/** The fields PublishResponse and PublishStreamResponse share, for a non-empty publish. */
function published(stored: StoredEvent[]) {
  return {
    sequences: stored.map((e) => BigInt(e.seq)),
    ids: stored.map((e) => e.id),
    createdAt: timestampFromDate(stored[0]!.createdAt),
  };
}

async function ackFor(requestId: bigint, result: Promise<StoredEvent[] | ProducerOutcome>): Promise<PublishStreamResponse> {
  try {
    const r = await result;
    if (Array.isArray(r)) return create(PublishStreamResponseSchema, { requestId, ...published(r) });
    const producer = { producerEpoch: BigInt(r.epoch), producerSeq: BigInt(r.seq) };
    return create(PublishStreamResponseSchema, r.duplicate ? { requestId, duplicate: true, ...producer } : { requestId, ...published(r.events), ...producer });
  } catch (err) {
    if (err instanceof ProducerRejection) {
      // A zombie (older epoch) is fenced off: permission_denied with the current epoch; a gap is aborted with the expected seq.
      const code = err.kind === "stale" ? Code.PermissionDenied : err.kind === "gap" ? Code.Aborted : Code.InvalidArgument;
      return create(PublishStreamResponseSchema, { requestId, error: { code: codeName(code), message: err.message }, producerEpoch: BigInt(err.epoch ?? 0), producerSeq: BigInt(err.expectedSeq ?? 0) });
    }
    const e = toConnectError(err);
    return create(PublishStreamResponseSchema, { requestId, error: { code: codeName(e.code), message: e.rawMessage } });
  }
}

/** Connect's wire name of a code: Code.InvalidArgument -> "invalid_argument". */
function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
}
