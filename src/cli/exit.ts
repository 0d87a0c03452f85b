/**
 * The CLI's exit codes (docs/cli.md), so scripts can tell "fix the command" from "fix the key" from
 * "try again later", as with redis-cli and kcat. Every failure is one line on stderr.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export const EXIT = {
  ok: 0,
  /** Anything else: the service refused the request (invalid, conflict, too large) or an unexpected error. */
  error: 1,
  /** The command line or its input is wrong (unknown option, bad JSON, bad stream name). */
  usage: 2,
  /** The stream, task or key does not exist. */
  notFound: 3,
  /** No key, a wrong or revoked key, or a key of another project. */
  unauthenticated: 4,
  /** The service cannot be reached or is unavailable (down, shutting down, store outage, timeout). */
  unavailable: 5,
} as const;

/** A failure the CLI found itself, with its exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export const usage = (message: string): CliError => new CliError(message, EXIT.usage);

/** The exit code for an HTTP status (the Durable Streams paths). */
export function exitForStatus(status: number): number {
  if (status === 404 || status === 410) return EXIT.notFound;
  if (status === 401 || status === 403) return EXIT.unauthenticated;
  if (status === 502 || status === 503 || status === 504 || status === 429) return EXIT.unavailable;
  return EXIT.error;
}

const CONNECT_EXIT: Partial<Record<Code, number>> = {
  [Code.NotFound]: EXIT.notFound,
  [Code.Unauthenticated]: EXIT.unauthenticated,
  [Code.PermissionDenied]: EXIT.unauthenticated,
  [Code.Unavailable]: EXIT.unavailable,
  [Code.DeadlineExceeded]: EXIT.unavailable,
  [Code.ResourceExhausted]: EXIT.unavailable,
};

const NETWORK_CODES = /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE|UND_ERR_SOCKET|UND_ERR_CONNECT_TIMEOUT)$/;

/** The system error code (ECONNREFUSED, …) of a network failure of fetch or an RPC transport, in the error or its causes. */
function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && NETWORK_CODES.test(code)) return code;
  }
  return undefined;
}

/** One line and an exit code for whatever a command threw. */
export function describeFailure(err: unknown, url: string): { line: string; code: number } {
  if (err instanceof CliError) return { line: err.message, code: err.exitCode };
  const network = networkCode(err);
  if (network) return { line: `cannot reach the service at ${url} (${network}): is it running? (--url, EVENTS_URL)`, code: EXIT.unavailable };
  if (err instanceof ConnectError) {
    const hint = err.code === Code.Unauthenticated ? " (--key, EVENTS_API_KEY)" : "";
    return { line: `${Code[err.code]}: ${err.rawMessage}${hint}`, code: CONNECT_EXIT[err.code] ?? EXIT.error };
  }
  return { line: err instanceof Error ? err.message : String(err), code: EXIT.error };
}

