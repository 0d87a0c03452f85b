import { timingSafeEqual } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ApiKeyInfoSchema,
  CreateApiKeyRequestSchema,
  CreateApiKeyResponseSchema,
  ListApiKeysResponseSchema,
  RevokeApiKeyRequestSchema,
  RevokeApiKeyResponseSchema,
  type CreateApiKeyRequest,
  type CreateApiKeyResponse,
  type ListApiKeysRequest,
  type ListApiKeysResponse,
  type RevokeApiKeyRequest,
  type RevokeApiKeyResponse,
} from "../../gen/admin/v1/admin_pb.js";
import { newApiKey, type KeyStore } from "../store/keys.js";
import { checkRequired, decodePageToken, encodePageToken, headWithin, invalidField, pageLimit, rfc3339 } from "./common.js";

/** The longest TTL a key may be given: about 100 years (Date arithmetic stays exact far beyond). */
const MAX_TTL_SECONDS = 100 * 366 * 24 * 3600;
/** Bytes of one ListApiKeys entry besides its strings (field tags, timestamps). */
const KEY_ENTRY_OVERHEAD = 120;

/** When a new key expires: from expires_at (RFC 3339, in the future) or ttl_seconds (> 0); undefined: never. */
function expiryOf(req: CreateApiKeyRequest, now: Date): Date | undefined {
  if (req.expiresAt !== undefined && req.ttlSeconds !== undefined) throw invalidField(["ttl_seconds"], "give expires_at or ttl_seconds, not both", "value_error");
  if (req.ttlSeconds !== undefined) {
    const ttl = Number(req.ttlSeconds);
    if (ttl < 1 || ttl > MAX_TTL_SECONDS) throw invalidField(["ttl_seconds"], `ttl_seconds must be between 1 and ${MAX_TTL_SECONDS}`, "value_error", String(req.ttlSeconds));
    return new Date(now.getTime() + ttl * 1000);
  }
  if (req.expiresAt === undefined) return undefined;
  const at = new Date(req.expiresAt);
  // RFC 3339 with a zone: a bare date or local time would depend on the server's zone.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(req.expiresAt) || Number.isNaN(at.getTime())) {
    throw invalidField(["expires_at"], 'expires_at must be an RFC 3339 time with a zone, e.g. "2030-01-31T00:00:00Z"', "value_error", req.expiresAt);
  }
  if (at.getTime() <= now.getTime()) throw invalidField(["expires_at"], `expires_at must be in the future (it is now ${rfc3339(now)})`, "value_error", req.expiresAt);
  return at;
}

function decodeKeysToken(token: string): { createdAt: Date; id: string } {
  return decodePageToken(token, (v) => (v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === "string" ? { createdAt: new Date(v[0] as number), id: v[1] } : undefined));
}

/** API-key administration (admin.v1.AdminService), for operators holding ADMIN_TOKEN. */
export function adminApi(keys: KeyStore, adminToken: string | undefined, now: () => Date, opts: { responseBytes?: number } = {}) {
  const responseBytes = opts.responseBytes ?? 1024 * 1024;
  function authorize(authorization: string | null): void {
    if (!adminToken) throw new ConnectError("admin RPCs are disabled: set ADMIN_TOKEN on the server", Code.PermissionDenied);
    const given = Buffer.from(/^Bearer\s+(.+)$/i.exec(authorization ?? "")?.[1] ?? "");
    const want = Buffer.from(adminToken);
    if (given.length !== want.length || !timingSafeEqual(given, want)) throw new ConnectError("admin token required", Code.Unauthenticated);
  }
  return {
    authorize,
    async createApiKey(req: CreateApiKeyRequest): Promise<CreateApiKeyResponse> {
      checkRequired(CreateApiKeyRequestSchema, req, []);
      const at = now();
      const { key, record } = newApiKey(req.project, req.name, at, expiryOf(req, at));
      await keys.insert(record);
      return create(CreateApiKeyResponseSchema, { id: record.id, key, project: record.project, ...(record.expiresAt ? { expiresAt: rfc3339(record.expiresAt) } : {}) });
    },
    async revokeApiKey(req: RevokeApiKeyRequest): Promise<RevokeApiKeyResponse> {
      checkRequired(RevokeApiKeyRequestSchema, req, []);
      return create(RevokeApiKeyResponseSchema, { revoked: await keys.revoke(req.id, now()) });
    },
    async listApiKeys(req: ListApiKeysRequest): Promise<ListApiKeysResponse> {
      const limit = pageLimit(req.limit, ["limit"]);
      const after = req.pageToken ? decodeKeysToken(req.pageToken) : undefined;
      // One more than asked tells whether another page follows; a page also ends at responseBytes.
      const found = await keys.list({ ...(req.project ? { project: req.project } : {}), ...(after ? { after } : {}), limit: limit + 1 });
      const page = headWithin(found.slice(0, limit), (k) => Buffer.byteLength(k.id + k.project + k.name) + KEY_ENTRY_OVERHEAD, responseBytes);
      const last = page[page.length - 1];
      return create(ListApiKeysResponseSchema, {
        keys: page.map((k) =>
          create(ApiKeyInfoSchema, {
            id: k.id,
            project: k.project,
            name: k.name,
            createdAt: rfc3339(k.createdAt),
            ...(k.revokedAt ? { revokedAt: rfc3339(k.revokedAt) } : {}),
            ...(k.expiresAt ? { expiresAt: rfc3339(k.expiresAt) } : {}),
          }),
        ),
        nextPageToken: found.length > page.length && last ? encodePageToken([last.createdAt.getTime(), last.id]) : "",
      });
    },
  };
}

export type AdminApi = ReturnType<typeof adminApi>;
