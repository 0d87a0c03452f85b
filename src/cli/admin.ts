import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AdminService } from "../../gen/admin/v1/admin_pb.js";
import { adminApi, type AdminApi } from "../api/admin.js";
import { MongoStore } from "../store/mongo/index.js";
import { MongoKeyStore } from "../store/mongo/keys.js";
import { usage } from "./exit.js";

export type KeyAdmin = Pick<AdminApi, "createApiKey" | "revokeApiKey" | "listApiKeys">;

/**
 * API-key administration for the command line: straight to the database when MONGODB_URI is set
 * (no service needed, e.g. to create the first key), else the running service's admin RPC at
 * `url` with ADMIN_TOKEN.
 */
export async function openKeyAdmin(url: string): Promise<{ api: KeyAdmin; close(): Promise<void> }> {
  const uri = process.env["MONGODB_URI"];
  if (uri) {
    const store = new MongoStore({ uri, ...(process.env["MONGODB_DB"] ? { dbName: process.env["MONGODB_DB"] } : {}) });
    await store.init();
    const keys = new MongoKeyStore(store.connection);
    await keys.init();
    return { api: adminApi(keys, undefined, () => new Date()), close: () => store.close() };
  }
  const token = process.env["ADMIN_TOKEN"];
  if (!token) throw usage("set MONGODB_URI (direct) or ADMIN_TOKEN (to use a running service's admin RPC)");
  const client = createClient(AdminService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
  const headers = { authorization: `Bearer ${token}` };
  return {
    api: {
      createApiKey: (req) => client.createApiKey(req, { headers }),
      revokeApiKey: (req) => client.revokeApiKey(req, { headers }),
      listApiKeys: (req) => client.listApiKeys(req, { headers }),
    },
    close: async () => {},
  };
}
