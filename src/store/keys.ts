import { createHash, randomBytes, randomUUID } from "node:crypto";

/** An API key as stored: never the key itself, only its SHA-256. */
export interface ApiKeyRecord {
  id: string;
  hash: string;
  project: string;
  name: string;
  createdAt: Date;
  revokedAt?: Date;
}

/** API keys. Adapters: memory/keys.ts (embedded default) and mongo/keys.ts (`api_keys`). */
export interface KeyStore {
  init(): Promise<void>;
  insert(record: ApiKeyRecord): Promise<void>;
  /** The live (not revoked) key with this hash. */
  findByHash(hash: string): Promise<ApiKeyRecord | undefined>;
  /**
   * Which of these hashes belong to live keys: one query for all of them (the periodic check of
   * the keys that open streams use, src/server/revocation.ts).
   */
  liveHashes(hashes: readonly string[]): Promise<Set<string>>;
  revoke(id: string, at: Date): Promise<boolean>;
  list(project?: string): Promise<ApiKeyRecord[]>;
}

export function hashKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** Makes a new key for a project: returns the record to store and the key to show once. */
export function newApiKey(project: string, name: string, now: Date): { key: string; record: ApiKeyRecord } {
  const key = `ae_${randomBytes(32).toString("base64url")}`;
  return { key, record: { id: randomUUID(), hash: hashKey(key), project, name, createdAt: now } };
}
