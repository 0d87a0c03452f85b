import { createHash, randomBytes, randomUUID } from "node:crypto";

/** An API key as stored: never the key itself, only its SHA-256. */
export interface ApiKeyRecord {
  id: string;
  hash: string;
  project: string;
  name: string;
  createdAt: Date;
  revokedAt?: Date;
  /** From this instant on the key is refused, as a revoked one is; absent: until revoked. */
  expiresAt?: Date;
}

/** A page of ListApiKeys: keys in (createdAt, id) order, after `after` when given. */
export interface KeyPage {
  /** Only this project's keys when given. */
  project?: string;
  after?: { createdAt: Date; id: string };
  limit: number;
}

/**
 * API keys. Adapters: memory/keys.ts (embedded default) and mongo/keys.ts (`api_keys`). A key is
 * live at `now` when it is neither revoked nor expired (expiresAt <= now): both lookups below
 * take the instant from the caller, so an expired key is refused on the clock the service uses,
 * never on a database's background expiry.
 */
export interface KeyStore {
  init(): Promise<void>;
  insert(record: ApiKeyRecord): Promise<void>;
  /** The key with this hash when it is live at `now`. */
  findByHash(hash: string, now: Date): Promise<ApiKeyRecord | undefined>;
  /**
   * Which of these hashes belong to keys live at `now`: one query for all of them (the periodic
   * check of the keys that open streams use, src/server/revocation.ts).
   */
  liveHashes(hashes: readonly string[], now: Date): Promise<Set<string>>;
  revoke(id: string, at: Date): Promise<boolean>;
  /** A page of keys, revoked and expired ones included (operators see them). */
  list(page: KeyPage): Promise<ApiKeyRecord[]>;
}

/** Whether the key works at `now`. */
export function isLive(k: ApiKeyRecord, now: Date): boolean {
  return !k.revokedAt && (k.expiresAt === undefined || k.expiresAt.getTime() > now.getTime());
}

/** KeyPage's order: by creation time, then id. */
export function keyOrder(a: { createdAt: Date; id: string }, b: { createdAt: Date; id: string }): number {
  return a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** Makes a new key for a project: returns the record to store and the key to show once. */
export function newApiKey(project: string, name: string, now: Date, expiresAt?: Date): { key: string; record: ApiKeyRecord } {
  const key = `ae_${randomBytes(32).toString("base64url")}`;
  return { key, record: { id: randomUUID(), hash: hashKey(key), project, name, createdAt: now, ...(expiresAt ? { expiresAt } : {}) } };
}
