import { isLive, keyOrder, type ApiKeyRecord, type KeyPage, type KeyStore } from "../keys.js";
import { MemoryBudget, MeteredMap } from "./budget.js";

/** API keys in this process's memory, counted against MEMORY_MAX_BYTES (budget.ts). */
export class MemoryKeyStore implements KeyStore {
  readonly #keys: MeteredMap<string, ApiKeyRecord>;

  constructor(budget = new MemoryBudget()) {
    this.#keys = new MeteredMap(budget, "an API key");
  }

  async init(): Promise<void> {}

  async insert(record: ApiKeyRecord): Promise<void> {
    this.#keys.set(record.id, { ...record });
  }

  async findByHash(hash: string, now: Date): Promise<ApiKeyRecord | undefined> {
    for (const k of this.#keys.values()) if (k.hash === hash && isLive(k, now)) return { ...k };
    return undefined;
  }

  async liveHashes(hashes: readonly string[], now: Date): Promise<Set<string>> {
    const wanted = new Set(hashes);
    return new Set([...this.#keys.values()].filter((k) => wanted.has(k.hash) && isLive(k, now)).map((k) => k.hash));
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    const k = this.#keys.get(id);
    if (!k || k.revokedAt) return false;
    this.#keys.set(id, { ...k, revokedAt: at });
    return true;
  }

  async list(page: KeyPage): Promise<ApiKeyRecord[]> {
    const { after } = page;
    return [...this.#keys.values()]
      .filter((k) => (page.project === undefined || k.project === page.project) && (!after || keyOrder(k, after) > 0))
      .sort(keyOrder)
      .slice(0, page.limit)
      .map((k) => ({ ...k }));
  }
}
