/**
 * The one error table: every error a request can end with is put in one class, and each class has
 * one HTTP status per dialect and one Connect code. The pipeline (src/server/pipeline.ts) renders
 * refusals and handler errors through it for every surface: the JSON dialects (`{"error"}` or
 * FastAPI's `{"detail"}`), Durable Streams (text/plain), and RPCs (a ConnectError, which
 * connect-node encodes for gRPC, gRPC-Web and Connect).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { CapacityError, DuplicateEventError, InvalidEventError, LimitError, StoreUnavailableError, StreamClosedError } from "../core/types.js";
import { truncateUtf8 } from "./free-json.js";
import { boundedErrors, DEFAULT_QUOTE_BYTES, ValidationError, type FieldError } from "./json.js";

export type ErrorClass =
  | "bad_input"
  | "unauthenticated"
  | "forbidden"
  | "not_found"
  | "method_not_allowed"
  | "timeout"
  | "conflict"
  | "closed"
  | "too_large"
  | "rate_limited"
  | "capacity"
  | "store_unavailable"
  | "outcome_unknown"
  | "unimplemented"
  | "internal";

interface ClassRow {
  /** HTTP status on the JSON dialects and Durable Streams. */
  status: number;
  /** FastAPI dialects (Kubiya, TerminalUse): bad input is 422 with a `detail` list. */
  fastapi?: number;
  /** The Connect code (gRPC status) an RPC gets. */
  code: Code;
  /** What the class means (docs/security.md lists the table). */
  means: string;
}

export const ERROR_TABLE: Readonly<Record<ErrorClass, ClassRow>> = {
  bad_input: { status: 400, fastapi: 422, code: Code.InvalidArgument, means: "the request is malformed or a field is invalid" },
  unauthenticated: { status: 401, code: Code.Unauthenticated, means: "no key, or an unknown, revoked or expired key" },
  forbidden: { status: 403, code: Code.PermissionDenied, means: "the key is for another project, or a cross-site / foreign-origin / foreign-Host request" },
  not_found: { status: 404, code: Code.NotFound, means: "no such resource" },
  method_not_allowed: { status: 405, code: Code.Unimplemented, means: "the path exists, not with this method" },
  timeout: { status: 408, code: Code.DeadlineExceeded, means: "the body did not arrive in time (REQUEST_TIMEOUT_MS)" },
  conflict: { status: 409, code: Code.AlreadyExists, means: "it exists already (duplicate idempotency key, stream created differently)" },
  closed: { status: 409, code: Code.FailedPrecondition, means: "the stream is closed and accepts no more events" },
  too_large: { status: 413, code: Code.ResourceExhausted, means: "the body or event is over its limit" },
  rate_limited: { status: 429, code: Code.ResourceExhausted, means: "a cap of the caller's (subscriptions per project or instance)" },
  capacity: { status: 503, code: Code.ResourceExhausted, means: "an instance-wide budget is full (bytes in flight, memory bound): retry shortly" },
  store_unavailable: { status: 503, code: Code.Unavailable, means: "the store is unavailable; nothing was stored" },
  outcome_unknown: { status: 503, code: Code.Unavailable, means: "the store stopped answering before it confirmed the write: it may or may not be stored" },
  unimplemented: { status: 501, code: Code.Unimplemented, means: "no such RPC" },
  internal: { status: 500, code: Code.Internal, means: "a bug: logged with the request id, text not echoed" },
};

/**
 * An error with an HTTP status chosen where it is raised (a route, the policy, a protocol with its
 * own statuses); `headers` go on the reply (Durable Streams' `Stream-*` headers, `Allow`).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly fieldErrors?: FieldError[],
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Marks the cause of a busy error (ConnectError's instanceof matches any ConnectError, so no subclass). */
class Busy extends Error {}

/** An instance-wide budget is full: 503 on HTTP paths, `resource_exhausted` on RPCs. */
export function capacityExceeded(message: string): ConnectError {
  return new ConnectError(message, Code.ResourceExhausted, undefined, undefined, new Busy(message));
}

export function isBusy(err: unknown): err is ConnectError {
  return err instanceof ConnectError && err.cause instanceof Busy;
}

/**
 * What a 503 / `unavailable` promises. Normally "nothing was stored" (the publish's outcome was
 * resolved before answering: safe to retry). When the store stopped answering before that could be
 * resolved, the reply says the outcome is unknown.
 */
export function unavailableMessage(err: StoreUnavailableError): string {
  return err.outcome === "unknown"
    ? "the event store is unavailable and did not confirm this publish: it may or may not have been stored (retry with an idempotency key, or read the stream to check)"
    : "the event store is unavailable; nothing was stored, retry later";
}

/** The field error of a draft the log refused (located as in a PublishRequest). */
export function invalidEventField(err: InvalidEventError): FieldError {
  if (err.field === "idempotency_key") return { loc: ["events", err.index, err.field], msg: `Input ${err.problem}`, type: "value_error" };
  return { loc: ["events", err.index, err.field], msg: `Input is not storable JSON: ${err.problem}`, type: "value_error" };
}

const STATUS_CLASS: Readonly<Record<number, ErrorClass>> = {
  400: "bad_input",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  408: "timeout",
  409: "conflict",
  413: "too_large",
  422: "bad_input",
  429: "rate_limited",
  501: "unimplemented",
  503: "store_unavailable",
};

const CODE_CLASS: Partial<Record<Code, ErrorClass>> = {
  [Code.InvalidArgument]: "bad_input",
  [Code.OutOfRange]: "bad_input",
  [Code.FailedPrecondition]: "bad_input",
  [Code.Unauthenticated]: "unauthenticated",
  [Code.PermissionDenied]: "forbidden",
  [Code.NotFound]: "not_found",
  [Code.AlreadyExists]: "conflict",
  [Code.Aborted]: "conflict",
  [Code.ResourceExhausted]: "too_large",
  [Code.Unavailable]: "store_unavailable",
  [Code.DeadlineExceeded]: "timeout",
  [Code.Unimplemented]: "unimplemented",
};

/** An error, classified: its class, its HTTP status, a message safe to show, and field errors. */
export interface Classified {
  cls: ErrorClass;
  status: number;
  message: string;
  fields?: FieldError[];
  headers: Record<string, string>;
  /** The Connect error an RPC gets (the original one when it was one already). */
  connect: ConnectError;
}

function withCode(cls: ErrorClass, message: string, cause: unknown): ConnectError {
  return new ConnectError(message, ERROR_TABLE[cls].code, undefined, undefined, cause);
}

/** Puts any error in its class. `quoteBytes` bounds how much of the caller's input the message quotes. */
export function classify(err: unknown, quoteBytes = DEFAULT_QUOTE_BYTES): Classified {
  let cls: ErrorClass;
  let status: number | undefined;
  let message = err instanceof Error ? err.message : String(err);
  let fields: FieldError[] | undefined;
  let headers: Record<string, string> = {};
  let connect: ConnectError | undefined;
  if (err instanceof HttpError || (err instanceof Error && typeof (err as { status?: unknown }).status === "number")) {
    // HttpError, or a protocol's own status error (Durable Streams' DsError has the same shape).
    const e = err as HttpError;
    status = e.status;
    cls = STATUS_CLASS[status] ?? (status >= 500 ? "internal" : "bad_input");
    fields = e.fieldErrors;
    headers = e.headers ?? {};
  } else if (err instanceof ValidationError) {
    cls = "bad_input";
    fields = err.errors;
    connect = withCode(cls, message, err);
  } else if (err instanceof InvalidEventError) {
    // JSON the log does not store: located in the request as it was sent (RPC: the PublishRequest).
    cls = "bad_input";
    const located = new ValidationError([invalidEventField(err)]);
    connect = withCode(cls, located.message, located);
    fields = [{ ...located.errors[0]!, loc: ["body", ...located.errors[0]!.loc] }];
  } else if (err instanceof DuplicateEventError) {
    cls = "conflict";
  } else if (err instanceof StreamClosedError) {
    // A state the caller must change first (a new stream), not a transient conflict to retry.
    cls = "closed";
  } else if (err instanceof CapacityError) {
    // A memory bound of the service, not the request's fault: retry later.
    cls = "capacity";
  } else if (err instanceof LimitError) {
    cls = "too_large";
  } else if (err instanceof StoreUnavailableError) {
    cls = err.outcome === "unknown" ? "outcome_unknown" : "store_unavailable";
    message = unavailableMessage(err);
  } else if (isBusy(err)) {
    cls = "capacity";
    message = err.rawMessage;
    connect = err;
  } else {
    const ce = ConnectError.from(err);
    cls = CODE_CLASS[ce.code] ?? "internal";
    message = cls === "internal" ? "internal error" : ce.rawMessage;
    if (ce.cause instanceof ValidationError) fields = ce.cause.errors;
    connect = cls === "internal" ? withCode(cls, message, err) : ce;
  }
  message = truncateUtf8(message, 1024 + quoteBytes);
  if (fields) fields = boundedErrors(fields, quoteBytes);
  if (ERROR_TABLE[cls].status === 401) headers = { ...headers, [WWW_AUTHENTICATE]: "Bearer" };
  return { cls, status: status ?? ERROR_TABLE[cls].status, message, ...(fields ? { fields } : {}), headers, connect: connect ?? withCode(cls, message, err) };
}

const WWW_AUTHENTICATE = "www-authenticate";

/**
 * How a JSON route reports errors: `{"error": message}` with 400/404/... (Polos, Sailhouse, the
 * service's own paths), or FastAPI's `{"detail": ...}` with 422 for bad input (Kubiya, TerminalUse).
 */
export type Dialect = "error" | "fastapi";

/** The error body and status for a JSON dialect: small, whatever was sent (bounded quotes and problem lists). */
export function errorReply(dialect: Dialect, err: unknown, quoteBytes = DEFAULT_QUOTE_BYTES): { status: number; json: unknown; headers: Record<string, string> } {
  const c = classify(err, quoteBytes);
  if (dialect === "fastapi") {
    // FastAPI: request validation errors are 422 with pydantic's detail list.
    if (c.fields && (c.status === 400 || c.status === 422)) return { status: ERROR_TABLE.bad_input.fastapi!, json: { detail: c.fields }, headers: c.headers };
    return { status: c.status, json: { detail: c.message }, headers: c.headers };
  }
  return { status: c.status, json: c.fields ? { error: c.message, details: c.fields } : { error: c.message }, headers: c.headers };
}

/** The error as Durable Streams answers it: the status and a text/plain line. */
export function textReply(err: unknown): { status: number; text: string; headers: Record<string, string> } {
  const c = classify(err);
  return { status: c.status, text: `${c.message}\n`, headers: c.headers };
}

/** The error as an RPC answers it (core errors onto Connect codes; PublishStream's error acks too). */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return classify(err).connect;
}
