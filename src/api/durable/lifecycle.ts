/**
 * A stream's life: create (PUT, incl. forks and an initial body), metadata (HEAD), delete.
 */
import type { DurableMeta } from "../../store/durable.js";
import type { EventDraft, StoredEvent } from "../../core/types.js";
import { READ_EVENTS, type DurableContext } from "./context.js";
import { rawMessage, toDrafts } from "./messages.js";
import { DsError, H, STREAM_PREFIX, type DsReply, type DsRequest } from "./protocol.js";
import { nameProblem, namePath } from "../../core/names.js";
import { isJson, mediaType, newIncarnation, OFFSET, OFFSET_UNITS, OffsetError, parseOffset, strictUint, validContentType } from "./wire.js";

export function durableLifecycle(ctx: DurableContext) {
  const { deps, log, durable, config, idOf, logOf, load, ensureView, target, live, retire, tailOf, offsetOf } = ctx;

  // ---------------------------------------------------------------- create (PUT), incl. forks

  interface CreateRequest {
    contentType: string | undefined;
    ttlSeconds: number | undefined;
    expiresAt: string | undefined;
    closed: boolean;
    forkedFrom: string | undefined;
    forkOffset: string | undefined;
    forkSubOffset: number | undefined;
  }

  function sourceName(v: string): string {
    let path = v;
    try {
      path = decodeURIComponent(new URL(v, "http://x").pathname);
    } catch {
      // not a URL path: taken as a name
    }
    return path.startsWith(STREAM_PREFIX) ? path.slice(STREAM_PREFIX.length) : path.replace(/^\/+/, "");
  }

  function parseCreate(r: DsRequest): CreateRequest {
    const ttlRaw = r.header(H.ttl);
    const expiresRaw = r.header(H.expiresAt);
    if (ttlRaw !== undefined && expiresRaw !== undefined) throw new DsError(400, "send Stream-TTL or Stream-Expires-At, not both");
    const ttlSeconds = ttlRaw === undefined ? undefined : strictUint(ttlRaw);
    if (ttlRaw !== undefined && ttlSeconds === undefined) throw new DsError(400, "Stream-TTL must be a non-negative integer in seconds (no sign, leading zeros or fraction)");
    if (expiresRaw !== undefined && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(expiresRaw.trim())) {
      throw new DsError(400, "Stream-Expires-At must be an RFC 3339 timestamp");
    }
    if (expiresRaw !== undefined && Number.isNaN(Date.parse(expiresRaw))) throw new DsError(400, "Stream-Expires-At must be an RFC 3339 timestamp");
    const forkedFromRaw = r.header(H.forkedFrom);
    const forkOffset = r.header(H.forkOffset);
    const subRaw = r.header(H.forkSubOffset);
    if (forkOffset !== undefined && forkedFromRaw === undefined) throw new DsError(400, "Stream-Fork-Offset needs Stream-Forked-From");
    if (forkOffset !== undefined && forkOffset !== "-1" && forkOffset !== "now" && !OFFSET.test(forkOffset)) throw new DsError(400, "malformed Stream-Fork-Offset");
    let forkSubOffset: number | undefined;
    if (subRaw !== undefined) {
      if (forkedFromRaw === undefined) throw new DsError(400, "Stream-Fork-Sub-Offset needs Stream-Forked-From");
      forkSubOffset = strictUint(subRaw);
      if (forkSubOffset === undefined) throw new DsError(400, "Stream-Fork-Sub-Offset must be a non-negative integer");
      if (forkSubOffset > 0 && forkOffset === undefined) throw new DsError(400, "Stream-Fork-Sub-Offset needs Stream-Fork-Offset");
    }
    const ct = r.header("content-type");
    return {
      contentType: validContentType(ct) ? ct!.trim() : forkedFromRaw !== undefined ? undefined : "application/octet-stream",
      ttlSeconds,
      expiresAt: expiresRaw?.trim(),
      closed: r.header(H.closed)?.toLowerCase() === "true",
      forkedFrom: forkedFromRaw === undefined ? undefined : sourceName(forkedFromRaw),
      forkOffset,
      forkSubOffset: forkSubOffset === 0 ? undefined : forkSubOffset,
    };
  }

  function sameConfig(m: DurableMeta, c: CreateRequest): boolean {
    if (c.contentType !== undefined && mediaType(c.contentType) !== mediaType(m.contentType)) return false;
    const inheritsExpiry = c.forkedFrom !== undefined && c.ttlSeconds === undefined && c.expiresAt === undefined;
    if (!inheritsExpiry) {
      if (c.ttlSeconds !== m.ttlSeconds) return false;
      if ((c.expiresAt === undefined) !== (m.expiresAt === undefined)) return false;
      if (c.expiresAt !== undefined && Date.parse(c.expiresAt) !== Date.parse(m.expiresAt!)) return false;
    }
    if (c.closed !== m.closed) return false;
    if (c.forkedFrom !== m.forkedFrom) return false;
    if (c.forkOffset !== undefined && c.forkOffset !== m.forkOffset) return false;
    return (c.forkSubOffset ?? 0) === (m.forkSubOffset ?? 0);
  }

  async function createdReply(r: DsRequest, m: DurableMeta, status: number): Promise<DsReply> {
    const tail = await tailOf(m);
    const headers: Record<string, string> = { "content-type": m.contentType, [H.offset]: offsetOf(m, tail.position) };
    if (status === 201) headers["location"] = r.origin + STREAM_PREFIX + namePath(m.name);
    if (tail.closed) headers[H.closed] = "true";
    return { status, headers };
  }

  /** What a fork copies from its source: the messages up to the fork point (and a partial one for a binary sub-offset). */
  async function planFork(src: DurableMeta, c: CreateRequest): Promise<{ count: number; copies: Map<number, EventDraft>; upTo: number; forkOffset: string }> {
    const tail = await tailOf(src);
    let point: number;
    let forkOffset: string;
    if (c.forkOffset === undefined || c.forkOffset === "now") {
      point = tail.position;
      forkOffset = c.forkOffset ?? offsetOf(src, point);
    } else {
      let parsed;
      try {
        parsed = parseOffset(c.forkOffset, src);
      } catch (err) {
        throw new DsError(400, err instanceof OffsetError ? `Stream-Fork-Offset: ${err.message}` : "malformed Stream-Fork-Offset");
      }
      point = parsed.kind === "at" ? parsed.position : 0;
      forkOffset = c.forkOffset;
      if (point > tail.position) throw new DsError(400, "Stream-Fork-Offset is beyond the source stream's tail");
    }
    const copies = new Map<number, EventDraft>();
    const srcId = logOf(src);
    const copy = (e: StoredEvent): EventDraft => {
      const d: EventDraft = { eventType: e.eventType, data: e.data };
      if (e.bytes) d.bytes = e.bytes;
      if (e.extra) d.extra = e.extra;
      if (Object.keys(e.metadata).length > 0) d.metadata = e.metadata;
      return d;
    };
    let cursor = src.base;
    let bytes = 0;
    while (cursor < src.base + point) {
      const page = await log.list(srcId, cursor, READ_EVENTS);
      for (const e of page.events) {
        if (e.seq > src.base + point) continue;
        bytes += e.bytes ? e.bytes.byteLength : JSON.stringify(e.data).length;
        if (bytes > config.maxForkBytes) throw new DsError(413, `a fork copies what it inherits; this one would copy more than ${config.maxForkBytes} bytes (DURABLE_MAX_FORK_BYTES)`);
        copies.set(e.seq - src.base, copy(e));
      }
      if (page.next <= cursor) break;
      cursor = page.next;
      if (!page.hasMore) break;
    }
    let count = point;
    let upTo = point;
    const sub = c.forkSubOffset ?? 0;
    if (sub > 0) {
      // The sub-offset counts into the data right after the fork point, and may not pass its end.
      const next = (await log.list(srcId, src.base + point, READ_EVENTS)).events;
      const first = next[0];
      if (!first) throw new DsError(400, "Stream-Fork-Sub-Offset: there is no data past Stream-Fork-Offset");
      if (isJson(src.contentType)) {
        // JSON: messages of the append (one atomic publish) that starts there.
        const batch = first.batchEnd !== undefined ? first.batchEnd - first.seq + 1 : 1;
        if (sub > batch) throw new DsError(400, "Stream-Fork-Sub-Offset passes the end of the next append");
        for (const e of next) if (e.seq <= first.seq + sub - 1) copies.set(e.seq - src.base, copy(e));
        count = first.seq - src.base + sub - 1;
        upTo = count;
      } else {
        const bytes = rawMessage(first);
        if (sub > bytes.length) throw new DsError(400, "Stream-Fork-Sub-Offset passes the end of the next append");
        count = first.seq - src.base;
        copies.set(count, { eventType: first.eventType, data: null, bytes: new Uint8Array(bytes.subarray(0, sub)) });
      }
    }
    return { count, copies, upTo, forkOffset };
  }

  async function create(r: DsRequest): Promise<DsReply> {
    // One name rule for every surface (core/names.ts): what is created here is reachable everywhere.
    const problem = nameProblem(r.name);
    if (problem) throw new DsError(400, `stream name ${problem}`);
    const c = parseCreate(r);
    if (r.view) {
      // A view exists as soon as it is named: PUT confirms its (fixed) configuration or conflicts.
      const m = await ensureView(r.project, r.view);
      if (c.forkedFrom !== undefined || !sameConfig({ ...m, closed: (await tailOf(m)).closed }, c)) throw new DsError(409, "a log view is application/json, without expiry or fork");
      return createdReply(r, m, 200);
    }
    const existing = await load(r.project, r.name);
    if (existing) {
      if (existing.softDeleted) throw new DsError(409, "this name belongs to a deleted stream that forks still reference");
      if (!sameConfig(existing, c)) throw new DsError(409, "a stream with a different configuration exists here");
      return createdReply(r, existing, 200);
    }
    let src: DurableMeta | undefined;
    if (c.forkedFrom !== undefined) {
      src = await load(r.project, c.forkedFrom);
      if (!src) throw new DsError(404, "source stream not found");
      if (src.softDeleted) throw new DsError(409, "the source stream was deleted (its forks keep it reserved)");
      if (src.view) throw new DsError(400, "a log view cannot be forked");
      if (c.contentType !== undefined && mediaType(c.contentType) !== mediaType(src.contentType)) throw new DsError(409, "Content-Type differs from the source stream's");
    }
    const contentType = c.contentType ?? src?.contentType ?? "application/octet-stream";
    // Validate the initial body before anything is created.
    const drafts = r.body.length > 0 ? toDrafts({ contentType }, r.body, true) : [];
    const plan = src ? await planFork(src, c) : undefined;
    const id = idOf(r.project, r.name);
    const at = deps.now();
    const meta: DurableMeta = {
      project: r.project,
      name: r.name,
      inc: newIncarnation(),
      base: 0,
      contentType,
      createdAt: at,
      lastAccessAt: at,
      closed: false,
      ancestors: [],
      refCount: 0,
      softDeleted: false,
    };
    // A fork's offsets continue its source's (inherited offsets must mean the same position).
    const units = src ? src.offsetUnits : OFFSET_UNITS;
    if (units !== undefined) meta.offsetUnits = units;
    const inheritsExpiry = src && c.ttlSeconds === undefined && c.expiresAt === undefined;
    const ttl = inheritsExpiry ? src!.ttlSeconds : c.ttlSeconds;
    const expiresAt = inheritsExpiry ? src!.expiresAt : c.expiresAt;
    if (ttl !== undefined) meta.ttlSeconds = ttl;
    if (expiresAt !== undefined) meta.expiresAt = expiresAt;
    if (src && plan) {
      meta.forkedFrom = src.name;
      meta.forkOffset = plan.forkOffset;
      if (c.forkSubOffset !== undefined) meta.forkSubOffset = c.forkSubOffset;
      meta.sourceInc = src.inc;
      meta.ancestors = [{ inc: src.inc, upTo: plan.upTo }, ...src.ancestors.map((a) => ({ inc: a.inc, upTo: Math.min(a.upTo, plan.upTo) }))];
      // Take the reference before the fork exists, so the source cannot be collected in between.
      if (!(await durable.addRef(src.project, src.name, src.inc, +1))) throw new DsError(404, "source stream not found");
    }
    // The stream record holds the new incarnation from here on: an append from a record cached
    // before (on any instance) is refused by its reservation (PublishOptions.incarnation).
    await log.reopenStream(id, meta.inc);
    const count = plan?.count ?? 0;
    meta.base = await log.reserveRange(id, count);
    const { created, meta: holder } = await durable.create(meta);
    if (!created) {
      // Another request created it first: our reserved range becomes placeholders, and the stream
      // record gets the winner's incarnation back unless something newer replaced ours meanwhile.
      await log.setIncarnation(id, holder.inc, meta.inc);
      if (count > 0) await log.fill(id, meta.base, count, new Map());
      if (src) await durable.addRef(src.project, src.name, src.inc, -1);
      if (holder.softDeleted || !sameConfig(holder, c)) throw new DsError(409, "a stream with a different configuration exists here");
      return createdReply(r, holder, 200);
    }
    if (plan && count > 0) await log.fill(id, meta.base, count, plan.copies);
    if (drafts.length > 0) {
      await log.publish(id, drafts, { source: "durable", close: c.closed, byteBounded: true });
    } else if (c.closed) {
      await log.closeStream(id);
    }
    if (c.closed) Object.assign(meta, await durable.update(r.project, r.name, meta.inc, { closed: true }));
    return createdReply(r, meta, 201);
  }

  // ---------------------------------------------------------------- metadata (HEAD), delete

  async function head(r: DsRequest): Promise<DsReply> {
    const m = await target(r);
    const tail = await tailOf(m);
    const headers: Record<string, string> = {
      "content-type": m.contentType,
      [H.offset]: offsetOf(m, tail.position),
      "cache-control": "no-store",
      etag: `"${m.inc}:-1:${offsetOf(m, tail.position)}${tail.closed ? ":c" : ""}"`,
    };
    if (tail.closed) headers[H.closed] = "true";
    if (tail.closed && m.closeReason !== undefined) headers[H.closeReason] = m.closeReason;
    if (m.ttlSeconds !== undefined) headers[H.ttl] = String(m.ttlSeconds);
    if (m.expiresAt !== undefined) headers[H.expiresAt] = m.expiresAt;
    return { status: 200, headers };
  }

  async function remove(r: DsRequest): Promise<DsReply> {
    if (r.view) throw new DsError(405, "a log view is not deleted here (PurgeStream deletes a stream's events)", { allow: "GET, HEAD, POST, PUT, OPTIONS" });
    const m = await live(r.project, r.name);
    await retire(m);
    return { status: 204 };
  }

  return { create, head, remove };
}
