import { LRUCache } from "lru-cache";
import type { Store } from "./store.js";

/** Bytes of execution bindings one process keeps (about 50,000 typical UUID bindings). */
export const BINDING_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * Which project an execution id belongs to, with the store's answers cached. A binding never
 * changes once made (the first binding wins and is never removed), so a cached one holds for as
 * long as it stays cached: Kubiya's publish binds without a store command after the first one of
 * an execution on this instance, and Polos resolves `execution_id` the same way. Only what the
 * store confirmed is cached (an unknown execution is asked again), bounded in bytes (LRU).
 */
export class ExecutionBindings {
  readonly #store: Store;
  readonly #cache: LRUCache<string, string>;

  constructor(store: Store, maxBytes = BINDING_CACHE_BYTES) {
    this.#store = store;
    // Two UTF-16 strings plus the cache's own entry (about 100 bytes).
    this.#cache = new LRUCache<string, string>({ maxSize: maxBytes, sizeCalculation: (project, id) => 2 * (id.length + project.length) + 100 });
  }

  /** Binds the execution to `project` unless it is bound already; returns the project it is bound to. */
  async bind(executionId: string, project: string): Promise<string> {
    const known = this.#cache.get(executionId);
    if (known !== undefined) return known;
    const bound = await this.#store.bindExecution(executionId, project);
    this.#cache.set(executionId, bound);
    return bound;
  }

  /** The project the execution is bound to; undefined when it is not bound (yet). */
  async projectOf(executionId: string): Promise<string | undefined> {
    const known = this.#cache.get(executionId);
    if (known !== undefined) return known;
    const bound = await this.#store.executionProject(executionId);
    if (bound !== undefined) this.#cache.set(executionId, bound);
    return bound;
  }
}

const shared = new WeakMap<Store, ExecutionBindings>();

/** The bindings of a store: one cache per store, shared by every API that binds (Kubiya, Polos). */
export function executionBindings(store: Store): ExecutionBindings {
  let b = shared.get(store);
  if (!b) {
    b = new ExecutionBindings(store);
    shared.set(store, b);
  }
  return b;
}
