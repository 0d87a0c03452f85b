/**
 * Appends (POST, incl. close) and idempotent producers: one producer engine for the Producer-*
 * headers and for PublishStream's producer fields (RPC).
 */
import type { DurableMeta, ProducerState } from "../../store/durable.js";
import { IncarnationMismatchError, INTERNAL_KEY_PREFIX, StreamClosedError, streamName, type EventDraft, type StoredEvent, type StreamId } from "../../core/types.js";
import type { DurableContext } from "./context.js";
import { toDrafts } from "./messages.js";
import { DsError, H, type DsReply, type DsRequest } from "./protocol.js";
import { mediaType } from "./wire.js";

const MAX_PRODUCER_ID = 256;

export interface Producer {
  id: string;
  epoch: number;
  seq: number;
}

export interface ProducerOutcome {
  events: StoredEvent[];
  duplicate: boolean;
  epoch: number;
  /** The highest accepted seq. */
  seq: number;
}

/** A producer request refused by the producer rules: `stale` epoch, seq `gap`, or `invalid` fields. */
export class ProducerRejection extends Error {
  constructor(
    readonly kind: "stale" | "gap" | "invalid",
    message: string,
    readonly epoch?: number,
    readonly expectedSeq?: number,
  ) {
    super(message);
  }
}

type Verdict =
  | { kind: "accept"; expected: ProducerState | undefined; next: ProducerState }
  | { kind: "duplicate"; lastSeq: number }
  | { kind: "stale"; epoch: number }
  | { kind: "epoch-seq" }
  | { kind: "gap"; expected: number; received: number };

/** The protocol's producer rules (PROTOCOL.md 5.2.1), given the producer's current state. */
export function judgeProducer(state: ProducerState | undefined, p: Producer): Verdict {
  if (!state) return p.seq === 0 ? { kind: "accept", expected: undefined, next: { epoch: p.epoch, lastSeq: 0 } } : { kind: "gap", expected: 0, received: p.seq };
  if (p.epoch < state.epoch) return { kind: "stale", epoch: state.epoch };
  if (p.epoch > state.epoch) return p.seq === 0 ? { kind: "accept", expected: state, next: { epoch: p.epoch, lastSeq: 0 } } : { kind: "epoch-seq" };
  if (p.seq <= state.lastSeq) return { kind: "duplicate", lastSeq: state.lastSeq };
  if (p.seq === state.lastSeq + 1) return { kind: "accept", expected: state, next: { epoch: p.epoch, lastSeq: p.seq } };
  return { kind: "gap", expected: state.lastSeq + 1, received: p.seq };
}

/**
 * A producer request's drafts as appended. The first carries the request's key, which the log
 * stores in its internal namespace (no client can set it): the request is one atomic batch, so one
 * key stands for all of it, and appending a retry under it stores the request if, and only if, it
 * is missing (the log's unique keys refuse it otherwise, on every instance). The key has the shape
 * earlier versions gave every message (`…:0:` for the first), so requests they stored are found.
 * Keys the drafts came with are dropped: the producer's (epoch, seq) is the request's identity.
 */
function keyed(p: Producer, drafts: readonly EventDraft[]): EventDraft[] {
  return drafts.map((d, i) => {
    const { idempotencyKey: _client, ...rest } = d;
    return i === 0 ? { ...rest, idempotencyKey: `${INTERNAL_KEY_PREFIX}${p.epoch}:${p.seq}:0:${p.id}` } : rest;
  });
}

export function durableAppends(ctx: DurableContext) {
  const { log, durable, idOf, logOf, ensureView, target, live, touch, tailOf, offsetOf, closeReasonOf, cachedRecord, rememberRecord, forgetRecord } = ctx;
  /** Requests of one producer on one stream run one at a time in this process (the protocol's serialization rule). */
  const producerLocks = new Map<string, Promise<unknown>>();

  // ---------------------------------------------------------------- append (POST), close

  function parseProducer(r: DsRequest): Producer | undefined {
    const id = r.header(H.producerId);
    const epoch = r.header(H.producerEpoch);
    const seq = r.header(H.producerSeq);
    if (id === undefined && epoch === undefined && seq === undefined) return undefined;
    if (id === undefined || epoch === undefined || seq === undefined) throw new DsError(400, "send Producer-Id, Producer-Epoch and Producer-Seq together");
    if (id === "" || id.length > MAX_PRODUCER_ID) throw new DsError(400, `Producer-Id must be 1-${MAX_PRODUCER_ID} characters`);
    const e = /^\d+$/.test(epoch) ? Number(epoch) : Number.NaN;
    const s = /^\d+$/.test(seq) ? Number(seq) : Number.NaN;
    if (!Number.isSafeInteger(e)) throw new DsError(400, "Producer-Epoch must be a non-negative integer up to 2^53-1");
    if (!Number.isSafeInteger(s)) throw new DsError(400, "Producer-Seq must be a non-negative integer up to 2^53-1");
    return { id, epoch: e, seq: s };
  }

  async function serialized<T>(key: string, run: () => Promise<T>): Promise<T> {
    const before = producerLocks.get(key) ?? Promise.resolve();
    const result = before.then(run, run);
    const settled = result.catch(() => undefined);
    producerLocks.set(key, settled);
    void settled.then(() => {
      if (producerLocks.get(key) === settled) producerLocks.delete(key);
    });
    return result;
  }

  function closedConflict(m: DurableMeta, position: number, reason: string | undefined): DsError {
    const headers: Record<string, string> = { [H.closed]: "true", [H.offset]: offsetOf(m, position) };
    if (reason !== undefined) headers[H.closeReason] = reason;
    return new DsError(409, reason === undefined ? "the stream is closed" : `the stream is closed: ${reason}`, headers);
  }

  /**
   * Stream-Close-Reason on a close (what stops a generation from anywhere, docs/durable-streams.md):
   * echoed as a header wherever the close is reported, so it must be a plain header value.
   */
  function parseCloseReason(r: DsRequest, close: boolean): string | undefined {
    const reason = r.header(H.closeReason);
    if (reason === undefined) return undefined;
    if (!close) throw new DsError(400, "Stream-Close-Reason goes with Stream-Closed: true");
    if (!/^[\x20-\x7e]{1,256}$/.test(reason)) throw new DsError(400, "Stream-Close-Reason must be 1-256 printable ASCII characters");
    return reason;
  }

  async function append(r: DsRequest): Promise<DsReply> {
    const producer = parseProducer(r);
    const close = r.header(H.closed)?.toLowerCase() === "true";
    parseCloseReason(r, close);
    if (r.body.length === 0 && !close) throw new DsError(400, "empty body (only a close, Stream-Closed: true, may have none)");
    // A close makes a cached record wrong (closed); a closing append reads the record (it is rare).
    if (close && !r.view) forgetRecord(r.project, r.name);
    if (!producer) {
      if (!r.view && r.body.length > 0 && !close) return plainAppend(r);
      const m = await target(r);
      await touch(m);
      return appendOnce(r, m, close, undefined);
    }
    const stream: StreamId = r.view ? { project: r.project, ...r.view } : idOf(r.project, r.name);
    return serialized(lockKey(stream, producer.id), async () => {
      const m = await target(r);
      await touch(m);
      return appendOnce(r, m, close, producer);
    });
  }

  /**
   * An append with a body, no producer and no close to a durable stream: 2 store commands (reserve, insert)
   * when this instance has the stream's record cached, the reservation checking that the record's
   * incarnation is still the stream's (ctx.cachedRecord). A verdict drawn from a cached record (an
   * incarnation the store refused, or a refusal from its content type or closed state) is checked
   * against the record as it is now: the request is answered as that record says.
   */
  async function plainAppend(r: DsRequest): Promise<DsReply> {
    const cached = cachedRecord(r.project, r.name);
    let fresh: DurableMeta | undefined;
    if (cached) {
      try {
        return await appendOnce(r, cached, false, undefined, cached.inc);
      } catch (err) {
        const mismatch = err instanceof IncarnationMismatchError;
        if (!mismatch && !(err instanceof DsError && err.status < 500)) throw err;
        forgetRecord(r.project, r.name);
        fresh = await live(r.project, r.name);
        if (!mismatch && fresh.inc === cached.inc) {
          rememberRecord(fresh);
          throw err;
        }
        // A stream created before stream records kept incarnations gets its own now (only where
        // none is held: a stream created again meanwhile holds its own).
        if (mismatch && err.found === undefined) await log.setIncarnation(logOf(fresh), fresh.inc, null);
      }
    }
    // A record read now is as fresh as it gets: appended to as before (reserve without the check;
    // the store may not hold its incarnation yet, see lifecycle.ts create()).
    const m = fresh ?? (await live(r.project, r.name));
    await touch(m);
    rememberRecord(m);
    return appendOnce(r, m, false, undefined);
  }

  /** One producer's requests to one stream run one at a time, in arrival order (PROTOCOL.md 5.2.1). */
  function lockKey(stream: StreamId, producerId: string): string {
    return `${streamName(stream)}\n${producerId}`;
  }

  /** `inc`: the incarnation the reservation checks (m is a cached record). */
  async function appendOnce(r: DsRequest, m: DurableMeta, close: boolean, producer: Producer | undefined, inc?: string): Promise<DsReply> {
    const id = logOf(m);
    let verdict: Verdict | undefined;
    for (;;) {
      if (producer) {
        verdict = judgeProducer(await durable.getProducer(m.project, m.name, m.inc, producer.id), producer);
        const rejected = producerRejection(verdict);
        if (rejected) throw rejected;
      }
      // A plain append (no producer, not a close, to a stream its record shows open) reads nothing
      // more than the record target() read: the log refuses an append to a closed stream in the
      // same step that takes its sequences (StreamClosedError, in publishOnce), so the tail and the
      // closed flag need no look first. The other paths need the tail's position and closed state.
      if (!producer && r.body.length > 0 && !m.closed) return (await publishOnce(r, m, close, undefined, undefined, inc))!;
      const tail = await tailOf(m);
      if (verdict?.kind === "duplicate") {
        // A retry of something already accepted: acknowledged again, nothing appended twice. The
        // request may have died between claiming its sequence and appending (a crashed instance):
        // appending it again under the same unique keys stores it if, and only if, it is missing.
        if (!tail.closed && r.body.length > 0 && producer!.seq === verdict.lastSeq) {
          let drafts: EventDraft[] = [];
          try {
            drafts = toDrafts(m, r.body, false);
          } catch {
            // A retry whose body does not parse is still a retry: the original stands.
          }
          if (drafts.length > 0) await log.publish(id, keyed(producer!, drafts), { source: "durable", byteBounded: true, internalKeys: true }).catch(() => undefined);
        }
        const headers: Record<string, string> = { [H.producerEpoch]: String(producer!.epoch), [H.producerSeq]: String(verdict.lastSeq), [H.offset]: offsetOf(m, (await tailOf(m)).position) };
        if (tail.closed) headers[H.closed] = "true";
        return { status: 204, headers };
      }
      if (r.body.length === 0) {
        // Close only (idempotent): an already closed stream answers the same.
        if (!tail.closed && verdict?.kind === "accept" && !(await durable.casProducer(m.project, m.name, m.inc, producer!.id, verdict.expected, verdict.next))) continue;
        const final = tail.closed ? m.base + tail.position : await log.closeStream(id);
        // The first close names its reason; a later close of a closed stream changes nothing.
        const reason = tail.closed ? await closeReasonOf(m) : parseCloseReason(r, true);
        await durable.update(m.project, m.name, m.inc, {
          closed: true,
          ...(producer && !tail.closed ? { closedBy: { producerId: producer.id, epoch: producer.epoch, seq: producer.seq } } : {}),
          ...(!tail.closed && reason !== undefined ? { closeReason: reason } : {}),
        });
        const headers: Record<string, string> = { [H.offset]: offsetOf(m, final - m.base), [H.closed]: "true" };
        if (reason !== undefined) headers[H.closeReason] = reason;
        if (producer) Object.assign(headers, { [H.producerEpoch]: String(producer.epoch), [H.producerSeq]: String(producer.seq) });
        return { status: 204, headers };
      }
      if (tail.closed) {
        const fresh = await durable.get(m.project, m.name);
        const closedBy = fresh?.inc === m.inc ? fresh.closedBy : undefined;
        if (producer && closedBy && closedBy.producerId === producer.id && closedBy.epoch === producer.epoch && closedBy.seq === producer.seq) {
          return { status: 204, headers: { [H.closed]: "true", [H.offset]: offsetOf(m, tail.position), [H.producerEpoch]: String(producer.epoch), [H.producerSeq]: String(producer.seq) } };
        }
        throw closedConflict(m, tail.position, fresh?.inc === m.inc ? fresh.closeReason : undefined);
      }
      const reply = await publishOnce(r, m, close, producer, verdict);
      if (reply) return reply;
    }
  }

  /**
   * Appends the request's body (checked against the stream) and answers it; undefined when the
   * producer's state moved meanwhile (the caller looks again).
   */
  async function publishOnce(r: DsRequest, m: DurableMeta, close: boolean, producer: Producer | undefined, verdict: Verdict | undefined, inc?: string): Promise<DsReply | undefined> {
    const id = logOf(m);
    const ct = r.header("content-type");
    if (ct === undefined || ct.trim() === "") throw new DsError(400, "Content-Type is required");
    if (mediaType(ct) !== mediaType(m.contentType)) throw new DsError(409, `Content-Type ${mediaType(ct)} does not match the stream's ${mediaType(m.contentType)}`);
    const drafts = toDrafts(m, r.body, false);
    const streamSeq = r.header(H.seq);
    if (streamSeq !== undefined && !(await durable.claimStreamSeq(m.project, m.name, m.inc, streamSeq))) throw new DsError(409, "Stream-Seq is not greater than the last one");
    if (verdict?.kind === "accept" && !(await durable.casProducer(m.project, m.name, m.inc, producer!.id, verdict.expected, verdict.next))) return undefined;
    let stored: StoredEvent[];
    try {
      // Bounded by DURABLE_MAX_APPEND_BYTES only: an array of any count commits whole (clients batch what queues up).
      stored = await log.publish(id, producer ? keyed(producer, drafts) : drafts, { source: "durable", close, byteBounded: true, internalKeys: producer !== undefined, ...(inc !== undefined ? { incarnation: inc } : {}) });
    } catch (err) {
      // Nothing was appended: give the producer its sequence back, so a retry is not taken for a duplicate.
      if (verdict?.kind === "accept") await durable.casProducer(m.project, m.name, m.inc, producer!.id, verdict.next, verdict.expected ?? { epoch: producer!.epoch, lastSeq: -1 }).catch(() => undefined);
      if (err instanceof StreamClosedError) {
        await durable.update(m.project, m.name, m.inc, { closed: true });
        throw closedConflict(m, (await tailOf(m)).position, await closeReasonOf(m));
      }
      throw err;
    }
    if (close) {
      const reason = parseCloseReason(r, true);
      await durable.update(m.project, m.name, m.inc, { closed: true, ...(producer ? { closedBy: { producerId: producer.id, epoch: producer.epoch, seq: producer.seq } } : {}), ...(reason !== undefined ? { closeReason: reason } : {}) });
    }
    const headers: Record<string, string> = { [H.offset]: offsetOf(m, stored[stored.length - 1]!.seq - m.base) };
    if (close) headers[H.closed] = "true";
    if (producer) Object.assign(headers, { [H.producerEpoch]: String(producer.epoch), [H.producerSeq]: String(producer.seq) });
    return { status: producer ? 200 : 204, headers };
  }

  function producerRejection(v: Verdict): DsError | undefined {
    switch (v.kind) {
      case "stale":
        return new DsError(403, "stale producer epoch", { [H.producerEpoch]: String(v.epoch) });
      case "epoch-seq":
        return new DsError(400, "a new producer epoch must start at Producer-Seq 0");
      case "gap":
        return new DsError(409, "producer sequence gap", { [H.expectedSeq]: String(v.expected), [H.receivedSeq]: String(v.received) });
      default:
        return undefined;
    }
  }

  /**
   * An idempotent producer's publish to any stream (PublishStream's producer fields), with the
   * same rules and the same state as the Producer-* headers: a durable stream's producers, or, for
   * topics, executions and tasks, those of their /v1/log view.
   */
  async function producerPublish(stream: StreamId, producer: Producer, drafts: EventDraft[]): Promise<ProducerOutcome> {
    if (producer.id === "" || producer.id.length > MAX_PRODUCER_ID) throw new ProducerRejection("invalid", `producer_id must be 1-${MAX_PRODUCER_ID} characters`);
    if (!Number.isSafeInteger(producer.epoch) || !Number.isSafeInteger(producer.seq)) throw new ProducerRejection("invalid", "producer_epoch and producer_seq must be at most 2^53-1");
    // Queued in arrival order before anything is awaited: one call's pipelined publishes keep their order.
    return serialized(lockKey(stream, producer.id), async () => {
      const m = stream.kind === "durable" ? await live(stream.project, stream.key) : await ensureView(stream.project, { kind: stream.kind, key: stream.key });
      const id = logOf(m);
      for (;;) {
        const v = judgeProducer(await durable.getProducer(m.project, m.name, m.inc, producer.id), producer);
        switch (v.kind) {
          case "stale":
            throw new ProducerRejection("stale", `stale producer epoch ${producer.epoch}: the producer is at epoch ${v.epoch}`, v.epoch);
          case "epoch-seq":
            throw new ProducerRejection("invalid", "a new producer epoch must start at producer_seq 0");
          case "gap":
            throw new ProducerRejection("gap", `producer_seq gap: expected ${v.expected}, got ${v.received}`, producer.epoch, v.expected);
          case "duplicate": {
            // As over HTTP: the newest accepted request is appended again under its keys, which stores it only if it is missing.
            if (producer.seq === v.lastSeq) await log.publish(id, keyed(producer, drafts), { source: "streams", internalKeys: true }).catch(() => undefined);
            return { events: [], duplicate: true, epoch: producer.epoch, seq: v.lastSeq };
          }
          case "accept": {
            if (!(await durable.casProducer(m.project, m.name, m.inc, producer.id, v.expected, v.next))) continue;
            try {
              const events = await log.publish(id, keyed(producer, drafts), { source: "streams", internalKeys: true });
              return { events, duplicate: false, epoch: producer.epoch, seq: producer.seq };
            } catch (err) {
              await durable.casProducer(m.project, m.name, m.inc, producer.id, v.next, v.expected ?? { epoch: producer.epoch, lastSeq: -1 }).catch(() => undefined);
              throw err;
            }
          }
        }
      }
    });
  }

  return { append, producerPublish };
}
