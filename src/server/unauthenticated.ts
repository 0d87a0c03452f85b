/**
 * Streams that need no key: grpc.health.v1 Watch and server reflection (v1, v1alpha). Anyone can
 * open them, so they are held to rules of their own and can never take what authenticated clients
 * need:
 * - a small cap of their own (MAX_UNAUTHENTICATED_STREAMS), enforced here before the RPC machinery
 *   runs, so a refusal costs a few header bytes (a storm of 1,500 Watches once held the event loop
 *   for seconds while each went through the Connect pipeline);
 * - documented deadlines: a Watch ends cleanly (OK) after HEALTH_WATCH_MAX_MS and its client opens
 *   it again; a reflection stream ends with `deadline_exceeded` after REQUEST_TIMEOUT_MS, the body
 *   deadline every other request meets (src/server/grpc.ts);
 * - a connection whose open streams are all of these gives its place to a new connection when the
 *   listener is full (src/server/listener.ts), so they never make a keyed client's connection wait.
 */
import { Code } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, codeToString, endStreamFlag } from "@connectrpc/connect/protocol-connect";
import type { DescService } from "@bufbuild/protobuf";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { Req, Res } from "./sse.js";

const paths = (s: DescService, kinds: string[]): string[] => s.methods.filter((m) => kinds.includes(m.methodKind)).map((m) => `/${s.typeName}/${m.name}`);

/** The unauthenticated streams: health Watch and reflection. */
export const UNAUTHENTICATED_STREAM_PATHS: ReadonlySet<string> = new Set([...paths(Health, ["server_streaming"]), ...paths(ServerReflection, ["bidi_streaming"]), ...paths(ServerReflectionAlpha, ["bidi_streaming"])]);

/** Every path that needs no key (the streams above and health Check): a connection using only these may be evicted. */
export const UNAUTHENTICATED_PATHS: ReadonlySet<string> = new Set([...UNAUTHENTICATED_STREAM_PATHS, ...paths(Health, ["unary"])]);

/** The path of a request target, without its query. */
export function pathOf(target: string | undefined): string {
  return (target ?? "").split("?", 2)[0]!;
}

/**
 * Answers an RPC with an error before it reaches the router, in its protocol: gRPC and gRPC-Web
 * as a trailers-only response, the Connect streaming protocol as an end-stream message, Connect
 * unary as its JSON error body.
 */
export function refuseRpc(req: Req, res: Res, code: Code, message: string): void {
  const type = String(req.headers["content-type"] ?? "").split(";")[0]!.trim();
  if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
  if (type.startsWith("application/grpc")) {
    res.writeHead(200, { "content-type": type, "grpc-status": String(code), "grpc-message": encodeURIComponent(message) });
    res.end();
    return;
  }
  const error = { code: codeToString(code), message };
  if (type.startsWith("application/connect+")) {
    const envelope = encodeEnvelope(endStreamFlag, Buffer.from(JSON.stringify({ error })));
    res.writeHead(200, { "content-type": type, "content-length": String(envelope.length) });
    res.end(envelope);
    return;
  }
  const body = JSON.stringify(error);
  res.writeHead(codeToHttpStatus(code), { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) });
  res.end(body);
}

/** The cap on unauthenticated streams open at once, for the whole instance. */
export class UnauthenticatedStreams {
  #open = 0;

  constructor(
    readonly max: number,
    private readonly onRefused: () => void = () => {},
  ) {}

  get open(): number {
    return this.#open;
  }

  /**
   * Lets the request through (true), holding a place until its response closes, or answers it
   * `resource_exhausted` (false). Requests on other paths pass untouched.
   */
  admit(req: Req, res: Res): boolean {
    if (!UNAUTHENTICATED_STREAM_PATHS.has(pathOf(req.url))) return true;
    if (this.#open >= this.max) {
      this.onRefused();
      refuseRpc(req, res, Code.ResourceExhausted, `this instance has ${this.max} unauthenticated streams (health watches, reflection) open, its limit (MAX_UNAUTHENTICATED_STREAMS); retry later`);
      return false;
    }
    this.#open++;
    res.once("close", () => this.#open--);
    return true;
  }
}
