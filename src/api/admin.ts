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
import { checkRequired, rfc3339 } from "./common.js";

/** API-key administration (admin.v1.AdminService), for operators holding ADMIN_TOKEN. */
export function adminApi(keys: KeyStore, adminToken: string | undefined, now: () => Date) {
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
      const { key, record } = newApiKey(req.project, req.name, now());
      await keys.insert(record);
      return create(CreateApiKeyResponseSchema, { id: record.id, key, project: record.project });
    },
    async revokeApiKey(req: RevokeApiKeyRequest): Promise<RevokeApiKeyResponse> {
      checkRequired(RevokeApiKeyRequestSchema, req, []);
      return create(RevokeApiKeyResponseSchema, { revoked: await keys.revoke(req.id, now()) });
    },
    async listApiKeys(req: ListApiKeysRequest): Promise<ListApiKeysResponse> {
      const list = await keys.list(req.project || undefined);
      return create(ListApiKeysResponseSchema, {
        keys: list.map((k) =>
          create(ApiKeyInfoSchema, { id: k.id, project: k.project, name: k.name, createdAt: rfc3339(k.createdAt), ...(k.revokedAt ? { revokedAt: rfc3339(k.revokedAt) } : {}) }),
        ),
      });
    },
  };
}

export type AdminApi = ReturnType<typeof adminApi>;
