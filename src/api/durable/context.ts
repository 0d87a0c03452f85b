/**
 * What every Durable Streams operation shares: finding a stream's record (expiring it when due),
 * the log stream behind it, its tail, and reading its messages. Built once per durableApi.
 */
import { LRUCache } from "lru-cache";
import type { DurableMeta } from "../../store/durable.js";
import type { StoredEvent, StreamId } from "../../core/types.js";
import { DsError, type DsRequest, type DurableDeps } from "./protocol.js";
import { formatOffset, OFFSET_UNITS } from "./wire.js";

/** The incarnation of every view: views are never deleted, so they need no other. */
const VIEW_INC = "0000000000000000";
/** A view's record name: starts with a control character, which stream names may not contain. */
const viewName = (kind: string, key: string): string => `\u0001log/${kind}/${key}`;
/** Events read from the log per round of a read. */
export const READ_EVENTS = 1000;
/** How long one look at a stream's tail serves its live readers on this instance (sharedTail). */
const SHARED_TAIL_MS = 500;
/** See expired(). */
const TTL_GRACE_MS = 1000;
/** Estimated heap bytes of the stream records kept for plain appends (see cachedRecord()), least recently used out first. */
const RECORD_CACHE_BYTES = 8 * 1024 * 1024;

export function durableContext(deps: DurableDeps) {
  const { log, durable, config } = deps;

  const idOf = (project: string, name: string): StreamId => ({ project, kind: "durable", key: name });
  /** The log stream behind a record: its own, or the viewed stream of another kind. */
  const logOf = (m: DurableMeta): StreamId => (m.view ? { project: m.project, kind: m.view.kind, key: m.view.key } : idOf(m.project, m.name));
  const nowMs = (): number => deps.now().getTime();

  /**
   * Stream-Expires-At is exact. A TTL stream expires between TTL and TTL + 1 s after its last read
   * or write: the grace second absorbs a client's own scheduling delay between two requests
   * (expiry is a clean-up, so erring late is the safe side).
   */
  function expired(m: DurableMeta): boolean {
    const now = nowMs();
    if (m.expiresAt !== undefined && Date.parse(m.expiresAt) <= now) return true;
    return m.ttlSeconds !== undefined && m.lastAccessAt.getTime() + m.ttlSeconds * 1000 + TTL_GRACE_MS <= now;
  }

  /** The stream's record, or undefined (never created, deleted, or expired: an expired one is deleted now). */
  async function load(project: string, name: string): Promise<DurableMeta | undefined> {
    const m = await durable.get(project, name);
    if (!m) return undefined;
    if (!m.softDeleted && expired(m)) {
      await retire(m);
      return m.refCount > 0 ? { ...m, softDeleted: true } : undefined;
    }
    return m;
  }

  /** A view's record, made on first use (the viewed stream exists as soon as it is named). */
  async function ensureView(project: string, view: NonNullable<DsRequest["view"]>): Promise<DurableMeta> {
    const name = viewName(view.kind, view.key);
    const found = await durable.get(project, name);
    if (found) return found;
    const at = deps.now();
    const { meta } = await durable.create({ project, name, inc: VIEW_INC, base: 0, offsetUnits: OFFSET_UNITS, contentType: "application/json", createdAt: at, lastAccessAt: at, closed: false, ancestors: [], refCount: 0, softDeleted: false, view });
    return meta;
  }

  /** The record a request addresses: its view, or its durable stream (404 when absent, 410 when soft-deleted). */
  async function target(r: DsRequest): Promise<DurableMeta> {
    return r.view ? ensureView(r.project, r.view) : live(r.project, r.name);
  }

  /** load() for direct operations: 404 when absent, 410 when soft-deleted. */
  async function live(project: string, name: string): Promise<DurableMeta> {
    const m = await load(project, name);
    if (!m) throw new DsError(404, "stream not found");
    if (m.softDeleted) throw new DsError(410, "stream is gone (deleted; forks still reference it)");
    return m;
  }

  /**
   * Records a plain append may answer from without reading the store (docs/durable-streams.md,
   * "What an append costs"): streams without a TTL (an append moves a TTL stream's expiry, a
   * write anyway), not closed, not views. What such an append takes from the record is fixed for
   * an incarnation (base, offset units, content type, expiry instant), and its reservation checks
   * the incarnation in the store (PublishOptions.incarnation), so a stream deleted and created
   * again on another instance is noticed there, before anything is stored.
   */
  const records = new LRUCache<string, DurableMeta>({ maxSize: RECORD_CACHE_BYTES, sizeCalculation: (m, key) => 2 * (key.length + JSON.stringify(m).length) + 200 });
  const recordKey = (project: string, name: string): string => `${project}\n${name}`;
  function cachedRecord(project: string, name: string): DurableMeta | undefined {
    const m = records.get(recordKey(project, name));
    // An expiry seen passed is confirmed by a read (which deletes the stream), never answered from here.
    if (m && expired(m)) return void forgetRecord(project, name);
    return m;
  }
  function rememberRecord(m: DurableMeta): void {
    if (m.view || m.ttlSeconds !== undefined || m.closed || m.softDeleted) forgetRecord(m.project, m.name);
    else records.set(recordKey(m.project, m.name), m);
  }
  function forgetRecord(project: string, name: string): void {
    records.delete(recordKey(project, name));
  }

  /** Reads and writes move a TTL stream's expiry (HEAD does not). */
  async function touch(m: DurableMeta): Promise<void> {
    if (m.ttlSeconds !== undefined) await durable.update(m.project, m.name, m.inc, { lastAccessAt: deps.now() });
  }

  /**
   * Deletes a stream (DELETE, or expiry). With forks referencing it, it is soft-deleted: the name
   * answers 410 and cannot be re-created until the last fork is gone. Forks hold copies of what
   * they inherited, so the events go at once either way. The log stream is closed first (no stray
   * append lands), then purged; its sequences stay taken, so a stream created under the same name
   * later starts after them with a new incarnation.
   */
  async function retire(m: DurableMeta): Promise<void> {
    const id = logOf(m);
    forgetRecord(m.project, m.name);
    await log.closeStream(id);
    await log.purge(id);
    if (m.refCount > 0) {
      await durable.update(m.project, m.name, m.inc, { softDeleted: true });
      return;
    }
    if (!(await durable.remove(m.project, m.name, m.inc))) return;
    await durable.removeProducers(m.project, m.name, m.inc);
    await release(m);
  }

  /** A fork is gone: drop its reference on its source, and collect the source if it was soft-deleted and this was its last fork. */
  async function release(m: DurableMeta): Promise<void> {
    if (m.forkedFrom === undefined || m.sourceInc === undefined) return;
    const src = await durable.addRef(m.project, m.forkedFrom, m.sourceInc, -1);
    if (src && src.softDeleted && src.refCount <= 0) await retire(src);
  }

  /**
   * The stream's tail position and closed state, from one read (log.tail): when closed, the
   * position is the final one, so a reader there holds everything before the close.
   */
  async function tailOf(m: DurableMeta): Promise<{ position: number; closed: boolean }> {
    const { head, closed } = await log.tail(logOf(m));
    return { position: Math.max(0, head - m.base), closed };
  }

  /**
   * tailOf() shared by the live readers of one stream on this instance: at most one look at the
   * store per stream per SHARED_TAIL_MS, however many readers wait on it.
   */
  const sharedTails = new Map<string, Promise<{ position: number; closed: boolean }>>();
  function sharedTail(m: DurableMeta): Promise<{ position: number; closed: boolean }> {
    const key = `${m.project}\n${m.name}\n${m.inc}`;
    let p = sharedTails.get(key);
    if (!p) {
      p = tailOf(m);
      sharedTails.set(key, p);
      const forget = (): void => void setTimeout(() => sharedTails.get(key) === p && sharedTails.delete(key), SHARED_TAIL_MS).unref();
      p.then(forget, () => sharedTails.delete(key));
    }
    return p;
  }

  /**
   * A reader stuck before `end` (a closed stream's end, or the tail a catch-up was asked for) with
   * nothing readable after `position`: the sequences between were taken and never stored (or not
   * yet). Claims them once the log's hole timeout has passed, as the log does for holes between
   * events; true when claimed (read again now).
   */
  async function passTrailing(m: DurableMeta, position: number, end: number): Promise<boolean> {
    return position < end && (await log.claimTrailing(logOf(m), m.base + position + 1, m.base + end)) === 0;
  }

  /** Why the stream was closed, when its closer said (read fresh: a record loaded before the close does not know). */
  async function closeReasonOf(m: DurableMeta): Promise<string | undefined> {
    const fresh = await durable.get(m.project, m.name);
    return fresh?.inc === m.inc ? fresh.closeReason : undefined;
  }

  /** Messages after `position`, at most about readMaxBytes: the events, the next position, and whether that is all there is now. */
  async function readAfter(m: DurableMeta, position: number): Promise<{ events: StoredEvent[]; next: number; upToDate: boolean }> {
    const page = await log.list(logOf(m), m.base + position, READ_EVENTS);
    let bytes = 0;
    const events: StoredEvent[] = [];
    for (const e of page.events) {
      const size = e.bytes ? e.bytes.byteLength : JSON.stringify(e.data).length;
      if (events.length > 0 && bytes + size > config.readMaxBytes) {
        return { events, next: events[events.length - 1]!.seq - m.base, upToDate: false };
      }
      bytes += size;
      events.push(e);
    }
    return { events, next: Math.max(position, page.next - m.base), upToDate: !page.hasMore };
  }

  function offsetOf(m: DurableMeta, position: number): string {
    return formatOffset(m.inc, position, m.offsetUnits ?? 1);
  }

  return { deps, log, durable, config, idOf, logOf, nowMs, load, ensureView, target, live, cachedRecord, rememberRecord, forgetRecord, touch, retire, tailOf, sharedTail, closeReasonOf, passTrailing, readAfter, offsetOf };
}

export type DurableContext = ReturnType<typeof durableContext>;
