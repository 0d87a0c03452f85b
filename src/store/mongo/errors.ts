import { MongoServerError } from "mongodb";

/**
 * Server error codes that mean "this deployment cannot do it right now" (failover, shutdown,
 * network, timeouts, write concern not satisfied) rather than "this request is wrong". They are
 * answered 503 / `unavailable`; anything else is a bug and answers 500. The driver labels many of
 * them `RetryableWriteError`, but not all (e.g. a NotWritablePrimary on a standalone-configured
 * client, write-concern timeouts, errors of a retry that already failed once).
 */
const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  64, // WriteConcernFailed (wtimeout: w:majority not confirmed in time)
  89, // NetworkTimeout
  91, // ShutdownInProgress
  100, // UnsatisfiableWriteConcern (not enough data-bearing members up)
  133, // FailedToSatisfyReadPreference
  134, // ReadConcernMajorityNotAvailableYet
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10058, // LegacyNotPrimary
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13388, // StaleConfig
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);

const UNAVAILABLE_LABELS = ["RetryableWriteError", "TransientTransactionError", "ResumableChangeStreamError", "NetworkError"];

const UNAVAILABLE_NAMES = new Set([
  "MongoServerSelectionError",
  "MongoNetworkError",
  "MongoNetworkTimeoutError",
  "MongoPoolClearedError",
  "MongoServerClosedError",
  "MongoTopologyClosedError",
  "MongoNotConnectedError",
  "MongoOperationTimeoutError",
  "MongoWriteConcernError",
  "MongoStalePrimaryError",
  "MongoWaitQueueTimeoutError",
]);

/**
 * Socket errors of Node itself. The driver normally wraps them (MongoNetworkError), but a write on
 * a connection the server already closed can surface as the bare system error (EPIPE "This socket
 * has been ended by the other party", seen here on a cut).
 */
const NETWORK_ERRNOS = new Set(["EPIPE", "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "ENOTFOUND", "EAI_AGAIN", "ERR_SOCKET_CLOSED", "ERR_STREAM_DESTROYED"]);

const DUPLICATE_KEY = 11000;

interface WriteErrorLike {
  code?: number;
  errmsg?: string;
}

function writeErrorsOf(err: unknown): WriteErrorLike[] {
  const w = (err as { writeErrors?: unknown }).writeErrors;
  if (Array.isArray(w)) return w as WriteErrorLike[];
  if (w && typeof w === "object") return [w as WriteErrorLike];
  return [];
}

/** Errors that mean the database could not be reached or could not confirm in time (as opposed to a rejected operation). */
export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (UNAVAILABLE_NAMES.has(err.name)) return true;
  const errno = (err as { code?: unknown }).code;
  if (typeof errno === "string" && NETWORK_ERRNOS.has(errno)) return true;
  if (err instanceof MongoServerError) {
    if (UNAVAILABLE_LABELS.some((l) => err.hasErrorLabel(l))) return true;
    if (typeof err.code === "number" && UNAVAILABLE_CODES.has(err.code)) return true;
    // A bulk write that failed only for its write concern (e.g. insertMany with w:majority timing out).
    const wce = (err as { writeConcernError?: { code?: number }; err?: { code?: number } }).writeConcernError ?? (err as { err?: { code?: number } }).err;
    if (writeErrorsOf(err).length === 0 && wce && (wce.code === undefined || UNAVAILABLE_CODES.has(wce.code))) return true;
  }
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err && isUnavailable(cause);
}

/** True when every write error of `err` is a duplicate key (E11000). */
export function isDuplicateKey(err: unknown): boolean {
  if (!(err instanceof MongoServerError)) return false;
  const writeErrors = writeErrorsOf(err);
  if (writeErrors.length > 0) return writeErrors.every((w) => w.code === DUPLICATE_KEY);
  return err.code === DUPLICATE_KEY;
}

/** A duplicate key on the `{stream, seq}` index: the sequence was claimed (or otherwise taken). */
export function isSequenceTaken(err: unknown): boolean {
  if (!isDuplicateKey(err)) return false;
  const e = err as MongoServerError & { keyPattern?: Record<string, unknown> };
  if (e.keyPattern && "seq" in e.keyPattern) return true;
  const messages = [e.message, ...writeErrorsOf(err).map((w) => w.errmsg ?? "")];
  return messages.some((m) => /\bstream_seq\b/.test(m) || /dup key: \{ ?stream: .*, seq:/.test(m));
}

/** Index option conflicts at start-up: an index of that name or key exists with other options. */
export function isIndexConflict(err: unknown): boolean {
  return err instanceof MongoServerError && (err.code === 85 || err.code === 86 || err.codeName === "IndexOptionsConflict" || err.codeName === "IndexKeySpecsConflict");
}

/** dropIndex of an index that is not there (another instance dropped it first). */
export function isIndexNotFound(err: unknown): boolean {
  return err instanceof MongoServerError && (err.code === 27 || err.codeName === "IndexNotFound");
}

/** The server cannot build this kind of index (FerretDB and some MongoDB-compatible services answer 238 NotImplemented for TTL indexes). */
export function isNotSupported(err: unknown): boolean {
  return err instanceof MongoServerError && (err.code === 238 || err.code === 115 || err.codeName === "NotImplemented" || err.codeName === "CommandNotSupported");
}
