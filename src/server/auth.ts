import { Code, ConnectError, createContextKey } from "@connectrpc/connect";
import { HEADER, KEY_COOKIES } from "./http/wire.js";
import { hashKey, type KeyStore } from "../store/keys.js";
import { NO_HOLD, StreamKeys, type KeyHold } from "./revocation.js";

export type AuthMode = "required" | "off";

/** The caller's project, as the pipeline's policy established it (undefined: none named, auth off). */
export const PROJECT = createContextKey<string | undefined>(undefined, { description: "the caller's project" });

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The credential a request presents, in any of the forms the four platforms' clients send. */
export function credentialOf(header: (name: string) => string | undefined): string | undefined {
  const auth = header(HEADER.authorization)?.trim();
  if (auth) {
    // `Bearer <key>` (Polos, Kubiya's CLI and event bus, TerminalUse, gRPC), `UserKey <key>` (Kubiya's
    // Python SDK and its workers' control-plane client), or the raw key (Sailhouse's apiKey scheme).
    const m = /^(?:Bearer|UserKey)\s+(.+)$/i.exec(auth);
    return m ? m[1]!.trim() : auth;
  }
  // TerminalUse's agent key (its SDKs' `agent_api_key`, TERMINALUSE_AGENT_API_KEY); its user
  // token comes as Bearer above, which wins when a client sends both.
  const agentKey = header(HEADER.agentKey)?.trim();
  if (agentKey) return agentKey;
  const cookie = header(HEADER.cookie);
  if (cookie) {
    // Polos: `polos_auth` (its OpenAPI) or `auth_token` (the name Polos's own server reads).
    for (const part of cookie.split(";")) {
      const eq = part.indexOf("=");
      if (eq < 0) continue;
      const name = part.slice(0, eq).trim();
      if (KEY_COOKIES.includes(name)) {
        try {
          return decodeURIComponent(part.slice(eq + 1).trim());
        } catch {
          return part.slice(eq + 1).trim();
        }
      }
    }
  }
  return undefined;
}

/**
 * API-key authentication. With mode "required", every call needs a live key; the key's project is
 * the call's project, and a project the caller names (X-Project-ID, Project-ID, ?project_id=) must
 * be that one. With mode "off" (the embedded default on loopback only), the named project is used.
 * Lookups are cached for `cacheMs` (never past a key's expiry), so a revoked key stops working
 * within that time and an expired one at its expiry; streams opened with a key are held
 * (holdStream) and end within the same period once it is revoked or expired.
 */
export class Auth {
  readonly #cache = new Map<string, { project: string | undefined; until: number; expiresAt?: number }>();
  /** Keys of open streams, checked once per period for all of them (src/server/revocation.ts). */
  readonly streamKeys: StreamKeys;

  constructor(
    readonly mode: AuthMode,
    private readonly keys: KeyStore,
    private readonly cacheMs = 5000,
  ) {
    // A check every AUTH_CACHE_MS (at least every 250 ms with no cache): an open stream ends
    // within AUTH_CACHE_MS (+ one query) of its key's revocation, as a new request would.
    this.streamKeys = new StreamKeys(keys, Math.max(250, cacheMs), (hashes, live) => {
      // The check refreshes the cache, so new requests and open streams agree on each key.
      const until = Date.now() + this.cacheMs;
      for (const h of hashes) {
        const hit = this.#cache.get(h);
        if (!live.has(h)) this.#cache.set(h, { project: undefined, until });
        else if (hit?.project !== undefined) hit.until = Math.min(until, hit.expiresAt ?? until);
      }
    });
  }

  /**
   * Holds a stream opened with this credential (already authenticated) for as long as it is
   * open: `revoked` resolves once the key is revoked. Nothing to hold with auth off or no key.
   */
  holdStream(credential: string | undefined): KeyHold {
    if (this.mode === "off" || !credential) return NO_HOLD;
    return this.streamKeys.hold(hashKey(credential));
  }

  close(): void {
    this.streamKeys.close();
  }

  async project(credential: string | undefined, claimed: string | undefined): Promise<string | undefined> {
    if (this.mode === "off") return claimed;
    if (!credential) throw new ConnectError("missing API key: send Authorization: Bearer <key>", Code.Unauthenticated);
    const hash = hashKey(credential);
    let hit = this.#cache.get(hash);
    if (!hit || hit.until < Date.now()) {
      const record = await this.keys.findByHash(hash, new Date());
      // An expiring key is looked up again at its expiry, so it is refused from that instant on.
      const expiresAt = record?.expiresAt?.getTime();
      hit = { project: record?.project, until: Math.min(Date.now() + this.cacheMs, expiresAt ?? Infinity), ...(expiresAt !== undefined ? { expiresAt } : {}) };
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(hash, hit);
    }
    if (!hit.project) throw new ConnectError("invalid, revoked or expired API key", Code.Unauthenticated);
    if (claimed !== undefined && claimed !== hit.project) throw new ConnectError(`this API key does not belong to project ${JSON.stringify(claimed)}`, Code.PermissionDenied);
    return hit.project;
  }
}
