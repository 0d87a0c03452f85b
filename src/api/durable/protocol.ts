/**
 * The Durable Streams protocol's shapes as this service speaks them: its configuration, one
 * request and its reply, the protocol error, header names and URL prefixes.
 */
import type { ApiDeps } from "../common.js";
import type { DurableStore } from "../../store/durable.js";

export interface DurableConfig {
  /** How long a long-poll (and an idle SSE stretch) waits for data. */
  longPollTimeoutMs: number;
  /** SSE connections are ended after this long (the protocol asks for ~60 s so CDNs can collapse); 0: never. */
  sseMaxMs: number;
  /** Largest append or initial body. */
  maxAppendBytes: number;
  /** A read returns at most about this many bytes (at least one message). */
  readMaxBytes: number;
  /** A fork copies its inherited data (copy-on-fork): at most this many bytes (413 above). */
  maxForkBytes: number;
}

export interface DurableDeps extends ApiDeps {
  durable: DurableStore;
  config: DurableConfig;
}

/** One protocol request, as the route hands it over. */
export interface DsRequest {
  method: string;
  project: string;
  /** The stream's name: the path after /v1/stream/. */
  name: string;
  /** A request header (lower-case name); undefined when absent. */
  header(name: string): string | undefined;
  query: URLSearchParams;
  body: Buffer;
  signal: AbortSignal;
  /** scheme://host the request was sent to (for Location). */
  origin: string;
  /** Set on `/v1/log/{kind}/{key}`: the durable JSON view of another kind's stream (then `name` is unused). */
  view?: { kind: "topic" | "execution" | "task"; key: string };
}

export type DsReply =
  | { status: number; headers?: Record<string, string>; body?: string | Uint8Array }
  | { status: 200; headers: Record<string, string>; sse: AsyncIterable<string> }
  /**
   * A body too large to hold at once, produced as the connection takes it: the route writes each
   * chunk and waits for 'drain' before asking for the next. When the iterator throws, the answer
   * is incomplete: the route aborts the response (never ends it as if complete).
   */
  | { status: 200; headers: Record<string, string>; stream: AsyncIterable<Uint8Array> };

/** A protocol error: its status (and headers such as Stream-Closed) are the answer. */
export class DsError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const H = {
  offset: "stream-next-offset",
  cursor: "stream-cursor",
  upToDate: "stream-up-to-date",
  closed: "stream-closed",
  /** Why a stream was closed (stop a generation from anywhere): sent with a close, echoed wherever the close is reported. */
  closeReason: "stream-close-reason",
  ttl: "stream-ttl",
  expiresAt: "stream-expires-at",
  seq: "stream-seq",
  forkedFrom: "stream-forked-from",
  forkOffset: "stream-fork-offset",
  forkSubOffset: "stream-fork-sub-offset",
  producerId: "producer-id",
  producerEpoch: "producer-epoch",
  producerSeq: "producer-seq",
  expectedSeq: "producer-expected-seq",
  receivedSeq: "producer-received-seq",
  sseEncoding: "stream-sse-data-encoding",
} as const;

/** Where stream names live in URLs (for Stream-Forked-From values and Location). */
export const STREAM_PREFIX = "/v1/stream/";
/** Where the durable views of topics, executions and tasks live: `/v1/log/{kind}/{key}`. */
export const LOG_PREFIX = "/v1/log/";
