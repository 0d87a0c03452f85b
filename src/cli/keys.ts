/**
 * API keys from the command line:
 *   npm run keys -- create --project acme [--name ci]
 *   npm run keys -- revoke <id>
 *   npm run keys -- list [--project acme]
 * With MONGODB_URI set it writes to that database directly; otherwise it calls the admin RPC of a
 * running service (--url, default http://127.0.0.1:8080) with ADMIN_TOKEN.
 */
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { create } from "@bufbuild/protobuf";
import { AdminService, CreateApiKeyRequestSchema, ListApiKeysRequestSchema, RevokeApiKeyRequestSchema } from "../../gen/admin/v1/admin_pb.js";
import { adminApi, type AdminApi } from "../api/admin.js";
import { MongoStore } from "../store/mongo/index.js";
import { MongoKeyStore } from "../store/mongo/keys.js";

const USAGE = `usage:
  keys create --project <project> [--name <label>]   create a key (printed once)
  keys revoke <key-id>                               revoke a key
  keys list [--project <project>]                    list keys (ids, never the keys)
options:
  --url <url>   the service, when MONGODB_URI is not set (default http://127.0.0.1:8080; needs ADMIN_TOKEN)`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { project: { type: "string" }, name: { type: "string" }, url: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  const [command, arg] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  let api: Pick<AdminApi, "createApiKey" | "revokeApiKey" | "listApiKeys">;
  let close = async (): Promise<void> => {};
  const uri = process.env["MONGODB_URI"];
  if (uri) {
    const store = new MongoStore({ uri, ...(process.env["MONGODB_DB"] ? { dbName: process.env["MONGODB_DB"] } : {}) });
    await store.init();
    const keys = new MongoKeyStore(store.db);
    await keys.init();
    api = adminApi(keys, undefined, () => new Date());
    close = () => store.close();
  } else {
    const token = process.env["ADMIN_TOKEN"];
    if (!token) {
      console.error("set MONGODB_URI (direct) or ADMIN_TOKEN (to use a running service's admin RPC)");
      return 2;
    }
    const client = createClient(AdminService, createConnectTransport({ baseUrl: values.url ?? "http://127.0.0.1:8080", httpVersion: "1.1" }));
    const headers = { authorization: `Bearer ${token}` };
    api = {
      createApiKey: (req) => client.createApiKey(req, { headers }),
      revokeApiKey: (req) => client.revokeApiKey(req, { headers }),
      listApiKeys: (req) => client.listApiKeys(req, { headers }),
    };
  }
  try {
    switch (command) {
      case "create": {
        if (!values.project) throw new Error("create needs --project");
        const r = await api.createApiKey(create(CreateApiKeyRequestSchema, { project: values.project, name: values.name ?? "" }));
        console.log(JSON.stringify({ id: r.id, project: r.project, key: r.key }));
        console.error("store the key now: it is not shown again");
        return 0;
      }
      case "revoke": {
        if (!arg) throw new Error("revoke needs a key id");
        const r = await api.revokeApiKey(create(RevokeApiKeyRequestSchema, { id: arg }));
        console.log(JSON.stringify({ id: arg, revoked: r.revoked }));
        return r.revoked ? 0 : 1;
      }
      case "list": {
        const r = await api.listApiKeys(create(ListApiKeysRequestSchema, { project: values.project ?? "" }));
        for (const k of r.keys) console.log(JSON.stringify({ id: k.id, project: k.project, name: k.name, created_at: k.createdAt, revoked_at: k.revokedAt }));
        return 0;
      }
      default:
        console.error(USAGE);
        return 2;
    }
  } finally {
    await close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
