/**
 * The Node adapter for the Connect router (gRPC, gRPC-Web, Connect), in place of connect-node's
 * connectNodeAdapter, for two things it does not do:
 *
 * - A request message that is not valid protobuf is the caller's error: `invalid_argument`.
 *   connect-node 2.1 answers it `internal` ("parse binary: …", from its binary serialization,
 *   before any interceptor sees the call), so the answer is corrected here, in each protocol's
 *   error encoding (Connect unary JSON body and end-stream message, gRPC headers or trailers,
 *   gRPC-Web trailer frame). On a server, parsing only ever happens to requests, so "parse binary"
 *   always means a bad request.
 * - A failure while writing a response goes to the error boundary (logged once, counted), not to
 *   console.error.
 *
 * Each RPC is a route of the pipeline's table (src/server/pipeline.ts): the pipeline applies its
 * policy (Host, Origin, key, body limit) before the call (a refusal is answered there) and hands
 * the caller's project to the call as a context value.
 */
import type { DescMethod, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextValues, type ConnectRouter, type ConnectRouterOptions } from "@connectrpc/connect";
import { encodeEnvelope, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { endStreamFlag } from "@connectrpc/connect/protocol-connect";
import { trailerFlag } from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { REQUEST_PARSE_ERROR, type ErrorSink } from "./boundary.js";
import { PROJECT } from "./auth.js";
import type { PipelineRoute } from "./pipeline.js";
import type { RoutePolicy } from "./policy.js";

export interface RpcAdapterOptions extends Pick<ConnectRouterOptions, "readMaxBytes" | "interceptors"> {
  routes(router: ConnectRouter): void;
  /** Each RPC's policy (src/server/routes/rpc.ts); undefined is a start-up error. */
  policyOf(service: DescService, method: DescMethod): RoutePolicy | undefined;
  errors: ErrorSink;
}

const INVALID = String(Code.InvalidArgument);
const INTERNAL = String(Code.Internal);
const utf8 = new TextDecoder();
const encoder = new TextEncoder();

function isParseMessage(encoded: string | null): boolean {
  if (!encoded) return false;
  try {
    return REQUEST_PARSE_ERROR.test(decodeURIComponent(encoded));
  } catch {
    return false;
  }
}

/** gRPC status fields (headers of a trailers-only response, or trailers) of an undecodable request → invalid_argument. */
function fixGrpcFields(h: Headers | undefined): void {
  if (h && h.get("grpc-status") === INTERNAL && isParseMessage(h.get("grpc-message"))) h.set("grpc-status", INVALID);
}

/** Envelope flags of the frames that can carry an error: Connect end-stream, gRPC-Web trailers. */
const END_FRAMES = endStreamFlag | trailerFlag;

/** One enveloped message (flags, length, payload) rewritten by `fix` when it is an end/trailer frame. */
function fixEnvelopes(chunk: Uint8Array, fix: (flags: number, payload: string) => string | undefined): Uint8Array {
  if (chunk.length < 5) return chunk;
  const flags = chunk[0]!;
  // Every message of every stream passes here: only the last frame is decoded (decoding each
  // message's bytes as text was an eighth of the server's CPU delivering to 100 subscribers).
  if ((flags & END_FRAMES) === 0) return chunk;
  const len = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength).getUint32(1);
  if (len !== chunk.length - 5) return chunk;
  const replaced = fix(flags, utf8.decode(chunk.subarray(5)));
  if (replaced === undefined) return chunk;
  return encodeEnvelope(flags, encoder.encode(replaced));
}

/** Connect end-stream message and gRPC-Web trailers of an undecodable request. */
function fixFrame(flags: number, payload: string): string | undefined {
  if (flags & endStreamFlag) {
    try {
      const end = JSON.parse(payload) as { error?: { code?: string; message?: string } };
      if (end.error?.code === "internal" && REQUEST_PARSE_ERROR.test(end.error.message ?? "")) {
        end.error.code = "invalid_argument";
        return JSON.stringify(end);
      }
    } catch {
      return undefined;
    }
  }
  if (flags & trailerFlag && /grpc-status: ?13\r\n/.test(payload)) {
    const msg = /grpc-message: ?([^\r\n]*)/.exec(payload)?.[1] ?? null;
    if (isParseMessage(msg)) return payload.replace(/grpc-status: ?13\r\n/, `grpc-status: ${INVALID}\r\n`);
  }
  return undefined;
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function* correctedFrames(u: UniversalServerResponse, body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const c of body) yield fixEnvelopes(c, fixFrame);
  // gRPC trailers are complete once the body is.
  fixGrpcFields(u.trailer);
}

/** The response with a request-parse `internal` turned into `invalid_argument`, whatever the protocol. */
export async function parseErrorsAsInvalid(u: UniversalServerResponse): Promise<UniversalServerResponse> {
  fixGrpcFields(u.header);
  if (!u.body) return u;
  const type = u.header?.get("content-type") ?? "";
  if (u.status === 500 && type.startsWith("application/json") && !u.header?.get("content-encoding")) {
    // A Connect unary error: one small JSON body, read before the status is written.
    const parts: Uint8Array[] = [];
    for await (const c of u.body) parts.push(c);
    const bytes = Buffer.concat(parts);
    try {
      const err = JSON.parse(bytes.toString("utf8")) as { code?: string; message?: string };
      if (err.code === "internal" && REQUEST_PARSE_ERROR.test(err.message ?? "")) {
        err.code = "invalid_argument";
        const fixed = encoder.encode(JSON.stringify(err));
        u.header?.set("content-length", String(fixed.length));
        return { ...u, status: 400, body: once(fixed) };
      }
    } catch {
      // not an error body: pass it on as it was
    }
    return { ...u, body: once(bytes) };
  }
  return { ...u, body: correctedFrames(u, u.body) };
}

/** One pipeline route per RPC (POST /package.Service/Method), each with its declared policy. */
export function rpcRoutes(o: RpcAdapterOptions): PipelineRoute[] {
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...(o.readMaxBytes !== undefined ? { readMaxBytes: o.readMaxBytes } : {}),
    ...(o.interceptors ? { interceptors: o.interceptors } : {}),
  });
  o.routes(router);
  return router.handlers.map((handler) => {
    const policy = o.policyOf(handler.service, handler.method);
    if (!policy) throw new Error(`RPC ${handler.requestPath} has no policy (src/server/routes/rpc.ts)`);
    return {
      surface: "rpc",
      method: "POST",
      path: handler.requestPath,
      policy,
      errors: "rpc",
      async serve(call) {
        const { req, res } = call;
        const values = createContextValues().set(PROJECT, call.project);
        const uReq = universalRequestFromNodeRequest(req, res, undefined, values);
        try {
          await universalResponseToNodeResponse(await parseErrorsAsInvalid(await handler(uReq)), res);
        } catch (reason) {
          if (ConnectError.from(reason).code === Code.Aborted || res.destroyed || req.destroyed) return;
          o.errors.caught("rpc", reason, { rpc: `${handler.service.typeName}/${handler.method.name}`, during: "response" });
          if (!res.headersSent) {
            res.writeHead(500);
            res.end();
          } else res.destroy();
        }
      },
    } satisfies PipelineRoute;
  });
}
