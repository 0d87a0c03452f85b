import { create, toBinary, type DescFile, type DescMessage, type DescEnum, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status, HealthCheckResponseSchema } from "../../gen/grpc/health/v1/health_pb.js";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * A store check that is asked at most once per `ttlMs` however many callers ask (health checks,
 * watches and /readyz need no credentials, so they must not cost the store per caller). Concurrent
 * callers share one check in flight.
 */
export function cachedCheck(check: () => Promise<boolean>, ttlMs: number): () => Promise<boolean> {
  let value: boolean | undefined;
  let at = 0;
  let pending: Promise<boolean> | undefined;
  return () => {
    if (value !== undefined && performance.now() - at < ttlMs) return Promise.resolve(value);
    pending ??= check()
      .catch(() => false)
      .then((v) => {
        value = v;
        at = performance.now();
        pending = undefined;
        return v;
      });
    return pending;
  };
}

export interface HealthOptions {
  /** How often a watch looks at the (cached) status. */
  watchIntervalMs: number;
  /** A watch ends cleanly (OK) after this long; its client opens it again (HEALTH_WATCH_MAX_MS). */
  watchMaxMs: number;
}

/**
 * grpc.health.v1: SERVING while `healthy()` resolves true. Pass a cachedCheck: Check and Watch
 * need no credentials. Watches re-check every `watchIntervalMs` and end after `watchMaxMs`; how
 * many may be open is capped before they get here (src/server/unauthenticated.ts).
 */
export function registerHealth(router: ConnectRouter, services: readonly DescService[], healthy: () => Promise<boolean>, opts: HealthOptions = { watchIntervalMs: 5000, watchMaxMs: 300_000 }): void {
  const known = new Set(["", ...services.map((s) => s.typeName)]);
  const status = async (service: string): Promise<Status> => {
    if (!known.has(service)) return Status.SERVICE_UNKNOWN;
    return (await healthy()) ? Status.SERVING : Status.NOT_SERVING;
  };
  router.service(Health, {
    async check(req) {
      const s = await status(req.service);
      if (s === Status.SERVICE_UNKNOWN) {
        throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      }
      return create(HealthCheckResponseSchema, { status: s });
    },
    async *watch(req, ctx) {
      const end = performance.now() + opts.watchMaxMs;
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const s = await status(req.service);
        if (s !== last) yield create(HealthCheckResponseSchema, { status: s });
        last = s;
        const left = end - performance.now();
        // Its maximum age: the watch ends with OK, and clients (grpc-go, grpc-java) re-open it.
        if (left <= 0) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, opts.watchIntervalMs));
          ctx.signal.addEventListener("abort", () => (clearTimeout(t), resolve()), { once: true });
        });
      }
    },
  });
}

/**
 * gRPC server reflection (v1 and v1alpha, which grpcurl and buf curl use), answered from the
 * descriptors embedded in the generated code. A reflection stream needs no key, so it has the
 * body deadline every request has: it ends with `deadline_exceeded` `maxMs` after it opened
 * (REQUEST_TIMEOUT_MS; grpcurl and buf curl open a new one when they need it).
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[], maxMs = 30_000): void {
  const files = new Map<string, DescFile>();
  const bySymbol = new Map<string, DescFile>();
  const addFile = (f: DescFile): void => {
    if (files.has(f.name + ".proto")) return;
    files.set(f.name + ".proto", f);
    f.dependencies.forEach(addFile);
    const addMessage = (m: DescMessage): void => {
      bySymbol.set(m.typeName, f);
      m.nestedMessages.forEach(addMessage);
      m.nestedEnums.forEach((e: DescEnum) => bySymbol.set(e.typeName, f));
    };
    f.messages.forEach(addMessage);
    f.enums.forEach((e) => bySymbol.set(e.typeName, f));
    for (const s of f.services) {
      bySymbol.set(s.typeName, f);
      for (const m of s.methods) bySymbol.set(`${s.typeName}.${m.name}`, f);
    }
  };
  const listed = [...services, v1.ServerReflection, v1alpha.ServerReflection];
  listed.forEach((s) => addFile(s.file));

  /** The file and everything it imports, dependencies first. */
  const withDeps = (f: DescFile): Uint8Array[] => {
    const seen = new Set<DescFile>();
    const out: Uint8Array[] = [];
    const visit = (x: DescFile): void => {
      if (seen.has(x)) return;
      seen.add(x);
      x.dependencies.forEach(visit);
      out.push(toBinary(FileDescriptorProtoSchema, x.proto));
    };
    visit(f);
    return out;
  };

  type Req = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
  const answer = (req: Req): Record<string, unknown> => {
    const r = req.messageRequest;
    const notFound = (what: string) => ({ case: "errorResponse", value: { errorCode: 5, errorMessage: `${what} not found` } });
    switch (r.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: listed.map((s) => ({ name: s.typeName })) } };
      case "fileByFilename": {
        const f = files.get(r.value);
        return f ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDeps(f) } } : notFound(`file ${r.value}`);
      }
      case "fileContainingSymbol": {
        const f = bySymbol.get(r.value.replace(/^\./, ""));
        return f ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDeps(f) } } : notFound(`symbol ${r.value}`);
      }
      case "fileContainingExtension":
        return notFound(`extension ${r.value.containingType}/${r.value.extensionNumber}`);
      case "allExtensionNumbersOfType":
        return { case: "allExtensionNumbersResponse", value: { baseTypeName: r.value, extensionNumber: [] } };
      default:
        return { case: "errorResponse", value: { errorCode: 3, errorMessage: "empty request" } };
    }
  };

  /** The requests of one stream, until the stream's deadline. */
  async function* untilDeadline<T>(reqs: AsyncIterable<T>): AsyncGenerator<T> {
    const it = reqs[Symbol.asyncIterator]();
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((resolve) => (timer = setTimeout(() => resolve("expired"), maxMs)));
    try {
      for (;;) {
        const next = await Promise.race([it.next(), expired]);
        if (next === "expired") throw new ConnectError(`reflection streams end after ${maxMs} ms (REQUEST_TIMEOUT_MS); open a new one`, Code.DeadlineExceeded);
        if (next.done) return;
        yield next.value;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(reqs) {
      for await (const req of untilDeadline(reqs)) {
        yield create(v1.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse: answer(req) as never });
      }
    },
  });
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(reqs) {
      for await (const req of untilDeadline(reqs)) {
        yield create(v1alpha.ServerReflectionResponseSchema, { validHost: req.host, originalRequest: req, messageResponse: answer(req) as never });
      }
    },
  });
}
