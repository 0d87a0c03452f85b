import type { Collection, Filter } from "mongodb";
import type { ApiKeyRecord, KeyPage, KeyStore } from "../keys.js";
import type { MongoConnection } from "./client.js";

interface KeyDoc {
  _id: string;
  hash: string;
  project: string;
  name: string;
  created_at: Date;
  revoked_at?: Date;
  expires_at?: Date;
}

function toRecord(d: KeyDoc): ApiKeyRecord {
  const r: ApiKeyRecord = { id: d._id, hash: d.hash, project: d.project, name: d.name, createdAt: d.created_at };
  if (d.revoked_at) r.revokedAt = d.revoked_at;
  if (d.expires_at) r.expiresAt = d.expires_at;
  return r;
}

/**
 * Live at `now`: not revoked and not expired. Expiry is decided here, by the caller's clock, not
 * by a TTL index: the TTL monitor runs about once a minute (and later under load), and an expired
 * key's record stays for operators to see in ListApiKeys.
 */
function liveAt(now: Date): Filter<KeyDoc> {
  return { revoked_at: { $exists: false }, $or: [{ expires_at: { $exists: false } }, { expires_at: { $gt: now } }] };
}

/** API keys in `api_keys` (unique index on the hash; keys are few, so lists sort without an index). */
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
    const doc: KeyDoc = { _id: r.id, hash: r.hash, project: r.project, name: r.name, created_at: r.createdAt };
    if (r.expiresAt) doc.expires_at = r.expiresAt;
    await this.#m.write(() => this.#keys.insertOne(doc));
  }

  async findByHash(hash: string, now: Date): Promise<ApiKeyRecord | undefined> {
    const d = await this.#m.read(() => this.#keys.findOne({ hash, ...liveAt(now) }, this.#m.readOptions));
    return d ? toRecord(d) : undefined;
  }

  async liveHashes(hashes: readonly string[], now: Date): Promise<Set<string>> {
    if (hashes.length === 0) return new Set();
    const docs = await this.#m.read(() => this.#keys.find({ hash: { $in: [...hashes] }, ...liveAt(now) }, { ...this.#m.readOptions, projection: { _id: 0, hash: 1 } }).toArray());
    return new Set(docs.map((d) => d.hash));
  }

  async revoke(id: string, at: Date): Promise<boolean> {
    const r = await this.#m.write(() => this.#keys.updateOne({ _id: id, revoked_at: { $exists: false } }, { $set: { revoked_at: at } }));
    return r.modifiedCount === 1;
  }

  async list(page: KeyPage): Promise<ApiKeyRecord[]> {
    const q: Filter<KeyDoc> = page.project === undefined ? {} : { project: page.project };
    const { after } = page;
    if (after) q.$or = [{ created_at: { $gt: after.createdAt } }, { created_at: after.createdAt, _id: { $gt: after.id } }];
    const docs = await this.#m.read(() => this.#keys.find(q, this.#m.readOptions).sort({ created_at: 1, _id: 1 }).limit(page.limit).toArray());
    return docs.map(toRecord);
  }
}
