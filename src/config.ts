import type { WriteConcernSettings } from "mongodb";

/** Service settings, from the environment (see the README's configuration table). */
export interface Config {
  host: string;
  port: number;
  mongodbUri?: string;
  mongodbDb?: string;
  writeConcern: WriteConcernSettings;
  watchMode: "auto" | "changestream" | "poll";
  pollIntervalMs: number;
  holeTimeoutMs: number;
  sseKeepaliveMs: number;
  maxBodyBytes: number;
  shutdownTimeoutMs: number;
  logLevel: string;
  /** "required" (API keys), "off" (the caller names its project), or unset = off only for the in-memory store on loopback. */
  auth?: "required" | "off";
  /** Keys to ensure at start-up: "project:key,project2:key2" (useful with the in-memory store). */
  apiKeys: { project: string; key: string }[];
  /** Operator token for admin.v1.AdminService (API keys); unset = the admin RPCs are refused. */
  adminToken?: string;
  maxBatchEvents: number;
  maxEventBytes: number;
  /** A request must arrive whole (headers and body) within this time (slow clients are cut off). */
  requestTimeoutMs: number;
  /** How long an API-key lookup is cached (a revoked key stops working within this time). */
  authCacheMs: number;
  /** How long a MongoDB operation may wait for a reachable server (fail fast while it is down). */
  mongodbTimeoutMs: number;
  /** Bound on every MongoDB operation (wtimeout, maxTimeMS, socket timeout, client-side deadline). */
  mongodbOperationTimeoutMs: number;
  /** How often expired streams' events are deleted (and, without a TTL index, expired events). */
  expirySweepMs: number;
  /** A response (a subscription, mostly) whose client takes no data for this long is cut off; 0: never. */
  stallTimeoutMs: number;
  /** A response holding more unsent bytes than this in the server is cut off at once. */
  backlogBytes: number;
  /** Unsent response bytes the whole instance may hold for its clients; past it the slowest readers are cut. */
  maxUnsentBytes: number;
  /** In-memory store only: newest events kept per stream (0: all). */
  memoryRetainEvents: number;
  /** A connection with no open request or stream for this long is closed. */
  idleTimeoutMs: number;
  /** Most open connections per instance (more are answered 503 / GOAWAY and closed). */
  maxConnections: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS: most streams open at once on one HTTP/2 connection. */
  maxConcurrentStreams: number;
  /** Most bytes of a caller's input that an error reply quotes. */
  errorQuoteBytes: number;
  /** Durable Streams: how long a long-poll (and an idle SSE stretch) waits for data. */
  durableLongPollMs: number;
  /** Durable Streams: SSE connections end after this long (clients resume from the last offset); 0: never by age. */
  durableSseMaxMs: number;
  /** Durable Streams: largest append or initial body, bytes. */
  durableMaxAppendBytes: number;
  /** Durable Streams: a read returns about this many bytes at most (always at least one message). */
  durableReadMaxBytes: number;
  /** Most JSON values (scalars, objects, arrays) in one JSON body and in one event. */
  maxJsonValues: number;
  /** Events' JSON bytes per Subscribe batch, SSE write and listed page (an event larger than this comes alone). */
  responseBatchBytes: number;
  /** Estimated heap bytes of recent events the log keeps for live subscribers (all streams). */
  logTailBytes: number;
  /** Estimated heap bytes of each cache of converted/encoded events. */
  recentCacheBytes: number;
  /** Estimated heap bytes of publishes queued for the store (more are refused with 503 / resource_exhausted). */
  pendingPublishBytes: number;
  /** In-memory store only: estimated heap bytes of stored events (more are refused with 503 / resource_exhausted). */
  memoryMaxBytes: number;
  /** Bytes of events one PublishStream call may have in flight before it stops reading. */
  publishStreamWindowBytes: number;
  /** Durable Streams: most bytes a fork copies from its source (copy-on-fork). */
  durableMaxForkBytes: number;
  /** Bytes of request bodies read and not yet answered, for the whole instance (503 / resource_exhausted beyond). */
  maxInflightBytes: number;
  /** Open subscriptions (RPC streams and SSE) per instance, and per project. */
  maxSubscriptions: number;
  maxSubscriptionsPerProject: number;
  /** How long a store health answer is reused (health checks, watches, /readyz need no credentials). */
  healthCacheMs: number;
  /**
   * Most unauthenticated streams (grpc.health.v1 Watch, server reflection) open at once on this
   * instance (MAX_UNAUTHENTICATED_STREAMS; MAX_HEALTH_WATCHES is read when it is unset).
   */
  maxUnauthenticatedStreams: number;
  /** A grpc.health.v1 Watch ends cleanly (OK) after this long; its client opens it again. */
  healthWatchMaxMs: number;
  /** Push endpoints allowed even though the strict push policy would refuse them: host names, IPs, CIDRs. */
  pushAllow: string[];
  /** Most push deliveries per second per subscription. */
  pushMaxPerSecond: number;
  /** Origins that browser pages may call from (CORS_ORIGINS; `loopback`: loopback origins, any port). See src/server/policy.ts. */
  corsOrigins: string[];
}

/**
 * Settings that cannot work: the message names the variable and what to set it to. Start-up prints
 * it as one line and exits non-zero (src/startup.ts).
 */
export class ConfigError extends Error {
  override name = "ConfigError";
}

function int(env: NodeJS.ProcessEnv, name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${name} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** DURABLE_SSE_MAX_MS: 0 (SSE never ends by age, for clients that do not reconnect) or at least 100 ms. */
function sseMaxMs(env: NodeJS.ProcessEnv): number {
  const n = int(env, "DURABLE_SSE_MAX_MS", 60_000, 0);
  if (n > 0 && n < 100) throw new ConfigError(`DURABLE_SSE_MAX_MS must be 0 (never) or an integer >= 100, got ${JSON.stringify(env["DURABLE_SSE_MAX_MS"])}`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const watchMode = env["WATCH_MODE"] ?? "auto";
  if (watchMode !== "auto" && watchMode !== "changestream" && watchMode !== "poll") {
    throw new ConfigError(`WATCH_MODE must be auto, changestream or poll, got ${JSON.stringify(watchMode)}`);
  }
  const w = env["MONGODB_WRITE_CONCERN"] ?? "majority";
  if (w !== "majority" && !/^\d+$/.test(w)) throw new ConfigError(`MONGODB_WRITE_CONCERN must be "majority" or a number, got ${JSON.stringify(w)}`);
  const cfg: Config = {
    host: env["HOST"] ?? "127.0.0.1",
    port: int(env, "PORT", 8080, 0, 65535),
    writeConcern: { w: w === "majority" ? w : Number(w) },
    watchMode,
    pollIntervalMs: int(env, "POLL_INTERVAL_MS", 100, 1),
    holeTimeoutMs: int(env, "HOLE_TIMEOUT_MS", 2000, 1),
    sseKeepaliveMs: int(env, "SSE_KEEPALIVE_MS", 15000, 100),
    maxBodyBytes: int(env, "MAX_BODY_BYTES", 1024 * 1024, 1024),
    shutdownTimeoutMs: int(env, "SHUTDOWN_TIMEOUT_MS", 10000, 0),
    logLevel: env["LOG_LEVEL"] ?? "info",
    apiKeys: [],
    mongodbTimeoutMs: int(env, "MONGODB_TIMEOUT_MS", 2000, 100),
    mongodbOperationTimeoutMs: int(env, "MONGODB_OPERATION_TIMEOUT_MS", 5000, 100),
    expirySweepMs: int(env, "EXPIRY_SWEEP_MS", 60_000, 0),
    authCacheMs: int(env, "AUTH_CACHE_MS", 5000, 0),
    maxBatchEvents: int(env, "MAX_BATCH_EVENTS", 1000, 1),
    maxEventBytes: int(env, "MAX_EVENT_BYTES", 4 * 1024 * 1024, 16),
    requestTimeoutMs: int(env, "REQUEST_TIMEOUT_MS", 30_000, 100),
    stallTimeoutMs: int(env, "SUBSCRIBER_STALL_TIMEOUT_MS", 30_000, 0),
    backlogBytes: int(env, "RESPONSE_BACKLOG_BYTES", 16 * 1024 * 1024, 65536),
    maxUnsentBytes: int(env, "MAX_UNSENT_BYTES", 64 * 1024 * 1024, 1024 * 1024),
    memoryRetainEvents: int(env, "MEMORY_RETAIN_EVENTS", 0, 0),
    idleTimeoutMs: int(env, "IDLE_TIMEOUT_MS", 60_000, 100),
    maxConnections: int(env, "MAX_CONNECTIONS", 4096, 1),
    maxConcurrentStreams: int(env, "MAX_CONCURRENT_STREAMS", 256, 1),
    errorQuoteBytes: int(env, "ERROR_QUOTE_BYTES", 2048, 16),
    durableLongPollMs: int(env, "DURABLE_LONG_POLL_MS", 30_000, 10),
    durableSseMaxMs: sseMaxMs(env),
    durableMaxAppendBytes: int(env, "DURABLE_MAX_APPEND_BYTES", 4 * 1024 * 1024, 1024),
    durableReadMaxBytes: int(env, "DURABLE_READ_MAX_BYTES", 1024 * 1024, 1024),
    maxJsonValues: int(env, "MAX_JSON_VALUES", 100_000, 1000),
    responseBatchBytes: int(env, "RESPONSE_BATCH_BYTES", 1024 * 1024, 1024),
    logTailBytes: int(env, "LOG_TAIL_BYTES", 32 * 1024 * 1024, 0),
    recentCacheBytes: int(env, "RECENT_CACHE_BYTES", 16 * 1024 * 1024, 0),
    pendingPublishBytes: int(env, "PENDING_PUBLISH_BYTES", 64 * 1024 * 1024, 1024 * 1024),
    memoryMaxBytes: int(env, "MEMORY_MAX_BYTES", 128 * 1024 * 1024, 1024 * 1024),
    publishStreamWindowBytes: int(env, "PUBLISH_STREAM_WINDOW_BYTES", 8 * 1024 * 1024, 65536),
    durableMaxForkBytes: int(env, "DURABLE_MAX_FORK_BYTES", 64 * 1024 * 1024, 1024),
    maxInflightBytes: int(env, "MAX_INFLIGHT_BYTES", 256 * 1024 * 1024, 1024 * 1024),
    maxSubscriptions: int(env, "MAX_SUBSCRIPTIONS", 10_000, 1),
    maxSubscriptionsPerProject: int(env, "MAX_SUBSCRIPTIONS_PER_PROJECT", 1000, 1),
    healthCacheMs: int(env, "HEALTH_CACHE_MS", 1000, 0),
    maxUnauthenticatedStreams: int(env, "MAX_UNAUTHENTICATED_STREAMS", int(env, "MAX_HEALTH_WATCHES", 128, 1), 1),
    healthWatchMaxMs: int(env, "HEALTH_WATCH_MAX_MS", 300_000, 100),
    pushAllow: (env["PUSH_ALLOW"] ?? "").split(",").map((s) => s.trim()).filter(Boolean),
    pushMaxPerSecond: int(env, "PUSH_MAX_PER_SECOND", 50, 1),
    corsOrigins: (env["CORS_ORIGINS"] ?? "loopback").split(",").map((s) => s.trim()).filter(Boolean),
  };
  if (!LOG_LEVELS.includes(cfg.logLevel)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(cfg.logLevel)}`);
  const auth = env["AUTH"];
  if (auth !== undefined && auth !== "" && auth !== "required" && auth !== "off") throw new ConfigError(`AUTH must be "required" or "off", got ${JSON.stringify(auth)}`);
  if (auth) cfg.auth = auth as "required" | "off";
  for (const pair of (env["API_KEYS"] ?? "").split(",").map((p) => p.trim()).filter(Boolean)) {
    const i = pair.indexOf(":");
    if (i <= 0 || i === pair.length - 1) throw new ConfigError("API_KEYS must look like project:key,project2:key2");
    cfg.apiKeys.push({ project: pair.slice(0, i), key: pair.slice(i + 1) });
  }
  if (env["ADMIN_TOKEN"]) cfg.adminToken = env["ADMIN_TOKEN"];
  if (env["MONGODB_URI"]) cfg.mongodbUri = env["MONGODB_URI"];
  if (env["MONGODB_DB"]) cfg.mongodbDb = env["MONGODB_DB"];
  return cfg;
}
