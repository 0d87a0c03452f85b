/**
 * Each RPC's policy, by service: the event services need a key, the admin service its ADMIN_TOKEN,
 * health and reflection nothing. Server streams are live readers (subscription slots; health
 * Watch and reflection the unauthenticated streams' cap); client and bidi streams are producers whose body is the stream. An RPC of a
 * service not listed here is a start-up error.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { AdminService } from "../../../gen/admin/v1/admin_pb.js";
import { Health } from "../../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { AuthRule, Cap, RoutePolicy } from "../policy.js";
import { SERVICES } from "../rpc.js";

const AUTH: ReadonlyMap<string, AuthRule> = new Map<string, AuthRule>([
  ...SERVICES.map((s): [string, AuthRule] => [s.typeName, "key"]),
  [AdminService.typeName, "admin"],
  [Health.typeName, "none"],
  [ServerReflection.typeName, "none"],
  [ServerReflectionAlpha.typeName, "none"],
]);

/** The policy of one RPC, or undefined for a service this table does not know (a start-up error). */
export function rpcPolicy(maxBodyBytes: number): (service: DescService, method: DescMethod) => RoutePolicy | undefined {
  return (service, method) => {
    const auth = AUTH.get(service.typeName);
    if (!auth) return undefined;
    const live = method.methodKind === "server_streaming";
    const producer = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
    const caps: Cap[] = ["inflight_bytes"];
    // Streams that need no key (health Watch, reflection) have their own cap (src/server/unauthenticated.ts).
    if (auth === "none" && (live || producer)) caps.push("unauthenticated_streams");
    else if (live) caps.push("subscriptions");
    return {
      auth,
      cors: "listed",
      body: producer ? "stream" : maxBodyBytes,
      stream: live ? "live" : producer ? "producer" : "unary",
      caps,
      metric: `/${service.typeName}/${method.name}`,
    };
  };
}
