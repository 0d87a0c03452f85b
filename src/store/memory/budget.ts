import { measure } from "../../core/json.js";
import { CapacityError } from "../../core/types.js";

/** Heap bytes of a map entry and its record object besides the record's JSON (keys, headers). */
const ENTRY_OVERHEAD = 128;

/** Estimated heap bytes of one record held in memory (its JSON, per-node overhead, the map entry). */
export function recordWeight(record: unknown): number {
  return measure([record]).weight + ENTRY_OVERHEAD;
}

/**
 * The one byte bound (MEMORY_MAX_BYTES) of everything the in-memory store holds: events, and the
 * records of every other port (tasks, Durable Streams metadata and producers, Sailhouse
 * subscriptions, deliveries, scheduled sends and wait groups, API keys, execution bindings). Past
 * it, whatever would grow is refused with CapacityError naming the limit and how to raise it
 * (503 / `resource_exhausted`, like every capacity bound), and nothing of it is stored.
 */
export class MemoryBudget {
  #used = 0;

  constructor(readonly max = Infinity) {}

  /** Estimated heap bytes held. */
  get used(): number {
    return this.#used;
  }

  /** Throws CapacityError unless `bytes` more for `what` fit; takes nothing. */
  ensure(bytes: number, what: string): void {
    if (bytes > 0 && this.#used + bytes > this.max) {
      throw new CapacityError(
        `the in-memory store is full: ${what} needs ${bytes} bytes and ${Math.max(0, this.max - this.#used)} of MEMORY_MAX_BYTES=${this.max} are left; raise MEMORY_MAX_BYTES, purge streams or let them expire, or set MONGODB_URI to use MongoDB`,
      );
    }
  }

  /** Counts `delta` bytes more (or fewer) without a check: what ensure() admitted, or a release. */
  add(delta: number): void {
    this.#used = Math.max(0, this.#used + delta);
  }

  /** Takes `bytes` more for `what`, or throws CapacityError having taken nothing. */
  take(bytes: number, what: string): void {
    this.ensure(bytes, what);
    this.add(bytes);
  }

  give(bytes: number): void {
    this.add(-bytes);
  }
}

/**
 * A Map whose entries are charged to a MemoryBudget by their recordWeight: `set` takes the growth
 * (or throws, leaving the map as it was), `delete` gives the entry back. A record changed in place
 * is `set` again under its key, or `grow`s by what was added to it.
 */
export class MeteredMap<K, V> extends Map<K, V> {
  readonly #weights = new Map<K, number>();

  constructor(
    private readonly budget: MemoryBudget,
    private readonly what: string,
  ) {
    super();
  }

  /** Stores `value` under `key`, charging its weight (minus what the key held) to the budget. */
  override set(key: K, value: V): this {
    const weight = this.#weigh(key, value);
    this.budget.take(weight - (this.#weights.get(key) ?? 0), this.what);
    this.#weights.set(key, weight);
    return super.set(key, value);
  }

  /** Would storing `value` under `key` fit? Throws CapacityError like set() would, changing nothing. */
  check(key: K, value: V): void {
    this.budget.ensure(this.#weigh(key, value) - (this.#weights.get(key) ?? 0), this.what);
  }

  /**
   * A record under `key` grows (or shrinks) in place by `bytes` (an id appended to a list): charged
   * without measuring the whole record again. Throws CapacityError before the caller changes it.
   */
  grow(key: K, bytes: number): void {
    this.budget.take(bytes, this.what);
    this.#weights.set(key, (this.#weights.get(key) ?? 0) + bytes);
  }

  #weigh(key: K, value: V): number {
    return recordWeight(value) + (typeof key === "string" ? Buffer.byteLength(key) : 0);
  }

  override delete(key: K): boolean {
    this.budget.give(this.#weights.get(key) ?? 0);
    this.#weights.delete(key);
    return super.delete(key);
  }

  override clear(): void {
    for (const key of [...this.keys()]) this.delete(key);
  }
}
