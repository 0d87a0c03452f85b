import type { Collection } from "mongodb";
import type { DurableMeta, DurableStore, ProducerState } from "../durable.js";
import type { MongoConnection } from "./client.js";
import { isDuplicateKey } from "./errors.js";

interface MetaDoc extends Omit<DurableMeta, "project" | "name"> {
  /** project + "/" + name (project URI-encoded, so the separator is unambiguous). */
  _id: string;
  project: string;
  name: string;
}

interface ProducerDoc {
  /** project/name + "\n" + inc + "\n" + producer id. */
  _id: string;
  /** project/name + "\n" + inc: what removeProducers() deletes by. */
  stream: string;
  epoch: number;
  last_seq: number;
}

const key = (project: string, name: string): string => `${encodeURIComponent(project)}/${name}`;

function fromDoc(d: MetaDoc): DurableMeta {
  const { _id, ...meta } = d;
  void _id;
  return meta;
}

/**
 * Durable Streams bookkeeping on MongoDB. Every change that must not race with another instance is
 * one conditional single-document write: creation is an insert under the name's unique `_id`,
 * Stream-Seq is a `$lt`-guarded update, producer state a compare-and-set on (epoch, last_seq), and
 * every write names the incarnation (`inc`) so nothing touches a stream re-created meanwhile.
 */
export class MongoDurableStore implements DurableStore {
  readonly #m: MongoConnection;
  readonly #streams: Collection<MetaDoc>;
  readonly #producers: Collection<ProducerDoc>;

  constructor(m: MongoConnection) {
    this.#m = m;
    this.#streams = m.collection("durable_streams");
    this.#producers = m.collection("durable_producers");
  }

  async init(): Promise<void> {
    await this.#producers.createIndex({ stream: 1 }, { name: "stream" });
  }

  async get(project: string, name: string): Promise<DurableMeta | undefined> {
    const d = await this.#m.read(() => this.#streams.findOne({ _id: key(project, name) }, this.#m.readOptions));
    return d ? fromDoc(d) : undefined;
  }

  async create(meta: DurableMeta): Promise<{ created: boolean; meta: DurableMeta }> {
    try {
      await this.#m.write(() => this.#streams.insertOne({ _id: key(meta.project, meta.name), ...meta }));
      return { created: true, meta };
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
      const existing = await this.get(meta.project, meta.name);
      if (!existing) return this.create(meta); // removed in between: try again
      return { created: false, meta: existing };
    }
  }

  async remove(project: string, name: string, inc: string): Promise<boolean> {
    const r = await this.#m.write(() => this.#streams.deleteOne({ _id: key(project, name), inc }));
    return r.deletedCount === 1;
  }

  async update(project: string, name: string, inc: string, set: Partial<DurableMeta>): Promise<DurableMeta | undefined> {
    const d = await this.#m.write(() => this.#streams.findOneAndUpdate({ _id: key(project, name), inc }, { $set: set }, { returnDocument: "after" }));
    return d ? fromDoc(d) : undefined;
  }

  async addRef(project: string, name: string, inc: string, delta: number): Promise<DurableMeta | undefined> {
    const d = await this.#m.write(() => this.#streams.findOneAndUpdate({ _id: key(project, name), inc }, { $inc: { refCount: delta } }, { returnDocument: "after" }));
    return d ? fromDoc(d) : undefined;
  }

  async claimStreamSeq(project: string, name: string, inc: string, seq: string): Promise<boolean> {
    // MongoDB compares strings by their UTF-8 bytes (no collation here): the protocol's byte-wise order.
    const r = await this.#m.write(() =>
      this.#streams.updateOne({ _id: key(project, name), inc, $or: [{ streamSeq: { $exists: false } }, { streamSeq: { $lt: seq } }] }, { $set: { streamSeq: seq } }),
    );
    return r.modifiedCount === 1;
  }

  #pkey(project: string, name: string, inc: string, producerId: string): string {
    return `${key(project, name)}\n${inc}\n${producerId}`;
  }

  async getProducer(project: string, name: string, inc: string, producerId: string): Promise<ProducerState | undefined> {
    const d = await this.#m.read(() => this.#producers.findOne({ _id: this.#pkey(project, name, inc, producerId) }, this.#m.readOptions));
    return d ? { epoch: d.epoch, lastSeq: d.last_seq } : undefined;
  }

  async casProducer(project: string, name: string, inc: string, producerId: string, expected: ProducerState | undefined, next: ProducerState): Promise<boolean> {
    const _id = this.#pkey(project, name, inc, producerId);
    if (expected === undefined) {
      try {
        await this.#m.write(() => this.#producers.insertOne({ _id, stream: `${key(project, name)}\n${inc}`, epoch: next.epoch, last_seq: next.lastSeq }));
        return true;
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
    }
    const r = await this.#m.write(() => this.#producers.updateOne({ _id, epoch: expected.epoch, last_seq: expected.lastSeq }, { $set: { epoch: next.epoch, last_seq: next.lastSeq } }));
    return r.modifiedCount === 1;
  }

  async removeProducers(project: string, name: string, inc: string): Promise<void> {
    await this.#m.write(() => this.#producers.deleteMany({ stream: `${key(project, name)}\n${inc}` }));
  }
}
