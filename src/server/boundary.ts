/**
 * Error boundaries: what a request, a stream write or a background task throws is caught where it
 * happens, logged once (with the request id when there is one) and counted in
 * `errors_caught_total{where}`; the process goes on. What still escapes to the process
 * (uncaughtException, unhandledRejection) is logged and counted the same way and the service keeps
 * serving: every entry point has its own boundary, so what reaches the process is a bug report,
 * not an outage.
 */
import { randomUUID } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { toConnectError } from "../api/errors.js";
import { HEADER } from "./http/wire.js";

/** Where an error was caught (the metric's label). */
export type Where = "request" | "rpc" | "stream" | "background" | "socket" | "process";

export interface ErrorSink {
  /** Logs `err` once and counts it. */
  caught(where: Where, err: unknown, fields?: Record<string, unknown>): void;
}

export function errorSink(log: Logger, count: (where: Where) => void): ErrorSink {
  return {
    caught(where, err, fields = {}) {
      count(where);
      // Never let logging itself throw out of a boundary (a hostile object's getters, say).
      try {
        log.error({ ...fields, where, err }, `error caught (${where})`);
      } catch {
        // nothing more we can do; the count above still records it
      }
    },
  };
}

/** The part of `process` the guard uses (a fake in tests). */
export interface ProcessLike {
  on(event: "uncaughtException" | "unhandledRejection", fn: (err: unknown) => void): unknown;
  off(event: "uncaughtException" | "unhandledRejection", fn: (err: unknown) => void): unknown;
}

/**
 * Installs process-level handlers for uncaught exceptions and unhandled rejections: log, count,
 * keep serving. Returns the function that removes them (the service's close() calls it).
 */
export function guardProcess(proc: ProcessLike, sink: ErrorSink): () => void {
  const onException = (err: unknown): void => sink.caught("process", err, { kind: "uncaughtException" });
  const onRejection = (err: unknown): void => sink.caught("process", err, { kind: "unhandledRejection" });
  proc.on("uncaughtException", onException);
  proc.on("unhandledRejection", onRejection);
  return () => {
    proc.off("uncaughtException", onException);
    proc.off("unhandledRejection", onRejection);
  };
}

/** decodeURIComponent that returns undefined instead of throwing on a malformed escape or invalid UTF-8. */
export function decodeParam(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** Quotes at most `max` characters of untrusted input in an error message. */
export function quote(s: string, max = 64): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

/** connect-node's message for a request that is not valid protobuf (servers parse only requests). */
export const REQUEST_PARSE_ERROR = /^parse binary: /;

/**
 * The RPC boundary (outermost interceptor): an error a handler or its response stream throws that
 * is not a deliberate Connect error is logged once with the call's request id, counted, and
 * answered `internal` without echoing its text. Deliberate errors (invalid_argument, ...) pass as
 * they are, and core errors (store unavailable, capacity, ...) map as in toConnectError.
 */
export function boundaryInterceptor(sink: ErrorSink): Interceptor {
  return (next) => async (req) => {
    const fields = (): Record<string, unknown> => ({ requestId: (req.header.get(HEADER.requestId) ?? randomUUID()).slice(0, 128), rpc: `${req.service.typeName}/${req.method.name}` });
    const settle = (err: unknown): ConnectError => {
      // An undecodable request message in a stream: the caller's error (see rpc-adapter.ts).
      if (err instanceof ConnectError && err.code === Code.Internal && REQUEST_PARSE_ERROR.test(err.rawMessage)) return new ConnectError(err.rawMessage, Code.InvalidArgument);
      if (err instanceof ConnectError && err.code !== Code.Unknown && err.code !== Code.Internal) return err;
      if (ConnectError.from(err).code === Code.Canceled) return ConnectError.from(err);
      // A core error raised outside a handler's own mapping (e.g. the key store unavailable while an
      // interceptor authenticates) keeps its meaning: `unavailable`, not `internal`.
      const core = toConnectError(err);
      if (core.code !== Code.Internal) return core;
      sink.caught("rpc", err, fields());
      return new ConnectError("internal error", Code.Internal);
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      throw settle(err);
    }
    if (!res.stream) return res;
    const inner = res.message;
    async function* guarded(): AsyncGenerator<unknown> {
      try {
        yield* inner;
      } catch (err) {
        throw settle(err);
      }
    }
    return { ...res, message: guarded() } as typeof res;
  };
}
