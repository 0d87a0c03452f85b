import type { DurableMeta, DurableStore, ProducerState } from "../durable.js";
import { MemoryBudget, MeteredMap } from "./budget.js";

const key = (project: string, name: string): string => `${encodeURIComponent(project)}/${name}`;

/** Durable Streams bookkeeping in this process's memory (the embedded default). Records are copied in and out. */
export class MemoryDurableStore implements DurableStore {
  readonly #streams: MeteredMap<string, DurableMeta>;
  /** `project/name` + "\n" + inc + "\n" + producer id → state. */
  readonly #producers: MeteredMap<string, ProducerState>;

  /** Records are counted against MEMORY_MAX_BYTES with everything else in memory (budget.ts). */
  constructor(budget = new MemoryBudget()) {
    this.#streams = new MeteredMap(budget, "a Durable Stream's record");
    this.#producers = new MeteredMap(budget, "a Durable Streams producer's state");
  }

  async init(): Promise<void> {}

  #live(project: string, name: string, inc: string): DurableMeta | undefined {
    const m = this.#streams.get(key(project, name));
    return m && m.inc === inc ? m : undefined;
  }

  async get(project: string, name: string): Promise<DurableMeta | undefined> {
    const m = this.#streams.get(key(project, name));
    return m && structuredClone(m);
  }

  async create(meta: DurableMeta): Promise<{ created: boolean; meta: DurableMeta }> {
    const k = key(meta.project, meta.name);
    const existing = this.#streams.get(k);
    if (existing) return { created: false, meta: structuredClone(existing) };
    this.#streams.set(k, structuredClone(meta));
    return { created: true, meta: structuredClone(meta) };
  }

  async remove(project: string, name: string, inc: string): Promise<boolean> {
    if (!this.#live(project, name, inc)) return false;
    this.#streams.delete(key(project, name));
    return true;
  }

  async update(project: string, name: string, inc: string, set: Partial<DurableMeta>): Promise<DurableMeta | undefined> {
    const m = this.#live(project, name, inc);
    if (!m) return undefined;
    const next = { ...m, ...structuredClone(set) };
    this.#streams.set(key(project, name), next);
    return structuredClone(next);
  }

  async addRef(project: string, name: string, inc: string, delta: number): Promise<DurableMeta | undefined> {
    const m = this.#live(project, name, inc);
    if (!m) return undefined;
    m.refCount += delta;
    return structuredClone(m);
  }

  async claimStreamSeq(project: string, name: string, inc: string, seq: string): Promise<boolean> {
    const m = this.#live(project, name, inc);
    if (!m) return false;
    if (m.streamSeq !== undefined && !(Buffer.compare(Buffer.from(m.streamSeq), Buffer.from(seq)) < 0)) return false;
    this.#streams.set(key(project, name), { ...m, streamSeq: seq });
    return true;
  }

  #pkey(project: string, name: string, inc: string, producerId: string): string {
    return `${key(project, name)}\n${inc}\n${producerId}`;
  }

  async getProducer(project: string, name: string, inc: string, producerId: string): Promise<ProducerState | undefined> {
    const p = this.#producers.get(this.#pkey(project, name, inc, producerId));
    return p && { ...p };
  }

  async casProducer(project: string, name: string, inc: string, producerId: string, expected: ProducerState | undefined, next: ProducerState): Promise<boolean> {
    const k = this.#pkey(project, name, inc, producerId);
    const now = this.#producers.get(k);
    if (expected === undefined ? now !== undefined : now === undefined || now.epoch !== expected.epoch || now.lastSeq !== expected.lastSeq) return false;
    this.#producers.set(k, { ...next });
    return true;
  }

  async removeProducers(project: string, name: string, inc: string): Promise<void> {
    const prefix = `${key(project, name)}\n${inc}\n`;
    for (const k of [...this.#producers.keys()]) if (k.startsWith(prefix)) this.#producers.delete(k);
  }
}
