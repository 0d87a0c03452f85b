/**
 * Durable Streams bookkeeping (the events themselves live in the event log, stream kind
 * "durable"): one metadata record per stream name and project, and the idempotent producers'
 * state. Adapters: memory/durable.ts, mongo/durable.ts (`durable_streams`, `durable_producers`);
 * test/durable-store-contract.test.ts runs the same contract against both.
 */

/** A fork's inherited offsets: offsets of incarnation `inc` address the fork up to position `upTo`. */
export interface DurableAncestor {
  inc: string;
  upTo: number;
}

export interface DurableMeta {
  project: string;
  name: string;
  /**
   * This incarnation's identity, 16 digits, new at every creation: the first half of its offsets,
   * so a deleted and re-created stream is a new stream that old offsets do not address.
   */
  inc: string;
  /** The log sequence before this incarnation's first position: position = sequence - base. */
  base: number;
  /**
   * Offset values per message (src/api/durable/wire.ts): OFFSET_UNITS for streams created since
   * offsets became byte-position-like; absent (1) on records made before, whose offsets keep
   * counting messages. A fork takes its source's, so inherited offsets mean the same.
   */
  offsetUnits?: number;
  contentType: string;
  ttlSeconds?: number;
  /** Stream-Expires-At as the creator sent it (echoed by HEAD). */
  expiresAt?: string;
  createdAt: Date;
  /** Reads and writes move it (sliding TTL); HEAD does not. */
  lastAccessAt: Date;
  /** Mirrors the log's closed counter (which is what refuses appends, atomically). */
  closed: boolean;
  /** What the close-only request that closed the stream gave as its reason (Stream-Close-Reason). */
  closeReason?: string;
  /** The producer request that closed the stream: a retry of it is a duplicate, not a conflict. */
  closedBy?: { producerId: string; epoch: number; seq: number };
  forkedFrom?: string;
  forkOffset?: string;
  forkSubOffset?: number;
  /** The source incarnation a fork holds a reference on. */
  sourceInc?: string;
  ancestors: DurableAncestor[];
  /** Forks that hold a reference on this incarnation. */
  refCount: number;
  /** Deleted while forks referenced it: 410 for everything, the name stays taken. */
  softDeleted: boolean;
  /** The last Stream-Seq accepted (byte-wise lexicographic order). */
  streamSeq?: string;
  /**
   * Set for the durable view of another kind's stream (`/v1/log/{kind}/{key}`): the log stream it
   * reads and appends to, as JSON envelopes. Such a record never expires and is never deleted.
   */
  view?: { kind: "topic" | "execution" | "task"; key: string };
}

export interface ProducerState {
  epoch: number;
  lastSeq: number;
}

export interface DurableStore {
  init(): Promise<void>;
  get(project: string, name: string): Promise<DurableMeta | undefined>;
  /** Inserts the record unless the name is taken; returns whichever record holds the name. */
  create(meta: DurableMeta): Promise<{ created: boolean; meta: DurableMeta }>;
  /** Deletes the incarnation's record (nothing when `inc` no longer holds the name). */
  remove(project: string, name: string, inc: string): Promise<boolean>;
  /** Sets fields of the incarnation; undefined when it no longer holds the name. */
  update(project: string, name: string, inc: string, set: Partial<Pick<DurableMeta, "closed" | "closedBy" | "closeReason" | "softDeleted" | "lastAccessAt">>): Promise<DurableMeta | undefined>;
  /** Adds `delta` to the incarnation's fork reference count; returns the updated record. */
  addRef(project: string, name: string, inc: string, delta: number): Promise<DurableMeta | undefined>;
  /** Stream-Seq check-and-set in one step: true (and stored) when `seq` is greater than the last one. */
  claimStreamSeq(project: string, name: string, inc: string, seq: string): Promise<boolean>;

  getProducer(project: string, name: string, inc: string, producerId: string): Promise<ProducerState | undefined>;
  /**
   * Compare-and-set of a producer's state: moves it to `next` only if it is `expected` now
   * (undefined: the producer has no state yet). False when another request changed it first.
   */
  casProducer(project: string, name: string, inc: string, producerId: string, expected: ProducerState | undefined, next: ProducerState): Promise<boolean>;
  removeProducers(project: string, name: string, inc: string): Promise<void>;
}
