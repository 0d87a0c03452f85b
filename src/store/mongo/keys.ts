import type { Collection } from "mongodb";
import type { ApiKeyRecord, KeyStore } from "../keys.js";
import type { MongoConnection } from "./client.js";

interface KeyDoc {
  _id: string;
  hash: string;
  project: string;
  name: string;
  created_at: Date;
  revoked_at?: Date;
}

function toRecord(d: KeyDoc): ApiKeyRecord {
  const r: ApiKeyRecord = { id: d._id, hash: d.hash, project: d.project, name: d.name, createdAt: d.created_at };
  if (d.revoked_at) r.revokedAt = d.revoked_at;
  return r;
}

/** API keys in `api_keys` (unique index on the hash). */
export class MongoKeyStore implements KeyStore {
  readonly #m: MongoConnection;
  readonly #keys: Collection<KeyDoc>;

  constructor(m: MongoConnection) {
    this.#m = m;
    this.#keys = m.collection("api_keys");
  }

  async init(): Promise<void> {
    await this.#keys.createIndex({ hash: 1 }, { unique: true, name: "hash" });
  }

  async insert(r: ApiKeyRecord): Promise<void> {
    await this.#m.write(() => this.#keys.insertOne({ _id: r.id, hash: r.hash, project: r.project, name: r.name, created_at: r.createdAt }));
  }

  async findByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const d = await this.#m.read(() => this.#keys.findOne({ hash, revoked_at: { $exists: false } }, this.#m.readOptions));
    return d ? toRecord(d) : undefined;
  }

  async liveHashes(hashes: readonly string[]): Promise<Set<string>> {
    if (hashes.length === 0) return new Set();
    const docs = await this.#m.read(() => this.#keys.find({ hash: { $in: [...hashes] }, revoked_at: { $exists: false } }, { ...this.#m.readOptions, projection: { _id: 0, hash: 1 } }).toArray());
    return new Set(docs.map((d) => d.hash));
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    const r = await this.#m.write(() => this.#keys.updateOne({ _id: id, revoked_at: { $exists: false } }, { $set: { revoked_at: at } }));
    return r.modifiedCount === 1;
  }

  async list(project?: string): Promise<ApiKeyRecord[]> {
    return (await this.#m.read(() => this.#keys.find(project === undefined ? {} : { project }, this.#m.readOptions).sort({ created_at: 1 }).toArray())).map(toRecord);
  }
}
